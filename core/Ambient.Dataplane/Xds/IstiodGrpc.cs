using Grpc.Core;
using Grpc.Net.Client;

namespace Ambient.Dataplane.Xds;

/// <summary>gRPC channels to istiod (xDS and CA) over the mesh-root-only HTTP/2 handler of <see cref="Core.Xds.IstiodChannel"/>.</summary>
internal static class IstiodGrpc
{
    /// <summary>
    /// Largest xDS response the ztunnel accepts, as Istio's ztunnel does: a whole mesh arrives in one response at
    /// (re)connect, ~400 bytes a workload, so gRPC's customary 4 MiB would cap a mesh at about 10,000 workloads.
    /// </summary>
    public const int MaxXdsMessageSize = 200 * 1024 * 1024;

    private const string DisableLoadBalancingProperty = "__GrpcLoadBalancingDisabled";

    /// <summary>Largest CA response accepted (a certificate chain): gRPC's customary 4 MiB.</summary>
    public const int MaxCaMessageSize = 4 * 1024 * 1024;

    /// <summary>
    /// A channel on <paramref name="handler"/>, which may be shared by several channels (one connection to istiod)
    /// when <paramref name="ownsHandler"/> is false. Our own loops retry with backoff, so the channel does not.
    /// </summary>
    /// <param name="cancelledAsOperationCanceled">A call cancelled by its token throws <see cref="OperationCanceledException"/>
    /// like any other await. Leave it false for streams: grpc-dotnet then also reports a request-stream write that
    /// failed because the call failed (TLS refused, connection lost) as cancelled, hiding the call's status.</param>
    public static GrpcChannel Create(Uri address, HttpMessageHandler handler, bool ownsHandler, int maxReceiveMessageSize, bool cancelledAsOperationCanceled)
    {
        ArgumentNullException.ThrowIfNull(address);
        ArgumentNullException.ThrowIfNull(handler);
        if (handler is SocketsHttpHandler sockets)
        {
            // istiod is one address and our loops reconnect with their own backoff. grpc-dotnet's client-side load
            // balancing (a resolver, subchannels that open their own sockets, a second reconnect backoff up to 2 min)
            // would hold a failed connection in backoff behind our retries and cost memory on every node. This is
            // the switch grpc-dotnet reads for a handler that must be used as it is.
            sockets.Properties[DisableLoadBalancingProperty] = true;
        }
        return GrpcChannel.ForAddress(address, new GrpcChannelOptions
        {
            HttpHandler = handler,
            DisposeHttpClient = ownsHandler,
            MaxReceiveMessageSize = maxReceiveMessageSize,
            MaxRetryAttempts = 0,
            ThrowOperationCanceledOnCancellation = cancelledAsOperationCanceled,
        });
    }

    /// <summary>"Unauthenticated: detail" for a gRPC status, the message otherwise (config_dump and logs).</summary>
    public static string Describe(Exception exception) =>
        exception is RpcException rpc ? $"{rpc.StatusCode}: {rpc.Status.Detail}" : exception.Message;
}

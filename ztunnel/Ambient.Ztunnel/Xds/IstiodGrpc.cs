using Grpc.Core;
using Grpc.Net.Client;

namespace Ambient.Ztunnel.Xds;

/// <summary>gRPC channels to istiod (xDS and CA) over the mesh-root-only HTTP/2 handler of <see cref="Core.Xds.IstiodChannel"/>.</summary>
internal static class IstiodGrpc
{
    /// <summary>
    /// Largest xDS response the ztunnel accepts, as Istio's ztunnel does: a whole mesh arrives in one response at
    /// (re)connect, ~400 bytes a workload, so gRPC's customary 4 MiB would cap a mesh at about 10,000 workloads.
    /// </summary>
    public const int MaxXdsMessageSize = 200 * 1024 * 1024;

    /// <summary>Largest CA response accepted (a certificate chain): gRPC's customary 4 MiB.</summary>
    public const int MaxCaMessageSize = 4 * 1024 * 1024;

    /// <summary>
    /// A channel on <paramref name="handler"/>, which may be shared by several channels (one connection to istiod)
    /// when <paramref name="ownsHandler"/> is false. Our own loops retry with backoff, so the channel does not; a
    /// call cancelled by its token throws <see cref="OperationCanceledException"/> like any other await.
    /// </summary>
    public static GrpcChannel Create(Uri address, HttpMessageHandler handler, bool ownsHandler, int maxReceiveMessageSize)
    {
        ArgumentNullException.ThrowIfNull(address);
        ArgumentNullException.ThrowIfNull(handler);
        return GrpcChannel.ForAddress(address, new GrpcChannelOptions
        {
            HttpHandler = handler,
            DisposeHttpClient = ownsHandler,
            MaxReceiveMessageSize = maxReceiveMessageSize,
            MaxRetryAttempts = 0,
            ThrowOperationCanceledOnCancellation = true,
        });
    }

    /// <summary>"Unauthenticated: detail" for a gRPC status, the message otherwise (config_dump and logs).</summary>
    public static string Describe(Exception exception) =>
        exception is RpcException rpc ? $"{rpc.StatusCode}: {rpc.Status.Detail}" : exception.Message;
}

using System.Net;
using Ambient.Core.Protos.Discovery;
using Ambient.Istiod.Ca;
using Grpc.Core;

namespace Ambient.Istiod.Discovery;

/// <summary>
/// The delta ADS RPC: callers authenticate with the same bearer token as on the CA (a node token in local mode, a
/// service-account token in Kubernetes mode), then one <see cref="DeltaXdsSession"/> runs the stream.
/// </summary>
internal sealed class DiscoveryGrpcService(ICaCallerPolicy callers, DiscoveryState state, ILoggerFactory loggers)
    : AggregatedDiscoveryService.AggregatedDiscoveryServiceBase
{
    private readonly ILogger _logger = loggers.CreateLogger("Ambient.Istiod.Discovery");

    public override async Task DeltaAggregatedResources(
        IAsyncStreamReader<DeltaDiscoveryRequest> requestStream, IServerStreamWriter<DeltaDiscoveryResponse> responseStream, ServerCallContext context)
    {
        var node = await AuthenticateAsync(context.RequestHeaders.GetValue("authorization"), context.CancellationToken).ConfigureAwait(false);
        // Headers now, so the client sees the call accepted before the first push (which waits for its subscription).
        await context.WriteResponseHeadersAsync([]).ConfigureAwait(false);
        var session = new DeltaXdsSession(state, _logger, node, Peer(context));
        state.SessionOpened();
        try
        {
            // The call's token fires when the proxy resets the stream (cancel, dispose, lost connection) or its
            // deadline passes; the session stops reading and pushing, and this method returns.
            await session.RunAsync(requestStream.ReadAllAsync(context.CancellationToken), responseStream, context.CancellationToken).ConfigureAwait(false);
        }
        finally
        {
            state.SessionClosed();
        }
    }

    // The node the caller speaks for: its token's node (local mode), or the node of the pod its service-account token
    // is bound to; a caller whose pod is unknown gets its own name, which matches no node (no waypoint is served to it).
    private async ValueTask<string> AuthenticateAsync(string? authorization, CancellationToken cancellationToken)
    {
        const string Bearer = "Bearer ";
        CaCaller caller;
        try
        {
            if (authorization is null || !authorization.StartsWith(Bearer, StringComparison.Ordinal) || authorization.Length == Bearer.Length)
            {
                throw new CaRequestException(CaErrorKind.Unauthenticated, "no bearer token");
            }
            caller = await callers.AuthenticateAsync(authorization[Bearer.Length..], cancellationToken).ConfigureAwait(false);
        }
        catch (CaRequestException e) when (e.Kind == CaErrorKind.Unavailable)
        {
            throw new RpcException(new Status(StatusCode.Unavailable, e.Message));
        }
        catch (CaRequestException) when (callers is NodeTokenPolicy)
        {
            throw new RpcException(new Status(StatusCode.Unauthenticated,
                "workload discovery needs 'authorization: Bearer <node token>' (local mode: <state>/tokens/<node>.token)"));
        }
        catch (CaRequestException e)
        {
            throw new RpcException(new Status(StatusCode.Unauthenticated, "workload discovery: " + e.Message));
        }
        return caller.Node ?? caller.Name;
    }

    // "ip:port" as the logs have always shown it (ServerCallContext.Peer is "ipv4:ip:port").
    private static string Peer(ServerCallContext context)
    {
        var connection = context.GetHttpContext().Connection;
        return connection.RemoteIpAddress is { } ip ? new IPEndPoint(ip, connection.RemotePort).ToString() : context.Peer;
    }
}

using System.Net;
using Ambient.Core.Protos.Discovery;
using Ambient.Istiod.Ca;
using Grpc.Core;

namespace Ambient.Istiod.Discovery;

/// <summary>The delta ADS RPC: callers authenticate with their node token like on the CA, then one <see cref="DeltaXdsSession"/> runs the stream.</summary>
internal sealed class DiscoveryGrpcService(NodeTokens tokens, DiscoveryState state, ILoggerFactory loggers)
    : AggregatedDiscoveryService.AggregatedDiscoveryServiceBase
{
    private readonly ILogger _logger = loggers.CreateLogger("Ambient.Istiod.Discovery");

    public override async Task DeltaAggregatedResources(
        IAsyncStreamReader<DeltaDiscoveryRequest> requestStream, IServerStreamWriter<DeltaDiscoveryResponse> responseStream, ServerCallContext context)
    {
        if (!tokens.TryAuthenticate(context.RequestHeaders.GetValue("authorization"), out var node))
        {
            throw new RpcException(new Status(StatusCode.Unauthenticated,
                "workload discovery needs 'authorization: Bearer <node token>' (local mode: <state>/tokens/<node>.token)"));
        }
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

    // "ip:port" as the logs have always shown it (ServerCallContext.Peer is "ipv4:ip:port").
    private static string Peer(ServerCallContext context)
    {
        var connection = context.GetHttpContext().Connection;
        return connection.RemoteIpAddress is { } ip ? new IPEndPoint(ip, connection.RemotePort).ToString() : context.Peer;
    }
}

using Ambient.Core.Protos.Waypoint;
using Ambient.Dataplane.State;
using Ambient.Hbone;
using Ambient.Hbone.Relay;
using Ambient.Hbone.Server;
using Ambient.Hbone.Telemetry;
using Ambient.Waypoint.Forwarding;
using Ambient.Waypoint.State;

namespace Ambient.Waypoint.Inbound;

/// <summary>
/// Serves each accepted tunnel by the protocol of the addressed Service port (ServiceProtocols; unknown is TCP, as
/// Istio treats it): HTTP/1.1, h2c and gRPC ports become Kestrel connections (<see cref="HboneTunnelTransport"/>),
/// where requests are routed one by one; any other port is relayed as bytes to one picked endpoint over HBONE.
/// </summary>
internal sealed partial class WaypointTunnels : IInboundTunnelHandler
{
    private readonly ProxyState _state;
    private readonly WaypointConfig _config;
    private readonly HboneTunnelTransport _transport;
    private readonly EndpointPicker _picker;
    private readonly UpstreamConnector _upstream;
    private readonly ILogger _logger;

    public WaypointTunnels(ProxyState state, WaypointConfig config, HboneTunnelTransport transport, EndpointPicker picker,
        UpstreamConnector upstream, ILogger logger)
    {
        _state = state;
        _config = config;
        _transport = transport;
        _picker = picker;
        _upstream = upstream;
        _logger = logger;
    }

    public async ValueTask<InboundTunnelResult> ServeAsync(InboundConnectionInfo info, HboneStream stream, CancellationToken aborted)
    {
        var target = info.Destination;
        var service = _state.Snapshot.FindServiceByVip(target.Address);
        var protocol = service is null ? PortAppProtocol.Tcp : _config.ProtocolOf(service.Namespace, service.Hostname, target.Port);
        return protocol == PortAppProtocol.Tcp
            ? await RelayTcpAsync(info, stream, aborted).ConfigureAwait(false)
            : await ServeHttpAsync(info, stream, aborted).ConfigureAwait(false);
    }

    private async ValueTask<InboundTunnelResult> ServeHttpAsync(InboundConnectionInfo info, HboneStream stream, CancellationToken aborted)
    {
        await stream.RespondAsync(200, cancellationToken: aborted).ConfigureAwait(false);
        var connection = new HboneTunnelConnection(stream, info);
        bool dispatched;
        try
        {
            dispatched = await _transport.DispatchAsync(connection, aborted).ConfigureAwait(false);
        }
        catch (Exception ex) when (ex is IOException or OperationCanceledException or HboneException)
        {
            dispatched = false;
        }
        if (!dispatched)
        {
            await connection.DisposeAsync().ConfigureAwait(false);
            return new InboundTunnelResult(ResponseFlags.DownstreamReset, 0, 0);
        }
        // Requests are logged one by one by the forwarder; this tunnel's line covers the connection.
        await connection.Completion.ConfigureAwait(false);
        return new InboundTunnelResult(aborted.IsCancellationRequested ? ResponseFlags.DownstreamReset : ResponseFlags.None, 0, 0);
    }

    private async ValueTask<InboundTunnelResult> RelayTcpAsync(InboundConnectionInfo info, HboneStream stream, CancellationToken aborted)
    {
        var picked = _picker.Pick(info.Destination);
        if (picked.Destination is not { } destination)
        {
            Log.NoEndpoint(_logger, info.Destination.ToString(), picked.Error ?? "");
            await stream.RespondAsync(503, picked.Error, endStream: true, cancellationToken: aborted).ConfigureAwait(false);
            return new InboundTunnelResult(ResponseFlags.NoRoute, 0, 0);
        }
        Stream upstream;
        try
        {
            upstream = await _upstream.ConnectAsync(destination, aborted).ConfigureAwait(false);
        }
        catch (Exception ex) when (ex is HboneException or System.Net.Sockets.SocketException or IOException
            or System.Security.Authentication.AuthenticationException or OperationCanceledException)
        {
            if (aborted.IsCancellationRequested)
            {
                return new InboundTunnelResult(ResponseFlags.DownstreamReset, 0, 0);
            }
            Log.ConnectFailed(_logger, destination.Authority, ex.Message);
            await stream.RespondAsync(503, "upstream connect failed", endStream: true, cancellationToken: aborted).ConfigureAwait(false);
            return new InboundTunnelResult(ResponseFlags.Connect, 0, 0);
        }
        await using (upstream.ConfigureAwait(false))
        {
            await stream.RespondAsync(200, cancellationToken: aborted).ConfigureAwait(false);
            var relay = upstream is HboneStream tunnel
                ? await DuplexRelay<HboneRelayEnd, HboneRelayEnd>.RunAsync(new(stream), new(tunnel)).ConfigureAwait(false)
                : await DuplexRelay<HboneRelayEnd, StreamRelayEnd>.RunAsync(new(stream), new(upstream)).ConfigureAwait(false);
            var flags = relay.FailedSide switch
            {
                RelaySide.Downstream => ResponseFlags.DownstreamReset,
                RelaySide.Upstream => ResponseFlags.UpstreamReset,
                _ => ResponseFlags.None,
            };
            return new InboundTunnelResult(flags, relay.BytesAToB, relay.BytesBToA);
        }
    }

    private static partial class Log
    {
        [LoggerMessage(1, LogLevel.Warning, "waypoint: no endpoint for TCP tunnel to {Target}: {Error}")]
        public static partial void NoEndpoint(ILogger logger, string target, string error);

        [LoggerMessage(2, LogLevel.Warning, "waypoint: upstream connect to {Authority} failed: {Error}")]
        public static partial void ConnectFailed(ILogger logger, string authority, string error);
    }
}

using System.Diagnostics;
using System.Net;
using System.Net.Sockets;
using Ambient.Hbone.Relay;
using Ambient.Hbone.Telemetry;
using Microsoft.Extensions.Logging;

namespace Ambient.Hbone.Server;

/// <summary>
/// The request delegate of the inbound server: one HTTP/2 CONNECT stream = one tunnel to a local workload.
/// Order of checks follows Istio's inbound: shape of the request (400), a service hostname resolved to a local
/// workload (400 when it cannot be), not one of the mesh's own endpoints (400), target served here (400, no open
/// relay), authorization (401), upstream connect (503), then 200 and raw bytes both ways.
/// </summary>
internal sealed class ConnectHandler
{
    private readonly HboneInboundOptions _options;
    private readonly IInboundTargets _targets;
    private readonly IInboundObserver _observer;
    private readonly ILogger _logger;

    public ConnectHandler(HboneInboundOptions options, IInboundTargets targets, IInboundObserver observer, ILogger logger)
    {
        _options = options;
        _targets = targets;
        _observer = observer;
        _logger = logger;
    }

    /// <summary>Serves one CONNECT stream to its end; owns and disposes the stream, never throws.</summary>
    public async Task HandleAsync(InboundConnectionState state, HboneStream stream, HboneRequest request)
    {
        try
        {
            await ServeAsync(state, stream, request).ConfigureAwait(false);
        }
        catch (Exception ex)
        {
            // A bug or a seam that threw: this tunnel is reset (by the dispose), the proxy and other tunnels go on.
            InboundLog.HandlerFailed(_logger, stream.StreamId, state.Remote, ex);
        }
    }

    private async Task ServeAsync(InboundConnectionState state, HboneStream stream, HboneRequest request)
    {
        await using var _ = stream.ConfigureAwait(false);
        if (state.PeerIdentity is not { } peer)
        {
            // Only reachable if the pipeline were misconfigured (no mTLS); never serve an unidentified peer.
            return;
        }

        var source = state.Remote;
        var aborted = stream.Aborted;
        if (aborted.IsCancellationRequested)
        {
            // Reset by the client before we looked at it: no upstream connect, no access log, no metric. The
            // connection counts such resets itself (rapid-reset guard).
            return;
        }

        // HBONE is a plain CONNECT (RFC 9113 8.5): no :path, no :scheme, no :protocol (extended CONNECT is not HBONE).
        if (request.Method != "CONNECT" || request.Path is not null || request.Scheme is not null || request.Protocol is not null)
        {
            await RejectAsync(stream, peer, source, request.Method ?? "(no :method)", 400, "HBONE expects CONNECT without :path").ConfigureAwait(false);
            return;
        }

        string authority = request.Authority ?? "";
        if (!ConnectAuthority.TryParseTarget(authority, out var target, out var hostname, out int port, out var error))
        {
            await RejectAsync(stream, peer, source, authority, 400, error!).ConfigureAwait(false);
            return;
        }

        var listenerAddress = state.Listener.Address;
        if (hostname is not null)
        {
            target = _targets.ResolveServiceTarget(listenerAddress, hostname, port, out var unresolved);
            if (target is null)
            {
                await RejectAsync(stream, peer, source, authority, 400, unresolved ?? $"authority {hostname} names no service served here").ConfigureAwait(false);
                return;
            }
        }

        // Before the served-target check, so the answer names the real reason whatever the address.
        if (_targets.Refusal(target!) is { } refusal)
        {
            await RejectAsync(stream, peer, source, authority, 400, refusal).ConfigureAwait(false);
            return;
        }

        if (!_targets.IsServedTarget(listenerAddress, target!))
        {
            await RejectAsync(stream, peer, source, authority, 400, "target is not a workload served by this listener").ConfigureAwait(false);
            return;
        }

        var info = new InboundConnectionInfo(
            peer, source, target!, listenerAddress,
            request.Header("forwarded"),
            request.Header("baggage"),
            request.Header("traceparent"),
            DateTimeOffset.UtcNow);
        long started = Stopwatch.GetTimestamp();

        string flags = ResponseFlags.None;
        string? denied = null;
        long bytesIn = 0, bytesOut = 0;
        try
        {
            if (!_targets.IsAllowed(info, out var denial))
            {
                flags = ResponseFlags.Deny;
                denied = denial;
                Notify(static (o, i) => o.ConnectionOpened(i, ResponseFlags.Deny), info);
                await stream.RespondAsync(401, endStream: true, cancellationToken: aborted).ConfigureAwait(false);
                return;
            }

            if (_options.TunnelHandler is { } tunnels)
            {
                Notify(static (o, i) => o.ConnectionOpened(i, ResponseFlags.None), info);
                var served = await tunnels.ServeAsync(info, stream, aborted).ConfigureAwait(false);
                (flags, bytesIn, bytesOut) = (served.ResponseFlags, served.BytesIn, served.BytesOut);
                return;
            }

            Socket? upstream = await ConnectAsync(target!, aborted).ConfigureAwait(false);
            if (upstream is null && aborted.IsCancellationRequested)
            {
                // The client gave up, not the workload: not a CONNECT failure.
                flags = ResponseFlags.DownstreamReset;
                return;
            }
            if (upstream is null)
            {
                flags = ResponseFlags.Connect;
                Notify(static (o, i) => o.ConnectionOpened(i, ResponseFlags.Connect), info);
                await stream.RespondAsync(503, endStream: true, cancellationToken: aborted).ConfigureAwait(false);
                return;
            }

            using (upstream)
            {
                Notify(static (o, i) => o.ConnectionOpened(i, ResponseFlags.None), info);
                // The 200 HEADERS go out now: the client waits for them before it sends any payload.
                await stream.RespondAsync(200, cancellationToken: aborted).ConfigureAwait(false);

                var relay = await DuplexRelay<HboneRelayEnd, SocketRelayEnd>.RunAsync(new(stream), new(upstream)).ConfigureAwait(false);
                flags = relay.FailedSide switch
                {
                    RelaySide.Downstream => ResponseFlags.DownstreamReset,
                    RelaySide.Upstream => ResponseFlags.UpstreamReset,
                    _ => ResponseFlags.None,
                };
                bytesIn = relay.BytesAToB;
                bytesOut = relay.BytesBToA;
            }
        }
        catch (Exception) when (aborted.IsCancellationRequested)
        {
            // The stream or the whole connection went away under us.
            flags = ResponseFlags.DownstreamReset;
        }
        finally
        {
            var duration = Stopwatch.GetElapsedTime(started);
            WriteAccessLog(info, bytesIn, bytesOut, duration, flags, denied);
            try
            {
                _observer.ConnectionClosed(info, bytesIn, bytesOut, flags);
            }
            catch (Exception ex)
            {
                InboundLog.ObserverFailed(_logger, ex);
            }
        }
    }

    private void WriteAccessLog(InboundConnectionInfo info, long bytesIn, long bytesOut, TimeSpan duration, string flags, string? error)
    {
        var peers = InboundPeers.Unknown;
        try
        {
            peers = _observer.Describe(info);
        }
        catch (Exception ex)
        {
            InboundLog.ObserverFailed(_logger, ex);
        }
        var target = info.Destination.ToString();
        AccessLog.Write(_logger, new AccessLogEntry(TrafficDirection.Inbound,
            info.Source.ToString(), peers.SourceWorkload, info.PeerIdentity,
            target, target, peers.DestinationService, peers.DestinationWorkload, peers.DestinationIdentity,
            bytesIn, bytesOut, duration, flags, error));
    }

    private async ValueTask<Socket?> ConnectAsync(IPEndPoint target, CancellationToken aborted)
    {
        using var timeout = CancellationTokenSource.CreateLinkedTokenSource(aborted);
        timeout.CancelAfter(_options.ConnectTimeout);
        Socket? socket = null;
        try
        {
            if (_options.ConnectUpstream is { } connect)
                return await connect(target, timeout.Token).ConfigureAwait(false);

            socket = new Socket(target.AddressFamily, SocketType.Stream, ProtocolType.Tcp) { NoDelay = true };
            await socket.ConnectAsync(target, timeout.Token).ConfigureAwait(false);
            return socket;
        }
        catch (Exception ex) when (ex is SocketException or OperationCanceledException)
        {
            socket?.Dispose();
            // A client that went away is the caller's business (DOWNSTREAM_RESET), not a workload problem worth a
            // warning: a rapid-reset flood would otherwise write one warning per stream.
            if (!aborted.IsCancellationRequested)
                InboundLog.UpstreamConnectFailed(_logger, target, ex is SocketException se ? se.SocketErrorCode.ToString() : "timed out");
            return null;
        }
    }

    private async Task RejectAsync(HboneStream stream, string peer, IPEndPoint source, string target, int status, string reason)
    {
        InboundLog.Rejected(_logger, peer, source, target, status, reason);
        try
        {
            await stream.RespondAsync(status, reason, endStream: true, stream.Aborted).ConfigureAwait(false);
        }
        catch (Exception)
        {
            // The client reset the stream first; nothing left to tell it.
        }
    }

    private void Notify(Action<IInboundObserver, InboundConnectionInfo> call, InboundConnectionInfo info)
    {
        try
        {
            call(_observer, info);
        }
        catch (Exception ex)
        {
            InboundLog.ObserverFailed(_logger, ex);
        }
    }
}

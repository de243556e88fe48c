using System.Diagnostics;
using System.Net;
using System.Net.Sockets;
using Microsoft.AspNetCore.Connections;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Http.Features;
using Microsoft.Extensions.Logging;

namespace Ambient.Ztunnel.Proxy.Inbound;

/// <summary>
/// The request delegate of the inbound server: one HTTP/2 CONNECT stream = one tunnel to a local workload.
/// Order of checks follows Istio's inbound: shape of the request (400), target served here (400, no open relay),
/// authorization (401), upstream connect (503), then 200 and raw bytes both ways.
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

    public async Task HandleAsync(HttpContext context)
    {
        var state = context.Features.Get<InboundConnectionState>();
        if (state?.PeerIdentity is not { } peer)
        {
            // Only reachable if the pipeline were misconfigured (no mTLS); never serve an unidentified peer.
            context.Abort();
            return;
        }

        var request = context.Request;
        var source = new IPEndPoint(context.Connection.RemoteIpAddress ?? IPAddress.None, context.Connection.RemotePort);
        state.StreamStarted();
        if (context.RequestAborted.IsCancellationRequested)
        {
            // Reset by the client before we looked at it (Kestrel dispatches on HEADERS even when RST_STREAM
            // follows in the same read): no upstream connect, no access log, no metric - only the reset count.
            PrematureReset(state, source);
            return;
        }

        // HBONE is a plain CONNECT (RFC 9113 8.5): no :path, no :scheme, no :protocol (extended CONNECT is not HBONE).
        if (!HttpMethods.IsConnect(request.Method) || request.Path.HasValue || request.QueryString.HasValue
            || context.Features.Get<IHttpExtendedConnectFeature>()?.IsExtendedConnect == true)
        {
            await RejectAsync(context, peer, source, request.Method, StatusCodes.Status400BadRequest,
                "HBONE expects CONNECT without :path").ConfigureAwait(false);
            return;
        }

        string authority = request.Headers.Host.ToString();
        if (!ConnectAuthority.TryParse(authority, out var target, out var error))
        {
            await RejectAsync(context, peer, source, authority, StatusCodes.Status400BadRequest, error!).ConfigureAwait(false);
            return;
        }

        var listenerAddress = state.Listener.Address;
        if (!_targets.IsServedTarget(listenerAddress, target!))
        {
            await RejectAsync(context, peer, source, authority, StatusCodes.Status400BadRequest,
                "target is not a workload served by this listener").ConfigureAwait(false);
            return;
        }

        var info = new InboundConnectionInfo(
            peer, source, target!, listenerAddress,
            HeaderOrNull(request.Headers, "forwarded"),
            HeaderOrNull(request.Headers, "baggage"),
            HeaderOrNull(request.Headers, "traceparent"),
            DateTimeOffset.UtcNow);
        long started = Stopwatch.GetTimestamp();

        string flags = ResponseFlags.None;
        long bytesIn = 0, bytesOut = 0;
        try
        {
            if (!_targets.IsAllowed(peer, target!))
            {
                flags = ResponseFlags.Deny;
                Notify(static (o, i) => o.ConnectionOpened(i, ResponseFlags.Deny), info);
                context.Response.StatusCode = StatusCodes.Status401Unauthorized;
                return;
            }

            Socket? upstream = await ConnectAsync(target!, context.RequestAborted).ConfigureAwait(false);
            if (upstream is null && context.RequestAborted.IsCancellationRequested)
            {
                // The client gave up, not the workload: not a CONNECT failure, and a reset before the tunnel was up.
                flags = ResponseFlags.DownstreamReset;
                PrematureReset(state, source);
                return;
            }
            if (upstream is null)
            {
                flags = ResponseFlags.Connect;
                Notify(static (o, i) => o.ConnectionOpened(i, ResponseFlags.Connect), info);
                context.Response.StatusCode = StatusCodes.Status503ServiceUnavailable;
                return;
            }

            using (upstream)
            {
                Notify(static (o, i) => o.ConnectionOpened(i, ResponseFlags.None), info);
                context.Response.StatusCode = StatusCodes.Status200OK;
                // Send the 200 HEADERS now: the client waits for them before it sends any payload.
                await context.Response.BodyWriter.FlushAsync(context.RequestAborted).ConfigureAwait(false);

                var relay = new TunnelRelay(context, upstream);
                await relay.RunAsync().ConfigureAwait(false);
                flags = relay.Flags;
                bytesIn = relay.BytesIn;
                bytesOut = relay.BytesOut;
            }
        }
        catch (Exception) when (context.RequestAborted.IsCancellationRequested)
        {
            flags = ResponseFlags.DownstreamReset;
        }
        finally
        {
            var duration = Stopwatch.GetElapsedTime(started);
            InboundLog.Access(_logger, info.PeerIdentity, info.Source, info.Destination, bytesIn, bytesOut,
                (long)duration.TotalMilliseconds, flags, info.Forwarded, info.TraceParent);
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

    /// <summary>Counts a stream reset before its tunnel was up; a connection that floods them is closed (CVE-2023-44487).</summary>
    private void PrematureReset(InboundConnectionState state, IPEndPoint source)
    {
        if (!state.PrematureReset(_options.MaxPrematureResets))
            return;
        InboundLog.RapidReset(_logger, source, state.Listener.Address, state.PrematureResets, state.Streams);
        state.Connection?.Abort(new ConnectionAbortedException("HBONE client reset too many streams before their tunnel was up"));
    }

    private async Task RejectAsync(HttpContext context, string peer, IPEndPoint source, string target, int status, string reason)
    {
        InboundLog.Rejected(_logger, peer, source, target, status, reason);
        context.Response.StatusCode = status;
        context.Response.ContentType = "text/plain";
        try
        {
            await context.Response.WriteAsync(reason, context.RequestAborted).ConfigureAwait(false);
        }
        catch (Exception) when (context.RequestAborted.IsCancellationRequested)
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

    private static string? HeaderOrNull(IHeaderDictionary headers, string name)
    {
        var value = headers[name];
        return value.Count == 0 ? null : value.ToString();
    }
}

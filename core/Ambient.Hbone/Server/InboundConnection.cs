using System.Net.Security;
using System.Net.Sockets;
using Ambient.Hbone;
using Ambient.Hbone.Http2;
using Microsoft.Extensions.Logging;

namespace Ambient.Hbone.Server;

/// <summary>
/// One accepted HBONE connection: mutual TLS 1.3 (the listener's workload certificate, the client's checked by
/// <see cref="InboundTls"/>), then our HTTP/2 server whose streams go to the <see cref="ConnectHandler"/>.
/// <para>Why not Kestrel's HTTP/2 server: on the node proxy every tunnelled request crossed Kestrel's transport
/// pipe, IO queue, connection loop, per-stream body pipe and output writer, a thread hop at each; here the TLS read,
/// the frame parse and the send to the workload run on one thread, as on the client side of the tunnel.</para>
/// </summary>
internal sealed class InboundConnection
{
    private readonly InboundConnectionState _state;
    private readonly Socket _socket;
    private readonly InboundTls _tls;
    private readonly ConnectHandler _handler;
    private readonly HboneClientOptions _http2Options;
    private readonly TimeSpan _handshakeTimeout;
    private readonly ILogger _logger;
    private readonly CancellationTokenSource _aborted = new();
    private Http2Connection? _http2;
    private string? _abortReason; // under the lock on _aborted; non-null once Abort was called

    public InboundConnection(InboundConnectionState state, Socket socket, InboundTls tls, ConnectHandler handler,
        HboneClientOptions http2Options, TimeSpan handshakeTimeout, ILogger logger)
    {
        _state = state;
        _socket = socket;
        _tls = tls;
        _handler = handler;
        _http2Options = http2Options;
        _handshakeTimeout = handshakeTimeout;
        _logger = logger;
    }

    /// <summary>Serves the connection until it closes; never throws.</summary>
    public async Task RunAsync()
    {
        var ssl = new SslStream(new NetworkStream(_socket, ownsSocket: true), leaveInnerStreamOpen: false);
        try
        {
            if (!await HandshakeAsync(ssl).ConfigureAwait(false))
                return;

            var http2 = Http2Connection.CreateServer(ssl, _http2Options, $"{_state.Remote} ({_state.PeerIdentity})",
                (stream, request) => _ = _handler.HandleAsync(_state, stream, request), _logger);
            string? abortedFor;
            lock (_aborted)
            {
                _http2 = http2;
                abortedFor = _abortReason;
            }
            if (abortedFor is not null)
            {
                // Abort ran before the connection existed: it could not close it, so we do.
                await http2.CloseAsync(Http2ErrorCode.NO_ERROR, abortedFor).ConfigureAwait(false);
                return;
            }
            await http2.StartAsync().ConfigureAwait(false);
            await http2.Closed.ConfigureAwait(false);
        }
        catch (Exception)
        {
            // The HTTP/2 layer already logged why it closed; a failed start means the socket broke under us.
        }
        finally
        {
            await ssl.DisposeAsync().ConfigureAwait(false);
        }
    }

    private async ValueTask<bool> HandshakeAsync(SslStream ssl)
    {
        using var timeout = CancellationTokenSource.CreateLinkedTokenSource(_aborted.Token);
        timeout.CancelAfter(_handshakeTimeout);
        try
        {
            var options = _tls.ServerOptions(_state);
            await ssl.AuthenticateAsServerAsync(options, timeout.Token).ConfigureAwait(false);
        }
        catch (Exception)
        {
            // A handshake we cut ourselves (listener removed, server stopping) is not the client's failure.
            if (!_aborted.IsCancellationRequested)
                _tls.HandshakeFailed(_state);
            return false;
        }
        if (ssl.NegotiatedApplicationProtocol != SslApplicationProtocol.Http2)
        {
            _tls.Fail(_state, "the client did not negotiate ALPN h2");
            return false;
        }
        InboundLog.ConnectionEstablished(_logger, _state.Remote, _state.PeerIdentity, _state.Listener.Address);
        return true;
    }

    /// <summary>Ends the connection now: open tunnels are cut (their workload went away).</summary>
    public void Abort(string reason)
    {
        Http2Connection? http2;
        lock (_aborted)
        {
            _abortReason ??= reason;
            http2 = _http2;
        }
        _aborted.Cancel();
        if (http2 is not null)
            _ = http2.CloseAsync(Http2ErrorCode.NO_ERROR, reason);
    }

    /// <summary>Graceful: GOAWAY, then open tunnels get up to <paramref name="timeout"/> to finish.</summary>
    public Task DrainAsync(TimeSpan timeout)
    {
        Http2Connection? http2;
        lock (_aborted)
        {
            http2 = _http2;
        }
        if (http2 is not null)
            return http2.DrainAsync(timeout);
        Abort("the HBONE server is stopping");
        return Task.CompletedTask;
    }
}

using System.Buffers;
using System.IO.Pipelines;
using System.Net;
using System.Threading.Channels;
using Ambient.Core.Identity;
using Ambient.Hbone;
using Ambient.Hbone.Server;
using Microsoft.AspNetCore.Connections;
using Microsoft.AspNetCore.Connections.Features;
using Microsoft.AspNetCore.Http.Features;

namespace Ambient.Waypoint.Inbound;

/// <summary>
/// An endpoint Kestrel "listens" on for tunnels: not a socket, the HBONE server's accepted streams. Kestrel cannot
/// tell h2c from HTTP/1.1 on one cleartext endpoint (it answers HTTP_1_1_REQUIRED), so there are two, and each
/// tunnel goes to the one its first bytes ask for (<see cref="HboneTunnelConnection.StartsWithHttp2PrefaceAsync"/>).
/// </summary>
internal sealed class HboneTunnelEndPoint(bool http2) : EndPoint
{
    public bool Http2 { get; } = http2;

    public override string ToString() => Http2 ? "hbone-tunnels-h2c" : "hbone-tunnels-http1";
}

/// <summary>
/// What a request handler can learn about the tunnel its connection came through (a connection feature, so
/// <c>HttpContext.Features.Get&lt;IHboneTunnelFeature&gt;()</c> finds it): who sent it and where it was addressed.
/// </summary>
internal interface IHboneTunnelFeature
{
    /// <summary>The SPIFFE identity of the peer's certificate (the source workload, via its ztunnel).</summary>
    string PeerIdentity { get; }

    /// <summary>The namespace segment of <see cref="PeerIdentity"/> (the client's namespace, for consumer routes);
    /// null when the identity is not a SPIFFE workload identity.</summary>
    string? PeerNamespace { get; }

    /// <summary>The CONNECT target: the original destination (Service VIP:port) the source addressed.</summary>
    IPEndPoint OriginalTarget { get; }

    /// <summary>The whole accepted CONNECT as the HBONE server saw it (source address, forwarded, baggage...).</summary>
    InboundConnectionInfo Connection { get; }
}

/// <summary>
/// Kestrel's transport for the waypoint: instead of accepting sockets, it yields each HBONE CONNECT stream the
/// inbound server hands it (<see cref="Dispatch"/>) as a connection, so Kestrel parses the HTTP/1.1 or h2c inside
/// exactly as it would on a socket. Registered as an <see cref="IConnectionListenerFactory"/> that binds only
/// <see cref="HboneTunnelEndPoint"/>; other endpoints (the admin port) stay with the socket transport.
/// </summary>
internal sealed class HboneTunnelTransport : IConnectionListenerFactory, IConnectionListenerFactorySelector
{
    public TunnelListener Http1 { get; } = new(new HboneTunnelEndPoint(http2: false));

    public TunnelListener Http2 { get; } = new(new HboneTunnelEndPoint(http2: true));

    public bool CanBind(EndPoint endpoint) => endpoint is HboneTunnelEndPoint;

    public ValueTask<IConnectionListener> BindAsync(EndPoint endpoint, CancellationToken cancellationToken = default) =>
        endpoint is HboneTunnelEndPoint tunnels
            ? ValueTask.FromResult<IConnectionListener>(tunnels.Http2 ? Http2 : Http1)
            : throw new NotSupportedException($"{endpoint} is not an HBONE tunnel endpoint");

    /// <summary>Hands one accepted tunnel to Kestrel, by its first bytes; false once the server stopped listening.</summary>
    public async ValueTask<bool> DispatchAsync(HboneTunnelConnection connection, CancellationToken cancellationToken)
    {
        var http2 = await connection.StartsWithHttp2PrefaceAsync(cancellationToken).ConfigureAwait(false);
        return (http2 ? Http2 : Http1).TryAccept(connection);
    }

    /// <summary>One of the two endpoints' listener: a queue of accepted tunnels Kestrel takes connections from.</summary>
    internal sealed class TunnelListener(HboneTunnelEndPoint endpoint) : IConnectionListener
    {
        private readonly Channel<ConnectionContext> _accepted = Channel.CreateUnbounded<ConnectionContext>();

        public EndPoint EndPoint => endpoint;

        public bool TryAccept(ConnectionContext connection) => _accepted.Writer.TryWrite(connection);

        public async ValueTask<ConnectionContext?> AcceptAsync(CancellationToken cancellationToken = default)
        {
            try
            {
                return await _accepted.Reader.ReadAsync(cancellationToken).ConfigureAwait(false);
            }
            catch (ChannelClosedException)
            {
                return null;
            }
        }

        public ValueTask UnbindAsync(CancellationToken cancellationToken = default)
        {
            _accepted.Writer.TryComplete();
            return ValueTask.CompletedTask;
        }

        public ValueTask DisposeAsync() => UnbindAsync();
    }
}

/// <summary>
/// One HBONE stream as a Kestrel connection. Kestrel reads the stream's receive pipe and writes DATA through a pipe
/// writer; when Kestrel is done with it (disposes it), the stream's sending side is ended and <see cref="Completion"/> lets the HBONE
/// server finish the tunnel. A reset of the stream by the peer closes the connection for Kestrel.
/// </summary>
internal sealed class HboneTunnelConnection : ConnectionContext, IHboneTunnelFeature, IConnectionEndPointFeature
{
    private static long s_nextId;
    private readonly HboneStream _stream;
    private readonly CancellationTokenSource _closed = new();
    private readonly CancellationTokenRegistration _onStreamAborted;
    private readonly TaskCompletionSource _completion = new(TaskCreationOptions.RunContinuationsAsynchronously);
    private readonly PipeReader _input;
    private readonly PipeWriter _output;
    private int _disposed;
    private string? _peerNamespace;

    public HboneTunnelConnection(HboneStream stream, InboundConnectionInfo info)
    {
        _stream = stream;
        Connection = info;
        // The stream's own receive pipe and a writer that frames DATA directly: Kestrel parses the tunnel's bytes where
        // they landed, with no copy and no Stream layer in between.
        _input = stream.CreateReceiveReader();
        _output = stream.CreateSendWriter();
        Transport = new DuplexPipe(_input, _output);
        ConnectionId = "hbone-" + Interlocked.Increment(ref s_nextId).ToString(System.Globalization.CultureInfo.InvariantCulture);
        LocalEndPoint = info.Destination;
        RemoteEndPoint = info.Source;
        Features.Set<IHboneTunnelFeature>(this);
        Features.Set<IConnectionEndPointFeature>(this);
        _onStreamAborted = stream.Aborted.Register(static s => ((HboneTunnelConnection)s!).Close(), this);
    }

    public string PeerIdentity => Connection.PeerIdentity;

    // Parsed once per tunnel, not per request.
    public string? PeerNamespace
    {
        get
        {
            var ns = _peerNamespace ??= SpiffeId.TryParse(Connection.PeerIdentity, out var id) ? id.Namespace : "";
            return ns.Length == 0 ? null : ns;
        }
    }

    public IPEndPoint OriginalTarget => Connection.Destination;

    public InboundConnectionInfo Connection { get; }

    /// <summary>
    /// Reads (without consuming) until the first bytes prove or disprove the HTTP/2 connection preface (RFC 9113
    /// 3.4: prior knowledge), so Kestrel then reads the same bytes. A tunnel closed before that counts as HTTP/1.1.
    /// </summary>
    public async ValueTask<bool> StartsWithHttp2PrefaceAsync(CancellationToken cancellationToken)
    {
        while (true)
        {
            var read = await _input.ReadAsync(cancellationToken).ConfigureAwait(false);
            var buffer = read.Buffer;
            var matches = MatchesPreface(buffer, out var complete);
            if (!matches || complete || read.IsCompleted || read.IsCanceled)
            {
                // Nothing consumed or examined: Kestrel's first read returns these same bytes at once.
                _input.AdvanceTo(buffer.Start);
                return matches && complete;
            }
            // A prefix of the preface so far: wait for more bytes.
            _input.AdvanceTo(buffer.Start, buffer.End);
        }
    }

    private static bool MatchesPreface(in ReadOnlySequence<byte> buffer, out bool complete)
    {
        Span<byte> head = stackalloc byte[Http2Preface.Length];
        var length = (int)Math.Min(buffer.Length, Http2Preface.Length);
        buffer.Slice(0, length).CopyTo(head);
        complete = length == Http2Preface.Length;
        return head[..length].SequenceEqual(Http2Preface[..length]);
    }

    private static ReadOnlySpan<byte> Http2Preface => "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"u8;

    /// <summary>Completes when Kestrel has let go of the connection.</summary>
    public Task Completion => _completion.Task;

    public override string ConnectionId { get; set; }

    public override IFeatureCollection Features { get; } = new FeatureCollection();

    public override IDictionary<object, object?> Items { get; set; } = new Dictionary<object, object?>();

    public override IDuplexPipe Transport { get; set; }

    public override EndPoint? LocalEndPoint { get; set; }

    public override EndPoint? RemoteEndPoint { get; set; }

    public override CancellationToken ConnectionClosed
    {
        get => _closed.Token;
        set => throw new NotSupportedException();
    }

    public override void Abort(ConnectionAbortedException abortReason)
    {
        // Kestrel gives up on the connection (a protocol error, a shutdown): the peer must see the tunnel fail, not end.
        _ = _stream.ResetAsync(Hbone.Http2.Http2ErrorCode.CANCEL, abortReason.Message);
        Close();
    }

    public override async ValueTask DisposeAsync()
    {
        if (Interlocked.Exchange(ref _disposed, 1) != 0)
        {
            return;
        }
        try
        {
            // Also waits for what Kestrel left in the writer when it completed it synchronously (an error answer it
            // never flushed): END_STREAM goes out after the last of those bytes.
            await _output.CompleteAsync().ConfigureAwait(false);
            await _input.CompleteAsync().ConfigureAwait(false);
            if (!_stream.Aborted.IsCancellationRequested)
            {
                // END_STREAM: the peer reads the end of the response bytes as a closed connection.
                await _stream.CompleteWritesAsync().ConfigureAwait(false);
            }
        }
        catch (Exception ex) when (ex is IOException or ObjectDisposedException or OperationCanceledException or HboneException)
        {
            // The tunnel went away first; nothing left to end.
        }
        finally
        {
            await _onStreamAborted.DisposeAsync().ConfigureAwait(false);
            Close();
            _closed.Dispose();
            _completion.TrySetResult();
        }
    }

    private void Close()
    {
        try
        {
            _closed.Cancel();
        }
        catch (ObjectDisposedException)
        {
            // Disposed concurrently: already closed.
        }
    }

    private sealed class DuplexPipe(PipeReader input, PipeWriter output) : IDuplexPipe
    {
        public PipeReader Input { get; } = input;

        public PipeWriter Output { get; } = output;
    }
}

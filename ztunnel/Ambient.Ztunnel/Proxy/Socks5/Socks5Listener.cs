using System.Buffers;
using System.Collections.Concurrent;
using System.IO.Pipelines;
using System.Net;
using System.Net.Sockets;
using Ambient.Core.Telemetry;
using Ambient.Hbone.Telemetry;
using Ambient.Ztunnel.Proxy.Outbound;
using Microsoft.Extensions.Logging;

namespace Ambient.Ztunnel.Proxy.Socks5;

/// <summary>Tunables of a <see cref="Socks5Listener"/>; the defaults are the production values.</summary>
internal sealed record Socks5ListenerOptions
{
    /// <summary>Greeting + request must arrive within this time, or the client is dropped without a reply.</summary>
    public TimeSpan HandshakeTimeout { get; init; } = TimeSpan.FromSeconds(10);

    public int Backlog { get; init; } = 512;

    /// <summary>After a refusal we read (and discard) what the client still sends for this long, so closing does not
    /// turn into a TCP reset that could destroy the refusal reply before the client has read it.</summary>
    public TimeSpan RefusalDrainTimeout { get; init; } = TimeSpan.FromSeconds(1);

    /// <summary>How long <see cref="Socks5Listener.DisposeAsync"/> waits for aborted connections to unwind.</summary>
    public TimeSpan ShutdownTimeout { get; init; } = TimeSpan.FromSeconds(5);
}

/// <summary>
/// The ztunnel's SOCKS5 front door (RFC 1928, CONNECT only, no authentication). In local mode each pod has its own
/// loopback address and its own listener, so the accepting socket's local address names the source pod. The listener
/// owns the SOCKS5 conversation only: it hands the source, the client and the requested destination to the
/// <see cref="IOutboundProxy"/>, sends the success reply when the proxy says "connected", and maps any other outcome
/// to a reply code (<see cref="Socks5Reply.CodeFor"/>).
/// </summary>
/// <remarks>
/// A plain Socket accept loop rather than Kestrel's IConnectionListenerFactory: the relay is Stream-based and needs
/// Socket.Shutdown(Send) for half-close, which a Kestrel ConnectionContext only offers indirectly through its pipes
/// (an extra copy per direction); there is one small listener per pod, so Kestrel's hosting and options machinery buys
/// nothing; and the accepted Socket hands us LocalEndPoint (the source pod) directly.
/// </remarks>
internal sealed class Socks5Listener : IAsyncDisposable
{
    // Bytes discarded at most while draining a refused client; a client that keeps sending is simply cut off.
    private const int MaxRefusalDrainBytes = 64 * 1024;

    private static readonly StreamPipeReaderOptions HandshakeReaderOptions =
        new(pool: MemoryPool<byte>.Shared, bufferSize: 4096, minimumReadSize: 1024, leaveOpen: true);

    private readonly Socket _listenSocket;
    private readonly IOutboundProxy _proxy;
    private readonly ILogger _logger;
    private readonly Socks5ListenerOptions _options;
    private readonly CancellationTokenSource _shutdown = new();
    private readonly ConcurrentDictionary<long, Socket> _connections = new();
    private readonly TaskCompletionSource _drained = new(TaskCreationOptions.RunContinuationsAsynchronously);
    private Task _acceptLoop = Task.CompletedTask;
    private long _nextConnectionId;
    private int _liveConnections;
    private int _disposed;

    // The pod this listener serves when its own address does not name it (in-pod mode: 127.0.0.1 inside the pod's
    // namespace); null: the accepting socket's local address names the pod (loopback mode).
    private readonly IPAddress? _source;

    private Socks5Listener(Socket listenSocket, IPAddress? source, IOutboundProxy proxy, ILogger logger, Socks5ListenerOptions options)
    {
        _listenSocket = listenSocket;
        _source = source;
        _proxy = proxy;
        _logger = logger;
        _options = options;
        LocalEndPoint = (IPEndPoint)listenSocket.LocalEndPoint!;
    }

    /// <summary>The bound address (with the real port when port 0 was asked for).</summary>
    public IPEndPoint LocalEndPoint { get; }

    /// <summary>Connections accepted and not yet closed (handshaking or relaying).</summary>
    public int LiveConnections => Volatile.Read(ref _liveConnections);

    /// <summary>Binds <paramref name="endpoint"/> and starts accepting. Throws <see cref="IOException"/> naming the
    /// endpoint when it cannot be bound.</summary>
    public static Socks5Listener Start(IPEndPoint endpoint, IOutboundProxy proxy, ILogger logger, Socks5ListenerOptions? options = null)
    {
        ArgumentNullException.ThrowIfNull(endpoint);
        options = Validate(proxy, logger, options);
        var socket = new Socket(endpoint.AddressFamily, SocketType.Stream, ProtocolType.Tcp);
        try
        {
            // No ReuseAddress: on Linux .NET maps it to SO_REUSEPORT as well, which would let a second ztunnel bind the
            // same pod address and silently share its connections instead of failing.
            socket.Bind(endpoint);
            socket.Listen(options.Backlog);
        }
        catch (SocketException ex)
        {
            socket.Dispose();
            throw new IOException($"SOCKS5 listener cannot listen on {endpoint}: {ex.SocketErrorCode} ({ex.Message})", ex);
        }

        return Start(socket, source: null, proxy, logger, options);
    }

    /// <summary>
    /// Starts accepting on <paramref name="listeningSocket"/>, already bound and listening (in-pod mode: made inside the
    /// pod's network namespace), for the pod at <paramref name="source"/> (null: the socket's local address names it).
    /// The listener owns the socket from now on.
    /// </summary>
    public static Socks5Listener Start(Socket listeningSocket, IPAddress? source, IOutboundProxy proxy, ILogger logger, Socks5ListenerOptions? options = null)
    {
        ArgumentNullException.ThrowIfNull(listeningSocket);
        try
        {
            options = Validate(proxy, logger, options);
        }
        catch
        {
            listeningSocket.Dispose();
            throw;
        }

        var listener = new Socks5Listener(listeningSocket, source, proxy, logger, options);
        Socks5Log.ListenerStarted(logger, listener.LocalEndPoint);
        listener._acceptLoop = listener.AcceptLoopAsync();
        return listener;
    }

    private static Socks5ListenerOptions Validate(IOutboundProxy proxy, ILogger logger, Socks5ListenerOptions? options)
    {
        ArgumentNullException.ThrowIfNull(proxy);
        ArgumentNullException.ThrowIfNull(logger);
        options ??= new Socks5ListenerOptions();
        if (options.HandshakeTimeout <= TimeSpan.Zero)
        {
            throw new ArgumentOutOfRangeException(nameof(options), options.HandshakeTimeout, "SOCKS5 handshake timeout must be positive.");
        }
        return options;
    }

    private async Task AcceptLoopAsync()
    {
        var token = _shutdown.Token;
        while (!token.IsCancellationRequested)
        {
            Socket client;
            try
            {
                client = await _listenSocket.AcceptAsync(token).ConfigureAwait(false);
            }
            catch (Exception ex) when (token.IsCancellationRequested || ex is ObjectDisposedException)
            {
                break;
            }
            catch (SocketException ex)
            {
                // EMFILE, ECONNABORTED and friends: transient; back off a little instead of spinning.
                Socks5Log.AcceptFailed(_logger, LocalEndPoint, ex);
                try
                {
                    await Task.Delay(TimeSpan.FromMilliseconds(100), token).ConfigureAwait(false);
                }
                catch (OperationCanceledException)
                {
                    break;
                }

                continue;
            }

            long id = Interlocked.Increment(ref _nextConnectionId);
            Interlocked.Increment(ref _liveConnections);
            _connections[id] = client;
            _ = RunConnectionAsync(client, id);
        }
    }

    private async Task RunConnectionAsync(Socket socket, long id)
    {
        // Off the accept loop at once: the handshake must never delay the next accept.
        await Task.Yield();
        IPEndPoint? client = null;
        var stream = new NetworkStream(socket, ownsSocket: true);
        try
        {
            client = (IPEndPoint)socket.RemoteEndPoint!;
            var local = (IPEndPoint)socket.LocalEndPoint!;
            socket.NoDelay = true;
            await ServeAsync(stream, local, client, _shutdown.Token).ConfigureAwait(false);
        }
        catch (Exception ex) when (IsConnectionGone(ex))
        {
            if (client is not null)
            {
                Socks5Log.ClientGone(_logger, client, ex);
            }
        }
        catch (Exception ex)
        {
            Socks5Log.ConnectionFailed(_logger, client, ex);
        }
        finally
        {
            await stream.DisposeAsync().ConfigureAwait(false);
            _connections.TryRemove(id, out _);
            if (Interlocked.Decrement(ref _liveConnections) == 0 && _shutdown.IsCancellationRequested)
            {
                _drained.TrySetResult();
            }
        }
    }

    private async Task ServeAsync(NetworkStream stream, IPEndPoint local, IPEndPoint client, CancellationToken token)
    {
        var reader = PipeReader.Create(stream, HandshakeReaderOptions);
        byte[] reply = ArrayPool<byte>.Shared.Rent(Socks5Reply.MaxReplyLength);
        try
        {
            var (status, request) = await HandshakeAsync(stream, reader, reply, client, token).ConfigureAwait(false);
            if (status != Socks5ParseStatus.Ok)
            {
                return;
            }

            var destination = request.ToDestination();
            var connection = new Socks5Client(client, stream, reader, reply);
            OutboundResult result;
            try
            {
                result = await _proxy.ProxyAsync(_source ?? local.Address, connection, destination, token).ConfigureAwait(false);
            }
            catch (Exception ex) when (!token.IsCancellationRequested && !connection.Connected)
            {
                Socks5Log.HandlerFailed(_logger, client, destination, ex);
                await RefuseAsync(stream, reader, reply, Socks5ReplyCode.GeneralFailure, token).ConfigureAwait(false);
                return;
            }

            if (connection.Connected)
            {
                if (result.Flags == ResponseFlags.None)
                {
                    Socks5Log.RelayCompleted(_logger, client, destination, result.BytesSent, result.BytesReceived);
                }
                else
                {
                    Socks5Log.RelayAborted(_logger, client, destination, result.Flags, result.BytesSent, result.BytesReceived);
                }
                return;
            }

            var code = Socks5Reply.CodeFor(result.Error);
            if (code == Socks5ReplyCode.Succeeded)
            {
                Socks5Log.HandlerReturnedNoStream(_logger, client, destination);
                code = Socks5ReplyCode.GeneralFailure;
            }
            else
            {
                Socks5Log.ConnectRefused(_logger, client, destination, result.Error, code);
            }
            await RefuseAsync(stream, reader, reply, code, token).ConfigureAwait(false);
        }
        finally
        {
            ArrayPool<byte>.Shared.Return(reply);
            await reader.CompleteAsync().ConfigureAwait(false);
        }
    }

    private async Task<(Socks5ParseStatus Status, Socks5Request Request)> HandshakeAsync(
        NetworkStream stream, PipeReader reader, byte[] reply, IPEndPoint client, CancellationToken token)
    {
        using var timeout = CancellationTokenSource.CreateLinkedTokenSource(token);
        timeout.CancelAfter(_options.HandshakeTimeout);
        var handshakeToken = timeout.Token;
        try
        {
            var status = Socks5ParseStatus.Incomplete;
            while (status == Socks5ParseStatus.Incomplete)
            {
                var read = await reader.ReadAsync(handshakeToken).ConfigureAwait(false);
                status = Socks5Parser.ParseGreeting(read.Buffer, out var consumed);
                if (!Advance(reader, read, status, consumed, client))
                {
                    return (status, default);
                }
            }

            if (status == Socks5ParseStatus.BadVersion)
            {
                // Not SOCKS5: RFC 1928 defines no answer we could give, so the connection is just closed.
                return await RejectAsync(stream, reader, status, null, reply, client, token).ConfigureAwait(false);
            }

            if (status == Socks5ParseStatus.NoAcceptableMethod)
            {
                int length = Socks5Reply.WriteMethodSelection(reply, Socks5Parser.MethodNoAcceptable);
                await stream.WriteAsync(reply.AsMemory(0, length), handshakeToken).ConfigureAwait(false);
                return await RejectAsync(stream, reader, status, null, reply, client, token).ConfigureAwait(false);
            }

            int selected = Socks5Reply.WriteMethodSelection(reply, Socks5Parser.MethodNoAuthentication);
            await stream.WriteAsync(reply.AsMemory(0, selected), handshakeToken).ConfigureAwait(false);

            Socks5Request request = default;
            status = Socks5ParseStatus.Incomplete;
            while (status == Socks5ParseStatus.Incomplete)
            {
                var read = await reader.ReadAsync(handshakeToken).ConfigureAwait(false);
                status = Socks5Parser.ParseRequest(read.Buffer, out var consumed, out request);
                if (!Advance(reader, read, status, consumed, client))
                {
                    return (status, default);
                }
            }

            if (status != Socks5ParseStatus.Ok)
            {
                return await RejectAsync(stream, reader, status, Socks5Parser.ReplyFor(status), reply, client, token).ConfigureAwait(false);
            }

            return (status, request);
        }
        catch (OperationCanceledException) when (timeout.IsCancellationRequested && !token.IsCancellationRequested)
        {
            Socks5Log.HandshakeTimedOut(_logger, client, _options.HandshakeTimeout);
            return (Socks5ParseStatus.Incomplete, default);
        }
    }

    /// <summary>Moves the reader past what the parser looked at; false when the client closed mid-message.</summary>
    private bool Advance(PipeReader reader, ReadResult read, Socks5ParseStatus status, SequencePosition consumed, IPEndPoint client)
    {
        var buffer = read.Buffer;
        if (status != Socks5ParseStatus.Incomplete)
        {
            // Consumed but not examined beyond: whatever follows stays readable without another socket read.
            reader.AdvanceTo(consumed);
            return true;
        }

        reader.AdvanceTo(buffer.Start, buffer.End);
        if (read.IsCompleted)
        {
            Socks5Log.ClientGone(_logger, client, null);
            return false;
        }

        return true;
    }

    private async Task<(Socks5ParseStatus, Socks5Request)> RejectAsync(
        NetworkStream stream, PipeReader reader, Socks5ParseStatus status, Socks5ReplyCode? code, byte[] reply, IPEndPoint client, CancellationToken token)
    {
        Socks5Log.HandshakeRejected(_logger, client, Socks5Parser.Describe(status));
        if (code is { } replyCode)
        {
            await RefuseAsync(stream, reader, reply, replyCode, token).ConfigureAwait(false);
        }
        else
        {
            await CloseGracefullyAsync(stream, reader, token).ConfigureAwait(false);
        }

        return (status, default);
    }

    private async Task RefuseAsync(NetworkStream stream, PipeReader reader, byte[] reply, Socks5ReplyCode code, CancellationToken token)
    {
        int length = Socks5Reply.Write(reply, code, null);
        await stream.WriteAsync(reply.AsMemory(0, length), token).ConfigureAwait(false);
        await CloseGracefullyAsync(stream, reader, token).ConfigureAwait(false);
    }

    /// <summary>Sends FIN, then reads and discards until the client closes too (bounded in time and bytes), so
    /// unread input does not make our close a reset that could discard the reply we just sent.</summary>
    private async Task CloseGracefullyAsync(NetworkStream stream, PipeReader reader, CancellationToken token)
    {
        using var drain = CancellationTokenSource.CreateLinkedTokenSource(token);
        drain.CancelAfter(_options.RefusalDrainTimeout);
        try
        {
            stream.Socket.Shutdown(SocketShutdown.Send);
            long discarded = 0;
            while (discarded < MaxRefusalDrainBytes)
            {
                var read = await reader.ReadAsync(drain.Token).ConfigureAwait(false);
                discarded += read.Buffer.Length;
                reader.AdvanceTo(read.Buffer.End);
                if (read.IsCompleted)
                {
                    break;
                }
            }
        }
        catch (Exception ex) when (IsConnectionGone(ex))
        {
            // The client reset or never closed: either way we are done with it.
        }
    }

    /// <summary>
    /// The SOCKS5 side of one outbound connection: once the proxy is connected, the success reply goes out and the
    /// bytes the client sent right behind its request (already in the handshake pipe's buffer) go upstream.
    /// </summary>
    private sealed class Socks5Client(IPEndPoint client, NetworkStream stream, PipeReader reader, byte[] reply)
        : OutboundClient(client, stream)
    {
        protected override async ValueTask OnConnectedAsync(Stream upstream, IPEndPoint? bound, CancellationToken cancellationToken)
        {
            int length = Socks5Reply.Write(reply, Socks5ReplyCode.Succeeded, bound);
            await stream.WriteAsync(reply.AsMemory(0, length), cancellationToken).ConfigureAwait(false);

            if (reader.TryRead(out var pending))
            {
                foreach (var segment in pending.Buffer)
                {
                    await upstream.WriteAsync(segment, cancellationToken).ConfigureAwait(false);
                }

                reader.AdvanceTo(pending.Buffer.End);
            }

            // From here on the relay reads the socket directly; the pipe holds nothing more.
            await reader.CompleteAsync().ConfigureAwait(false);
        }
    }

    private static bool IsConnectionGone(Exception ex) =>
        ex is OperationCanceledException or IOException or SocketException or ObjectDisposedException;

    /// <summary>Closes the listening socket, aborts every live connection and waits (bounded) for them to unwind.</summary>
    public async ValueTask DisposeAsync()
    {
        if (Interlocked.Exchange(ref _disposed, 1) != 0)
        {
            return;
        }

        _shutdown.Cancel();
        _listenSocket.Dispose();
        await _acceptLoop.ConfigureAwait(false);

        int live = LiveConnections;
        foreach (var connection in _connections)
        {
            connection.Value.Dispose();
        }

        if (LiveConnections == 0)
        {
            _drained.TrySetResult();
        }

        try
        {
            await _drained.Task.WaitAsync(_options.ShutdownTimeout).ConfigureAwait(false);
            _shutdown.Dispose();
        }
        catch (TimeoutException)
        {
            // A handler that ignores cancellation keeps its task alive; the sockets are closed regardless.
        }

        Socks5Log.ListenerStopped(_logger, LocalEndPoint, live);
    }
}

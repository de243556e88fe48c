using System.Collections.Concurrent;
using System.Net;
using System.Net.Sockets;
using System.Threading.Channels;
using Microsoft.AspNetCore.Connections;
using Microsoft.AspNetCore.Server.Kestrel.Transport.Sockets;
using Microsoft.Extensions.Logging;

namespace Ambient.Ztunnel.Proxy.Inbound;

/// <summary>
/// A Kestrel transport whose set of listening sockets changes at runtime. Kestrel binds one endpoint
/// (<see cref="WorkloadListenersEndPoint"/>) once; behind it each workload gets its own socket on addr:15008, added
/// and removed without restarting Kestrel, so a pod coming or going never touches other pods' tunnels, and all pods
/// share one Kestrel (one heartbeat thread, one memory pool) instead of one server each.
/// Every accepted connection carries an <see cref="InboundConnectionState"/> naming the listener it came in on,
/// which is how the TLS callback picks the workload's certificate without SNI.
/// </summary>
internal sealed class WorkloadListeners : IConnectionListenerFactory, IConnectionListenerFactorySelector, IConnectionListener
{
    private readonly ConcurrentDictionary<IPAddress, WorkloadListener> _listeners = new();
    private readonly Channel<ConnectionContext> _accepted =
        Channel.CreateUnbounded<ConnectionContext>(new UnboundedChannelOptions { SingleReader = false, SingleWriter = false });
    private readonly SocketConnectionContextFactory _contextFactory;
    private readonly Func<WorkloadListener, Socket, InboundConnectionState> _createState;
    private readonly ILogger _logger;
    private readonly object _gate = new();
    private bool _closed;

    public WorkloadListeners(ILoggerFactory loggerFactory, Func<WorkloadListener, Socket, InboundConnectionState> createState)
    {
        _logger = loggerFactory.CreateLogger<HboneInboundServer>();
        // Default (thread-pool) scheduling of Kestrel's transport pipes, measured against UnsafePreferInlineScheduling:
        // inline cut single-stream throughput by 40% (TLS, HTTP/2 framing and the socket could no longer overlap on
        // two cores). The sockets themselves complete inline (see Program).
        _contextFactory = new SocketConnectionContextFactory(new SocketConnectionFactoryOptions(),
            loggerFactory.CreateLogger("Ambient.Ztunnel.Proxy.Inbound.Transport"));
        _createState = createState;
    }

    public EndPoint EndPoint { get; } = new WorkloadListenersEndPoint();

    public ICollection<WorkloadListener> Current => _listeners.Values;

    public bool CanBind(EndPoint endpoint) => endpoint is WorkloadListenersEndPoint;

    public ValueTask<IConnectionListener> BindAsync(EndPoint endpoint, CancellationToken cancellationToken = default)
    {
        if (endpoint is not WorkloadListenersEndPoint)
            throw new NotSupportedException($"{endpoint} is not the HBONE workload listener set");
        return ValueTask.FromResult<IConnectionListener>(this);
    }

    /// <summary>Starts accepting on <paramref name="socket"/> (already bound and listening) for <paramref name="workload"/>.</summary>
    public WorkloadListener Add(IPAddress workload, Socket socket)
    {
        var listener = new WorkloadListener(workload, socket);
        lock (_gate)
        {
            if (_closed)
                throw new ObjectDisposedException(nameof(HboneInboundServer));
            if (!_listeners.TryAdd(workload, listener))
                throw new InvalidOperationException($"an HBONE listener for {workload} already exists");
        }
        _ = AcceptLoopAsync(listener);
        return listener;
    }

    public bool Remove(IPAddress workload, bool abortConnections)
    {
        if (!_listeners.TryRemove(workload, out var listener))
            return false;
        listener.Stop(abortConnections);
        return true;
    }

    private async Task AcceptLoopAsync(WorkloadListener listener)
    {
        while (true)
        {
            Socket socket;
            try
            {
                socket = await listener.Socket.AcceptAsync(listener.Stopping).ConfigureAwait(false);
            }
            catch (Exception) when (listener.Stopping.IsCancellationRequested)
            {
                return;
            }
            catch (ObjectDisposedException)
            {
                return;
            }
            catch (SocketException ex) when (ex.SocketErrorCode is SocketError.ConnectionReset or SocketError.ConnectionAborted
                                                  or SocketError.Interrupted or SocketError.TooManyOpenSockets or SocketError.NoBufferSpaceAvailable)
            {
                // Transient (the peer gave up before accept, or fd pressure): keep the listener alive.
                InboundLog.AcceptFailed(_logger, listener.Address, ex.SocketErrorCode.ToString());
                if (ex.SocketErrorCode is SocketError.TooManyOpenSockets or SocketError.NoBufferSpaceAvailable)
                    await Task.Delay(100).ConfigureAwait(false);
                continue;
            }

            socket.NoDelay = true;
            var connection = _contextFactory.Create(socket);
            connection.Features.Set(_createState(listener, socket));
            listener.Track(connection);
            if (!_accepted.Writer.TryWrite(connection))
            {
                await connection.DisposeAsync().ConfigureAwait(false);
                return;
            }
        }
    }

    public async ValueTask<ConnectionContext?> AcceptAsync(CancellationToken cancellationToken = default)
    {
        try
        {
            return await _accepted.Reader.ReadAsync(cancellationToken).ConfigureAwait(false);
        }
        catch (ChannelClosedException)
        {
            return null; // Kestrel's signal that this listener is done
        }
    }

    public ValueTask UnbindAsync(CancellationToken cancellationToken = default)
    {
        CloseAll(abortConnections: false);
        return ValueTask.CompletedTask;
    }

    public ValueTask DisposeAsync()
    {
        CloseAll(abortConnections: true);
        _contextFactory.Dispose();
        return ValueTask.CompletedTask;
    }

    private void CloseAll(bool abortConnections)
    {
        lock (_gate)
        {
            _closed = true;
        }
        foreach (var address in _listeners.Keys)
            Remove(address, abortConnections);
        _accepted.Writer.TryComplete();
        // Connections accepted but never picked up by Kestrel.
        while (_accepted.Reader.TryRead(out var orphan))
            orphan.Abort();
    }
}

/// <summary>The single endpoint Kestrel binds; the real sockets live in <see cref="WorkloadListeners"/>.</summary>
internal sealed class WorkloadListenersEndPoint : EndPoint
{
    public override string ToString() => "hbone-workload-listeners";
}

/// <summary>One workload's listening socket plus the connections accepted on it (so removing a pod can end them).</summary>
internal sealed class WorkloadListener
{
    private readonly CancellationTokenSource _stopping = new();
    private readonly ConcurrentDictionary<ConnectionContext, byte> _connections = new();
    private CertificateContextCache? _certificate;

    public WorkloadListener(IPAddress address, Socket socket)
    {
        Address = address;
        Socket = socket;
        EndPoint = (IPEndPoint)socket.LocalEndPoint!;
    }

    public IPAddress Address { get; }

    public Socket Socket { get; }

    public IPEndPoint EndPoint { get; }

    public CancellationToken Stopping => _stopping.Token;

    public int ConnectionCount => _connections.Count;

    /// <summary>The last certificate context built for this workload; rebuilt only when the identity hands out a new cert.</summary>
    public CertificateContextCache? Certificate
    {
        get => Volatile.Read(ref _certificate);
        set => Volatile.Write(ref _certificate, value);
    }

    public void Track(ConnectionContext connection)
    {
        _connections.TryAdd(connection, 0);
        connection.ConnectionClosed.Register(static s =>
        {
            var (self, c) = ((WorkloadListener, ConnectionContext))s!;
            self._connections.TryRemove(c, out _);
        }, (this, connection));
    }

    public void Stop(bool abortConnections)
    {
        _stopping.Cancel();
        Socket.Dispose();
        if (!abortConnections)
            return;
        foreach (var connection in _connections.Keys)
            connection.Abort(new ConnectionAbortedException("HBONE listener removed"));
    }
}

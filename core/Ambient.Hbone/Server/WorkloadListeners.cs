using System.Collections.Concurrent;
using System.Net;
using System.Net.Sockets;
using Microsoft.Extensions.Logging;

namespace Ambient.Hbone.Server;

/// <summary>
/// The HBONE listening sockets, one per workload on addr:15008, added and removed at runtime: a pod coming or going
/// never touches other pods' tunnels. Each accepted socket is handed over with the listener it came in on, which is
/// how the TLS handshake picks the workload's certificate without SNI.
/// </summary>
internal sealed class WorkloadListeners : IAsyncDisposable
{
    private readonly ConcurrentDictionary<IPAddress, WorkloadListener> _listeners = new();
    private readonly Action<WorkloadListener, Socket> _onAccepted;
    private readonly ILogger _logger;
    private readonly object _gate = new();
    private bool _closed;

    public WorkloadListeners(ILogger logger, Action<WorkloadListener, Socket> onAccepted)
    {
        _logger = logger;
        _onAccepted = onAccepted;
    }

    public ICollection<WorkloadListener> Current => _listeners.Values;

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
        listener.AcceptLoop = AcceptLoopAsync(listener);
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
        try
        {
            await AcceptUntilStoppedAsync(listener).ConfigureAwait(false);
        }
        finally
        {
            // Closed here, once no accept is in flight, rather than by Stop: the socket may be shared with the proxy
            // that replaces this one (an upgrade), and the runtime disconnects a socket closed while in use, which
            // would end the listening itself, for both.
            listener.Socket.Dispose();
        }
    }

    private async Task AcceptUntilStoppedAsync(WorkloadListener listener)
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
            _onAccepted(listener, socket);
        }
    }

    /// <summary>Stops accepting everywhere. Returns the listeners it stopped: their open connections are the caller's
    /// to drain (or are cut when asked).</summary>
    public List<WorkloadListener> CloseAll(bool abortConnections)
    {
        lock (_gate)
        {
            _closed = true;
        }
        var stopped = new List<WorkloadListener>();
        foreach (var address in _listeners.Keys)
        {
            if (_listeners.TryRemove(address, out var listener))
            {
                listener.Stop(abortConnections);
                stopped.Add(listener);
            }
        }
        return stopped;
    }

    public ValueTask DisposeAsync()
    {
        CloseAll(abortConnections: true);
        return ValueTask.CompletedTask;
    }
}

/// <summary>One workload's listening socket plus the connections accepted on it (so removing a pod can end them).</summary>
internal sealed class WorkloadListener
{
    private readonly CancellationTokenSource _stopping = new();
    private readonly ConcurrentDictionary<InboundConnection, byte> _connections = new();
    private CertificateContextCache? _certificate;
    private bool _aborted;

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

    /// <summary>The loop accepting on <see cref="Socket"/>; it closes the socket as it ends.</summary>
    public Task AcceptLoop { get; set; } = Task.CompletedTask;

    /// <summary>The last certificate context built for this workload; rebuilt only when the identity hands out a new cert.</summary>
    public CertificateContextCache? Certificate
    {
        get => Volatile.Read(ref _certificate);
        set => Volatile.Write(ref _certificate, value);
    }

    /// <summary>
    /// Tracks <paramref name="connection"/> until it ends; false if the listener was stopped with its connections cut
    /// (the caller then aborts it). A connection the last accept returned after a graceful stop is served and drained.
    /// </summary>
    public bool Track(InboundConnection connection)
    {
        _connections.TryAdd(connection, 0);
        if (!Volatile.Read(ref _aborted))
            return true;
        _connections.TryRemove(connection, out _);
        return false;
    }

    public void Untrack(InboundConnection connection) => _connections.TryRemove(connection, out _);

    public ICollection<InboundConnection> Connections => _connections.Keys;

    /// <summary>Stops accepting (the accept loop closes the socket as it ends); cuts the open connections when asked.</summary>
    public void Stop(bool abortConnections)
    {
        if (abortConnections)
            Volatile.Write(ref _aborted, true);
        _stopping.Cancel();
        // The loop ends promptly once cancelled; waiting for it keeps "removed" meaning "the port is closed" (a pod
        // enrolled again at once binds it anew).
        try
        {
            AcceptLoop.Wait(TimeSpan.FromSeconds(2));
        }
        catch (AggregateException)
        {
        }
        if (!abortConnections)
            return;
        foreach (var connection in _connections.Keys)
            connection.Abort("HBONE listener removed");
    }
}

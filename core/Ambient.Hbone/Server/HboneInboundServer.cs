using System.Net;
using System.Net.Sockets;
using Microsoft.Extensions.Logging;

namespace Ambient.Hbone.Server;

/// <summary>
/// An inbound HBONE server (port 15008): mutual TLS 1.3 + HTTP/2 CONNECT tunnels to local workloads. The proxy that
/// hosts it (the ztunnel today, a waypoint next) supplies the policy through the seams: certificates and peer
/// verification (<see cref="IInboundIdentity"/>), which targets are served and allowed (<see cref="IInboundTargets"/>),
/// and metrics (<see cref="IInboundObserver"/>).
///
/// Each workload gets its own listening socket (<see cref="WorkloadListeners"/>), added and removed at runtime; every
/// accepted connection is an <see cref="InboundConnection"/>: SslStream, then our own HTTP/2 server (the same framing
/// as the HBONE client), whose streams go to the <see cref="ConnectHandler"/>.
/// </summary>
internal sealed class HboneInboundServer : IAsyncDisposable
{
    private readonly HboneInboundOptions _options;
    private readonly WorkloadListeners _listeners;
    private readonly InboundTls _tls;
    private readonly ConnectHandler _handler;
    private readonly HboneClientOptions _http2Options;
    private readonly ILogger _logger;
    private readonly IInboundConnectionCounter? _connections;
    private int _disposed;

    /// <param name="connections">Told about every connection (e.g. so memory goes back to the OS after a burst of them).</param>
    public HboneInboundServer(HboneInboundOptions options, IInboundIdentity identity, IInboundTargets targets,
        IInboundObserver? observer, ILoggerFactory loggerFactory, IInboundConnectionCounter? connections = null)
    {
        ArgumentNullException.ThrowIfNull(options);
        ArgumentNullException.ThrowIfNull(identity);
        ArgumentNullException.ThrowIfNull(targets);
        ArgumentNullException.ThrowIfNull(loggerFactory);
        if (options.Port is < 0 or > 65535)
            throw new ArgumentOutOfRangeException(nameof(options), options.Port, "HBONE port must be 0-65535");
        if (options.ConnectTimeout <= TimeSpan.Zero)
            throw new ArgumentOutOfRangeException(nameof(options), options.ConnectTimeout, "connect timeout must be positive");
        if (options.MaxPrematureResets < 1)
            throw new ArgumentOutOfRangeException(nameof(options), options.MaxPrematureResets, "MaxPrematureResets must be at least 1");

        _options = options;
        observer ??= NullInboundObserver.Instance;
        _logger = loggerFactory.CreateLogger<HboneInboundServer>();
        _tls = new InboundTls(identity, observer, _logger);
        _handler = new ConnectHandler(options, targets, observer, _logger);
        _http2Options = options.Http2;
        _connections = connections;
        _listeners = new WorkloadListeners(_logger, OnAccepted);
    }

    /// <summary>The workload listeners currently accepting, by workload address.</summary>
    public IReadOnlyDictionary<IPAddress, IPEndPoint> Listeners
    {
        get
        {
            var result = new Dictionary<IPAddress, IPEndPoint>();
            foreach (var listener in _listeners.Current)
                result[listener.Address] = listener.EndPoint;
            return result;
        }
    }

    /// <summary>Binds workload:<see cref="HboneInboundOptions.Port"/> and serves that workload. Returns the bound endpoint.</summary>
    public IPEndPoint AddListener(IPAddress workload)
    {
        ArgumentNullException.ThrowIfNull(workload);
        var socket = new Socket(workload.AddressFamily, SocketType.Stream, ProtocolType.Tcp);
        try
        {
            if (workload.AddressFamily == AddressFamily.InterNetworkV6)
                socket.DualMode = false;
            socket.Bind(new IPEndPoint(workload, _options.Port));
            socket.Listen(_options.Backlog);
        }
        catch (SocketException ex)
        {
            socket.Dispose();
            throw new InvalidOperationException(
                $"cannot listen for HBONE on {workload}:{_options.Port}: {ex.SocketErrorCode} ({ex.Message})", ex);
        }
        return AddListener(workload, socket);
    }

    /// <summary>
    /// Serves <paramref name="workload"/> on a socket the caller already bound and put in listening state (e.g. one
    /// created inside the pod's network namespace). The server owns the socket from now on.
    /// </summary>
    public IPEndPoint AddListener(IPAddress workload, Socket listeningSocket)
    {
        ArgumentNullException.ThrowIfNull(workload);
        ArgumentNullException.ThrowIfNull(listeningSocket);
        if (Volatile.Read(ref _disposed) != 0)
            throw new ObjectDisposedException(nameof(HboneInboundServer));
        try
        {
            var listener = _listeners.Add(workload, listeningSocket);
            InboundLog.ListenerAdded(_logger, workload, listener.EndPoint);
            return listener.EndPoint;
        }
        catch
        {
            listeningSocket.Dispose();
            throw;
        }
    }

    /// <summary>
    /// Stops serving <paramref name="workload"/>: its socket closes and its open tunnels are cut (the pod is gone).
    /// Other workloads' listeners and tunnels are untouched. False if there was no such listener.
    /// </summary>
    public bool RemoveListener(IPAddress workload)
    {
        bool removed = _listeners.Remove(workload, abortConnections: true);
        if (removed)
            InboundLog.ListenerRemoved(_logger, workload);
        return removed;
    }

    private void OnAccepted(WorkloadListener listener, Socket socket)
    {
        var connection = new InboundConnection(_tls.CreateState(listener, socket), socket, _tls, _handler, _http2Options,
            _options.HandshakeTimeout, _logger);
        if (!listener.Track(connection))
        {
            socket.Dispose();
            return;
        }
        _connections?.Opened();
        // Off the accept loop: the handshake's first steps (certificate context, key exchange) would otherwise run
        // on it and hold up the next accept.
        ThreadPool.UnsafeQueueUserWorkItem(static s => _ = ServeAsync(s.Listener, s.Connection, s.Counter),
            (Listener: listener, Connection: connection, Counter: _connections), preferLocal: false);
    }

    private static async Task ServeAsync(WorkloadListener listener, InboundConnection connection, IInboundConnectionCounter? counter)
    {
        try
        {
            await connection.RunAsync().ConfigureAwait(false);
        }
        finally
        {
            listener.Untrack(connection);
            counter?.Closed();
        }
    }

    public async ValueTask DisposeAsync()
    {
        if (Interlocked.Exchange(ref _disposed, 1) != 0)
            return;

        // Graceful first: no new connections (stopped before the snapshot, so none slips past it), GOAWAY on the open
        // ones, whose tunnels get the drain timeout to finish; whatever is left after that is cut.
        var stopped = _listeners.CloseAll(abortConnections: false);
        var drains = new List<Task>();
        foreach (var listener in stopped)
        {
            foreach (var connection in listener.Connections)
                drains.Add(connection.DrainAsync(_options.DrainTimeout));
        }
        if (drains.Count > 0)
            InboundLog.Draining(_logger, drains.Count, _options.DrainTimeout.TotalSeconds);
        await Task.WhenAll(drains).ConfigureAwait(false);
        foreach (var listener in stopped)
        {
            foreach (var connection in listener.Connections)
                connection.Abort("the HBONE server stopped");
        }

        await _listeners.DisposeAsync().ConfigureAwait(false);
    }
}

using System.Net;
using System.Net.Sockets;
using Ambient.Core.Hbone;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Connections;
using Microsoft.AspNetCore.Connections.Features;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Server.Kestrel.Core;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;

namespace Ambient.Ztunnel.Proxy.Inbound;

/// <summary>
/// The ztunnel's inbound HBONE server (port 15008): mutual TLS 1.3 + HTTP/2 CONNECT tunnels to local workloads.
///
/// Each workload gets its own listening socket (<see cref="WorkloadListeners"/>), added and removed at runtime; every
/// accepted connection is an <see cref="InboundConnection"/>: SslStream, then our own HTTP/2 server (the same framing
/// as the HBONE client), whose streams go to the <see cref="ConnectHandler"/>.
///
/// The node's plain admin ports (<see cref="PlainEndpoint"/>) are served by one small Kestrel, built on a bare generic
/// host with <c>UseKestrelCore</c> (no MVC, no routing, no config/env sources, no console lifetime) and only when
/// there are such endpoints.
/// </summary>
internal sealed class HboneInboundServer : IAsyncDisposable
{
    private readonly HboneInboundOptions _options;
    private readonly WorkloadListeners _listeners;
    private readonly InboundTls _tls;
    private readonly ConnectHandler _handler;
    private readonly HboneClientOptions _http2Options;
    private readonly IHost? _host;
    private readonly ILogger _logger;
    private readonly List<(PlainEndpoint Endpoint, ListenOptions Listen)> _plain = [];
    private int _state; // 0 new, 1 started, 2 disposed

    public HboneInboundServer(HboneInboundOptions options, IInboundIdentity identity, IInboundTargets targets,
        IInboundObserver? observer, ILoggerFactory loggerFactory, IReadOnlyList<PlainEndpoint>? plainEndpoints = null)
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
        _listeners = new WorkloadListeners(_logger, OnAccepted);

        if (plainEndpoints is { Count: > 0 })
        {
            _host = new HostBuilder()
                .ConfigureServices(services =>
                {
                    services.AddSingleton(loggerFactory);
                    // The node proxy owns signals and shutdown; the default console lifetime would grab SIGTERM.
                    services.AddSingleton<IHostLifetime, EmbeddedHostLifetime>();
                })
                .ConfigureWebHost(web =>
                {
                    web.UseSetting(WebHostDefaults.PreventHostingStartupKey, "true");
                    web.UseKestrelCore();
                    web.ConfigureKestrel(kestrel => ConfigureKestrel(kestrel, plainEndpoints));
                    web.Configure(app => app.Run(context => HandlerFor(context)?.Invoke(context) ?? NotFound(context)));
                }, web => web.SuppressEnvironmentConfiguration = true)
                .Build();
        }
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

    /// <summary>The plain endpoints by name, with the ports Kestrel actually bound (known once started).</summary>
    public IReadOnlyDictionary<string, IPEndPoint> PlainEndpoints
    {
        get
        {
            var result = new Dictionary<string, IPEndPoint>(_plain.Count);
            foreach (var (endpoint, listen) in _plain)
                result[endpoint.Name] = listen.IPEndPoint ?? endpoint.EndPoint;
            return result;
        }
    }

    /// <summary>Starts the plain endpoints. One that cannot bind fails the start with an error naming it.</summary>
    public async Task StartAsync(CancellationToken cancellationToken = default)
    {
        if (Interlocked.CompareExchange(ref _state, 1, 0) != 0)
            throw new InvalidOperationException("the HBONE inbound server was already started or disposed");
        if (_host is null)
            return;
        try
        {
            await _host.StartAsync(cancellationToken).ConfigureAwait(false);
        }
        catch (IOException e) when (_plain.Count > 0)
        {
            var names = new List<string>(_plain.Count);
            foreach (var (endpoint, _) in _plain)
                names.Add($"{endpoint.Name} {endpoint.EndPoint}");
            throw new IOException($"cannot listen on {string.Join(", ", names)}: {e.Message}", e);
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
        if (Volatile.Read(ref _state) == 2)
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
        // Off the accept loop: the handshake's first steps (certificate context, key exchange) would otherwise run
        // on it and hold up the next accept.
        ThreadPool.UnsafeQueueUserWorkItem(static s => _ = ServeAsync(s.Listener, s.Connection), (Listener: listener, Connection: connection), preferLocal: false);
    }

    private static async Task ServeAsync(WorkloadListener listener, InboundConnection connection)
    {
        try
        {
            await connection.RunAsync().ConfigureAwait(false);
        }
        finally
        {
            listener.Untrack(connection);
        }
    }

    public async ValueTask DisposeAsync()
    {
        int previous = Interlocked.Exchange(ref _state, 2);
        if (previous == 2)
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
        await Task.WhenAll(drains).ConfigureAwait(false);
        foreach (var listener in stopped)
        {
            foreach (var connection in listener.Connections)
                connection.Abort("the HBONE server stopped");
        }

        if (_host is not null)
        {
            if (previous == 1)
            {
                using var drain = new CancellationTokenSource(_options.DrainTimeout);
                try
                {
                    await _host.StopAsync(drain.Token).ConfigureAwait(false);
                }
                catch (OperationCanceledException)
                {
                }
            }
            _host.Dispose();
        }
        await _listeners.DisposeAsync().ConfigureAwait(false);
    }

    private void ConfigureKestrel(KestrelServerOptions kestrel, IReadOnlyList<PlainEndpoint> plainEndpoints)
    {
        kestrel.AddServerHeader = false;
        // Kestrel reads ListenOptions once per start; a restarted host (none today) would add them again.
        _plain.Clear();
        foreach (var endpoint in plainEndpoints)
        {
            kestrel.Listen(endpoint.EndPoint, listen =>
            {
                listen.Protocols = HttpProtocols.Http1;
                RequestDelegate handler = endpoint.Handler;
                listen.Use(next => connection =>
                {
                    connection.Items[PlainHandlerKey] = handler;
                    return next(connection);
                });
                _plain.Add((endpoint, listen));
            });
        }
    }

    private static Task NotFound(HttpContext context)
    {
        context.Response.StatusCode = StatusCodes.Status404NotFound;
        return Task.CompletedTask;
    }

    private const string PlainHandlerKey = "ambient.plain-endpoint.handler";

    private static RequestDelegate? HandlerFor(HttpContext context) =>
        context.Features.Get<IConnectionItemsFeature>()?.Items.TryGetValue(PlainHandlerKey, out var handler) == true
            ? handler as RequestDelegate
            : null;

    /// <summary>A host lifetime that does nothing: start/stop are driven by the owner, not by console signals.</summary>
    internal sealed class EmbeddedHostLifetime : IHostLifetime
    {
        public Task WaitForStartAsync(CancellationToken cancellationToken) => Task.CompletedTask;

        public Task StopAsync(CancellationToken cancellationToken) => Task.CompletedTask;
    }
}

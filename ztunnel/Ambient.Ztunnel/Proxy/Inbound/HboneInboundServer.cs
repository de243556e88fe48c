using System.Net;
using System.Net.Sockets;
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
/// Hosting choice: ONE Kestrel, built on a bare generic host with <c>UseKestrelCore</c> (no MVC, no routing, no
/// config/env sources, no console lifetime; the only middleware is the CONNECT handler). Kestrel binds its endpoint
/// once, so per-workload listeners come from a small custom transport (<see cref="WorkloadListeners"/>) whose
/// sockets are added and removed at runtime. Compared with one Kestrel per workload this shares one heartbeat
/// thread, memory pool and DI container across all pods; compared with restarting a shared Kestrel it never
/// touches existing tunnels when a pod comes or goes. The host is needed at all because Kestrel's HTTPS middleware
/// resolves its (internal) metrics service from DI.
///
/// The node's plain admin ports (<see cref="PlainEndpoint"/>) are served by this same Kestrel on its socket
/// transport: a second web host for three small HTTP/1.1 ports cost the node proxy about 12 MB of RSS (its DI
/// container, routing, minimal-API expression compilation and a second Kestrel with its own heartbeat and pools).
/// </summary>
internal sealed class HboneInboundServer : IAsyncDisposable
{
    private readonly HboneInboundOptions _options;
    private readonly WorkloadListeners _listeners;
    private readonly IHost _host;
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
        var tls = new InboundTls(identity, observer, _logger);
        var handler = new ConnectHandler(options, targets, observer, _logger);
        _listeners = new WorkloadListeners(loggerFactory, tls.CreateState);

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
                web.ConfigureServices(services => services.AddSingleton<IConnectionListenerFactory>(_listeners));
                web.ConfigureKestrel(kestrel => ConfigureKestrel(kestrel, tls, plainEndpoints ?? []));
                web.Configure(app => app.Run(context => HandlerFor(context)?.Invoke(context) ?? handler.HandleAsync(context)));
            }, web => web.SuppressEnvironmentConfiguration = true)
            .Build();
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

    /// <summary>Starts Kestrel. A plain endpoint that cannot bind fails the start with an error naming it.</summary>
    public async Task StartAsync(CancellationToken cancellationToken = default)
    {
        if (Interlocked.CompareExchange(ref _state, 1, 0) != 0)
            throw new InvalidOperationException("the HBONE inbound server was already started or disposed");
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

    public async ValueTask DisposeAsync()
    {
        int previous = Interlocked.Exchange(ref _state, 2);
        if (previous == 2)
            return;
        if (previous == 1)
        {
            // Graceful first (GOAWAY, tunnels may finish), then Kestrel aborts what is left when the token fires.
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
        await _listeners.DisposeAsync().ConfigureAwait(false);
    }

    // Limits per the HBONE wire facts: without MinRequestBodyDataRate = null an idle tunnel resets the whole
    // connection after ~5 s; without MaxRequestBodySize = null a tunnel dies at 30 MB.
    private void ConfigureKestrel(KestrelServerOptions kestrel, InboundTls tls, IReadOnlyList<PlainEndpoint> plainEndpoints)
    {
        kestrel.AddServerHeader = false;
        var limits = kestrel.Limits;
        limits.MinRequestBodyDataRate = null;
        limits.MinResponseDataRate = null;
        limits.MaxRequestBodySize = null;
        limits.MaxRequestHeadersTotalSize = 16 * 1024;
        limits.Http2.InitialStreamWindowSize = 4 * 1024 * 1024;
        limits.Http2.InitialConnectionWindowSize = 16 * 1024 * 1024;
        limits.Http2.MaxFrameSize = 1024 * 1024;
        limits.Http2.MaxRequestHeaderFieldSize = 16 * 1024;
        limits.Http2.MaxStreamsPerConnection = 200;
        limits.Http2.KeepAlivePingDelay = TimeSpan.FromSeconds(10);
        limits.Http2.KeepAlivePingTimeout = TimeSpan.FromSeconds(20);

        kestrel.Listen(_listeners.EndPoint, listen =>
        {
            listen.Protocols = HttpProtocols.Http2;
            // Order matters: DetectFailures wraps the TLS middleware, MarkHandshakeCompleted runs inside it.
            listen.Use(tls.DetectFailures);
            listen.UseHttps(tls.CallbackOptions(_options.HandshakeTimeout));
            listen.Use(InboundTls.MarkHandshakeCompleted);
        });

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

    private const string PlainHandlerKey = "ambient.plain-endpoint.handler";

    // HBONE connections carry no handler item: their requests go to the CONNECT handler.
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

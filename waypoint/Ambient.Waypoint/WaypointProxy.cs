using Ambient.Core.Model;
using System.Net;
using System.Text;
using Ambient.Core.Telemetry;
using Ambient.Dataplane.Control;
using Ambient.Dataplane.Identity;
using Ambient.Dataplane.State;
using Ambient.Hbone;
using Ambient.Hbone.Server;
using Ambient.Waypoint.Authz;
using Ambient.Waypoint.Forwarding;
using Ambient.Waypoint.Inbound;
using Ambient.Waypoint.Routing;
using Ambient.Waypoint.State;
using Ambient.Waypoint.Telemetry;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Connections;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Server.Kestrel.Core;
using Microsoft.Extensions.DependencyInjection;
using Yarp.ReverseProxy.Forwarder;

namespace Ambient.Waypoint;

/// <summary>Test and composition seams of a <see cref="WaypointProxy"/>; the product uses the defaults.</summary>
internal sealed record WaypointProxySettings
{
    /// <summary>HBONE client settings for the upstream pool.</summary>
    public HboneClientOptions? Hbone { get; init; }

    /// <summary>Weighted backends and mirror sampling; default: the shared random.</summary>
    public IRouteRandom? RouteRandom { get; init; }
}

/// <summary>
/// One waypoint, composed (the composition root and nothing else): the control plane (discovery + the waypoint's
/// own certificate) feeds <see cref="ProxyState"/> and <see cref="WaypointConfig"/>; the HBONE server on
/// address:15008 accepts tunnels for the Services this waypoint serves and hands HTTP ones to Kestrel through
/// <see cref="HboneTunnelTransport"/>; each request is forwarded by <see cref="RequestForwarder"/> over HBONE with
/// the waypoint's identity. Readiness and Prometheus metrics are served on the admin port. Program and the tests start it the same way.
/// </summary>
internal sealed class WaypointProxy : IAsyncDisposable
{
    private readonly ControlPlane _control;
    private readonly HboneConnectionPool _pool;
    private readonly HboneInboundServer _inbound;
    private readonly WebApplication _app;
    private readonly HttpMessageInvoker _invoker;
    private ListenOptions? _adminListen;

    private WaypointProxy(WaypointOptions options, ILoggerFactory loggers, WaypointProxySettings settings)
    {
        Options = options;
        Config = new WaypointConfig();
        _control = ControlPlane.Create(new ControlPlaneOptions
        {
            IstiodAddress = options.Istiod,
            RootCertificatePath = options.RootCertificatePath,
            TokenPath = options.TokenPath,
            ServiceAccountToken = options.ServiceAccountToken,
            NodeName = options.Node,
            InstanceIp = options.Address.ToString(),
            ClusterId = options.ClusterId,
            CertificateTtl = options.CertificateTtl,
            TrustDomain = options.TrustDomain,
            // istiod-lite knows a waypoint by its pod (local mode names it after the Gateway, as a Deployment's pod would be).
            ProxyType = "waypoint",
            ProxyName = options.PodName.Length > 0 ? options.PodName : WaypointPlacement.PodNameFor(options.Namespace, options.Name),
            ProxyNamespace = options.Namespace,
            Identities = [options.Identity],
            OptionalXdsTypes = Config.XdsTypes,
        }, loggers);
        _pool = new HboneConnectionPool(new MeshTls(_control.Certificates), settings.Hbone, loggers);
        var picker = new EndpointPicker(State, options.Address);
        var upstream = new UpstreamConnector(_pool, options.Identity.ToString());
        var transport = new HboneTunnelTransport();
        var inbound = new WaypointInbound(State, _control.Certificates, new ServedServices(Config, options.Address), options.Identity,
            options.Address);
        var tunnels = new WaypointTunnels(State, Config, transport, picker, upstream, loggers.CreateLogger("Ambient.Waypoint.Inbound"));
        _inbound = new HboneInboundServer(new HboneInboundOptions { Port = options.HbonePort, TunnelHandler = tunnels },
            inbound, inbound, observer: null, loggers);
        _invoker = HboneHttpInvoker.Create(upstream, TimeSpan.FromSeconds(10));
        _app = BuildKestrel(options, loggers, transport);
        // The waypoint's own Gateway is the parent of routes bound to it rather than to a Service.
        var routes = new LiveRouteTable(Config, new GatewayTarget(options.Namespace, options.Name), settings.RouteRandom);
        RequestMetrics = new WaypointRequestMetrics(State);
        // The policies that target the waypoint's own Gateway apply to every request, a Service's to its requests.
        Authorization = new WaypointAuthorization(Config, options.Namespace, options.Name, loggers.CreateLogger("Ambient.Waypoint.Authz"));
        var forwarder = new RequestForwarder(_app.Services.GetRequiredService<IHttpForwarder>(), _invoker, picker, Config, routes,
            Authorization, loggers.CreateLogger("Ambient.Waypoint.Access"));
        _app.Run(context => context.Features.Get<IHboneTunnelFeature>() is null
            ? ServeAdminAsync(context)
            : RequestMetrics.MeasureAsync(context, forwarder.HandleAsync));
    }

    public WaypointOptions Options { get; }
    public WaypointConfig Config { get; }

    /// <summary>The AuthorizationPolicies in effect (L7, per request).</summary>
    public WaypointAuthorization Authorization { get; }

    /// <summary>Istio's request metrics (reporter="waypoint"), served in Prometheus text on the admin port.</summary>
    public WaypointRequestMetrics RequestMetrics { get; }
    public ProxyState State => _control.State;
    public CertificateManager Certificates => _control.Certificates;

    /// <summary>Where HBONE listens (address:15008, or the port picked when it was 0).</summary>
    public IPEndPoint HboneEndpoint { get; private set; } = new(IPAddress.None, 0);

    /// <summary>Where <c>/healthz/ready</c> answers.</summary>
    public IPEndPoint AdminEndpoint => _adminListen?.IPEndPoint ?? new IPEndPoint(IPAddress.None, 0);

    /// <summary>Discovery has synced and the waypoint holds its certificate.</summary>
    public bool IsReady => _control.IsReady;

    public static async Task<WaypointProxy> StartAsync(WaypointOptions options, ILoggerFactory loggers, CancellationToken cancellationToken,
        WaypointProxySettings? settings = null)
    {
        var proxy = new WaypointProxy(options, loggers, settings ?? new WaypointProxySettings());
        try
        {
            await proxy._app.StartAsync(cancellationToken).ConfigureAwait(false);
            proxy._control.Start();
            proxy.HboneEndpoint = proxy._inbound.AddListener(options.Address);
            return proxy;
        }
        catch
        {
            await proxy.DisposeAsync().ConfigureAwait(false);
            throw;
        }
    }

    /// <summary>Completes once discovery has synced and the waypoint's certificate is issued.</summary>
    public Task WaitForReadyAsync(CancellationToken cancellationToken) => _control.WaitUntilReadyAsync(cancellationToken);

    private WebApplication BuildKestrel(WaypointOptions options, ILoggerFactory loggers, HboneTunnelTransport transport)
    {
        var builder = WebApplication.CreateEmptyBuilder(new WebApplicationOptions { ApplicationName = "waypoint" });
        builder.Services.AddSingleton(loggers);
        builder.Services.AddSingleton(typeof(ILogger<>), typeof(Logger<>));
        builder.Services.AddHttpForwarder();
        // Two transports side by side: sockets for the admin port, the tunnels for everything HBONE brings in.
        builder.WebHost.UseKestrelCore().UseSockets();
        builder.Services.AddSingleton<IConnectionListenerFactory>(transport);
        builder.WebHost.ConfigureKestrel(kestrel =>
        {
            kestrel.AddServerHeader = false;
            // A proxy passes bodies through; the destination decides what is too large.
            kestrel.Limits.MaxRequestBodySize = null;
            kestrel.Listen(transport.Http1.EndPoint, listen => listen.Protocols = HttpProtocols.Http1);
            kestrel.Listen(transport.Http2.EndPoint, listen => listen.Protocols = HttpProtocols.Http2);
            kestrel.Listen(options.Address, options.AdminPort, listen =>
            {
                listen.Protocols = HttpProtocols.Http1;
                _adminListen = listen;
            });
        });
        return builder.Build();
    }

    private Task ServeAdminAsync(HttpContext context)
    {
        if (context.Request.Path == "/healthz/ready")
        {
            context.Response.StatusCode = IsReady ? StatusCodes.Status200OK : StatusCodes.Status503ServiceUnavailable;
            return context.Response.WriteAsync(IsReady ? "ready\n" : "not ready: waiting for discovery and the waypoint's certificate\n");
        }
        if (context.Request.Path == "/stats/prometheus" || context.Request.Path == "/metrics")
        {
            // Where Istio's waypoints are scraped (/stats/prometheus), and the conventional path.
            var text = new StringBuilder();
            RequestMetrics.WritePrometheus(text);
            ProcessMetrics.WritePrometheus(text);
            context.Response.ContentType = "text/plain; version=0.0.4; charset=utf-8";
            return context.Response.WriteAsync(text.ToString());
        }
        context.Response.StatusCode = StatusCodes.Status404NotFound;
        return Task.CompletedTask;
    }

    private static readonly TimeSpan ShutdownGrace = TimeSpan.FromSeconds(5);

    private static async Task BoundedAsync(Task step)
    {
        try
        {
            await step.WaitAsync(ShutdownGrace * 2).ConfigureAwait(false);
        }
        catch (TimeoutException)
        {
            // Left running: the process is exiting, and a stuck connection only holds its own resources.
        }
    }

    public async ValueTask DisposeAsync()
    {
        // Tunnels first (no new connections into Kestrel), then Kestrel, then the client side and the control plane.
        await _inbound.DisposeAsync().ConfigureAwait(false);
        // Kestrel waits for its connections to finish; a tunnel connection that never completes must not hold the
        // process (or a test) forever: after the grace period the rest of the shutdown goes on without it.
        using (var grace = new CancellationTokenSource(ShutdownGrace))
        {
            await BoundedAsync(_app.StopAsync(grace.Token)).ConfigureAwait(false);
        }
        await BoundedAsync(_app.DisposeAsync().AsTask()).ConfigureAwait(false);
        _invoker.Dispose();
        await _pool.DisposeAsync().ConfigureAwait(false);
        await _control.DisposeAsync().ConfigureAwait(false);
    }
}

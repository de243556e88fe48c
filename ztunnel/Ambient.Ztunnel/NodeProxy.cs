using System.Net;
using System.Text;
using System.Text.Json;
using Ambient.Hbone;
using Ambient.Hbone.Server;
using Ambient.Core.Memory;
using Ambient.Core.Telemetry;
using Ambient.Core.Xds;
using Ambient.Ztunnel.Admin;
using Ambient.Ztunnel.DnsProxy;
using Ambient.Dataplane.Control;
using Ambient.Dataplane.Identity;
using Ambient.Ztunnel.Proxy;
using Ambient.Ztunnel.Proxy.Inbound;
using Ambient.Ztunnel.Proxy.Outbound;
using Ambient.Dataplane.State;
using Ambient.Ztunnel.Telemetry;
using Ambient.Dataplane.Xds;

namespace Ambient.Ztunnel;

/// <summary>
/// One node's proxy, composed (the composition root and nothing else): discovery feeds <see cref="ProxyState"/>; the
/// certificate manager follows the local pods; <see cref="PodListeners"/> keeps an HBONE listener (podIP:15008) and a
/// SOCKS5 front door (podIP:15080) per local enrolled pod; every front door calls one <see cref="OutboundProxy"/>,
/// whose tunnels share one HBONE pool; an optional <see cref="DnsServer"/> answers the mesh's names; the admin ports report it all (<see cref="ConfigDump"/>,
/// <see cref="NodeReadiness"/>). Program and the functional tests start it the same way.
/// </summary>
internal sealed class NodeProxy : IAdminSource, IAsyncDisposable
{
    private readonly ZtunnelOptions _options;
    private readonly ControlPlane _control;
    private readonly HboneConnectionPool _pool;
    private readonly HboneInboundServer _inbound;
    private readonly MemoryTrimmer _trimmer;
    private readonly PodListeners _listeners;
    private readonly ILoggerFactory _loggerFactory;
    private AdminServer? _admin;
    private DnsServer? _dns;

    private NodeProxy(ZtunnelOptions options, ILoggerFactory loggerFactory, HboneClientOptions? hboneOptions, HboneInboundOptions? inboundOptions)
    {
        _options = options;
        _loggerFactory = loggerFactory;
        _control = ControlPlane.Create(new ControlPlaneOptions
        {
            IstiodAddress = options.Istiod,
            RootCertificatePath = options.RootCertificatePath,
            TokenPath = options.TokenPath,
            NodeName = options.Node,
            InstanceIp = options.Address.ToString(),
            ClusterId = options.ClusterId,
            CertificateTtl = options.CertificateTtl,
            TrustDomain = options.TrustDomain,
        }, loggerFactory);
        Metrics = new ConnectionMetrics();
        _pool = new HboneConnectionPool(new MeshTls(_control.Certificates), hboneOptions, loggerFactory);
        var meshEndpoints = MeshEndpoints.For(options);
        var mesh = new MeshInbound(State, _control.Certificates, Metrics, meshEndpoints, loggerFactory.CreateLogger<MeshInbound>());
        // A burst is over once at least 256 connections have closed, down to half the peak, and none closed for 2 s.
        _trimmer = new MemoryTrimmer(loggerFactory.CreateLogger("Ambient.Ztunnel.Memory"), "inbound connections",
            minimumDrop: 256, quietPeriod: TimeSpan.FromSeconds(2));
        _inbound = new HboneInboundServer(inboundOptions ?? new HboneInboundOptions { Port = options.HbonePort },
            mesh, mesh, mesh, loggerFactory, new TrimmingConnectionCounter(_trimmer));
        var outbound = new OutboundProxy(State, _pool, Metrics, loggerFactory.CreateLogger<OutboundProxy>(), meshEndpoints: meshEndpoints);
        _listeners = new PodListeners(State, _inbound, outbound, options.HbonePort, options.SocksPort, loggerFactory);
    }

    public ProxyState State => _control.State;
    public ConnectionMetrics Metrics { get; }
    public HboneConnectionPool Pool => _pool;
    public CertificateManager Certificates => _control.Certificates;
    public DeltaXdsClient Discovery => _control.Xds;
    public AdminServer Admin => _admin!;
    public IReadOnlyDictionary<IPAddress, IPEndPoint> HboneListeners => _listeners.Hbone;

    public IReadOnlyDictionary<IPAddress, IPEndPoint> SocksListeners => _listeners.Socks;

    /// <summary>The DNS proxy on the node address; null unless <see cref="ZtunnelOptions.DnsPort"/> is set.</summary>
    public DnsServer? Dns => _dns;

    public static async Task<NodeProxy> StartAsync(ZtunnelOptions options, ILoggerFactory loggerFactory, CancellationToken cancellationToken,
        HboneClientOptions? hboneOptions = null, HboneInboundOptions? inboundOptions = null)
    {
        var proxy = new NodeProxy(options, loggerFactory, hboneOptions, inboundOptions);
        try
        {
            proxy._admin = await AdminServer.StartAsync(options.Address, options.AdminPorts, proxy, loggerFactory, cancellationToken).ConfigureAwait(false);
            proxy._listeners.Start();
            proxy.StartDns();
            proxy._control.Start();
            return proxy;
        }
        catch
        {
            await proxy.DisposeAsync().ConfigureAwait(false);
            throw;
        }
    }

    /// <summary>
    /// Loopback mode: one DNS proxy on the node address, for every pod of the node (each query's source address names
    /// its pod). In netns mode the same server is to be opened inside each pod's namespace instead
    /// (<see cref="DnsServer.Start(System.Net.Sockets.Socket, System.Net.Sockets.Socket, DnsAnswerer, DnsForwarder, ILogger, DnsServerOptions?)"/>).
    /// </summary>
    private void StartDns()
    {
        if (_options.DnsPort is not { } port)
        {
            return;
        }
        var upstreams = _options.DnsUpstreams.IsEmpty ? DnsForwarder.ReadResolvConf() : _options.DnsUpstreams;
        _dns = DnsServer.Start(new IPEndPoint(_options.Address, port), new DnsAnswerer(State), new DnsForwarder(upstreams),
            _loggerFactory.CreateLogger<DnsServer>());
    }

    /// <summary>Completes once discovery has synced and every local identity has a certificate.</summary>
    public Task WaitForReadyAsync(CancellationToken cancellationToken) => _control.WaitUntilReadyAsync(cancellationToken);

    public bool IsReady(out string reason) => NodeReadiness.IsReady(_control.Xds, _control.Certificates, out reason);

    public void WriteMetrics(StringBuilder prometheusText)
    {
        Metrics.WritePrometheus(prometheusText);
        ProcessMetrics.WritePrometheus(prometheusText);
    }

    public void WriteConfigDump(Utf8JsonWriter json) =>
        ConfigDump.Write(json, _options.Node, State.Snapshot, State.Authorizer, _control.Certificates, _pool, _listeners.Hbone, _listeners.Socks);

    public async ValueTask DisposeAsync()
    {
        if (_dns is not null)
        {
            await _dns.DisposeAsync().ConfigureAwait(false);
        }
        await _listeners.DisposeAsync().ConfigureAwait(false);
        await _inbound.DisposeAsync().ConfigureAwait(false);
        _trimmer.Dispose();
        await _pool.DisposeAsync().ConfigureAwait(false);
        await _control.DisposeAsync().ConfigureAwait(false);
        if (_admin is not null)
        {
            await _admin.DisposeAsync().ConfigureAwait(false);
        }
    }
}

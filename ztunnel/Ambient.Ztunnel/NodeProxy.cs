using System.Net;
using System.Net.Sockets;
using System.Text;
using System.Text.Json;
using Ambient.Hbone;
using Ambient.Hbone.Server;
using Ambient.Core.Memory;
using Ambient.Core.Telemetry;
using Ambient.Core.Xds;
using Ambient.Ztunnel.Admin;
using Ambient.Ztunnel.DnsProxy;
using Ambient.Ztunnel.InPod;
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
/// <see cref="NodeReadiness"/>). In in-pod mode (<see cref="ZtunnelOptions.ZdsSocket"/>) the per-pod listeners live
/// inside each pod's network namespace instead (<see cref="InPodRegistry"/>, fed by the node agent through
/// <see cref="ZdsClient"/>) and <see cref="PodListeners"/> is not started. Program and the functional tests start it the same way.
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
    private readonly MeshEndpoints _meshEndpoints;
    private readonly HboneClientOptions _hboneOptions;
    private AdminServer? _admin;
    private DnsServer? _dns;
    private NetnsSockets? _netnsSockets;
    private InPodRegistry? _inPod;
    private ZdsClient? _zds;
    private Task _zdsStart = Task.CompletedTask;
    private readonly CancellationTokenSource _stopping = new();

    private NodeProxy(ZtunnelOptions options, ILoggerFactory loggerFactory, HboneClientOptions? hboneOptions, HboneInboundOptions? inboundOptions)
    {
        _options = options;
        _loggerFactory = loggerFactory;
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
        }, loggerFactory);
        Metrics = new ConnectionMetrics();
        _hboneOptions = hboneOptions ?? new HboneClientOptions();
        _pool = new HboneConnectionPool(new MeshTls(_control.Certificates), _hboneOptions, loggerFactory);
        var meshEndpoints = _meshEndpoints = MeshEndpoints.For(options);
        var mesh = new MeshInbound(State, _control.Certificates, Metrics, meshEndpoints, loggerFactory.CreateLogger<MeshInbound>());
        // A burst is over once at least 256 connections have closed, down to half the peak, and none closed for 2 s.
        _trimmer = new MemoryTrimmer(loggerFactory.CreateLogger("Ambient.Ztunnel.Memory"), "inbound connections",
            minimumDrop: 256, quietPeriod: TimeSpan.FromSeconds(2));
        inboundOptions ??= new HboneInboundOptions { Port = options.HbonePort, DrainTimeout = options.DrainTimeout };
        if (options.ZdsSocket is not null && inboundOptions.ConnectUpstream is null)
        {
            // In-pod mode: a tunnel's connection to the app is made inside the target pod's namespace.
            inboundOptions = inboundOptions with { ConnectUpstream = (target, ct) => _inPod!.ConnectAsync(target, ct) };
        }
        _inbound = new HboneInboundServer(inboundOptions,
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
            proxy._admin = await AdminServer.StartAsync(options.Address, options.AdminPorts, proxy, loggerFactory, cancellationToken,
                shareWithSuccessor: options.ZdsSocket is not null).ConfigureAwait(false);
            if (options.ZdsSocket is { } zds)
            {
                await proxy.StartInPodAsync(zds, cancellationToken).ConfigureAwait(false);
            }
            else
            {
                proxy._listeners.Start();
            }
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
    /// One DNS proxy on the node address, for every pod of the node that reaches it (each query's source address names
    /// its pod): all pods in loopback mode; in netns mode the pods outside the mesh, whose resolver (the cluster DNS
    /// VIP) the node DNATs here. An enrolled pod's queries never leave it: its capture rules send them to the proxy the
    /// ztunnel opens inside the pod (<see cref="InPodWorkload"/>).
    /// </summary>
    private void StartDns()
    {
        if (_options.DnsPort is not { } port)
        {
            return;
        }
        var upstreams = _options.DnsUpstreams.IsEmpty ? DnsForwarder.ReadResolvConf() : _options.DnsUpstreams;
        var endpoint = new IPEndPoint(_options.Address, port);
        if (_options.ZdsSocket is null)
        {
            _dns = DnsServer.Start(endpoint, new DnsAnswerer(State), new DnsForwarder(upstreams), _loggerFactory.CreateLogger<DnsServer>());
            return;
        }
        // In-pod mode: shared with the next ztunnel of an upgrade (SO_REUSEPORT), which starts while this one drains.
        var udp = new Socket(endpoint.AddressFamily, SocketType.Dgram, ProtocolType.Udp);
        var tcp = new Socket(endpoint.AddressFamily, SocketType.Stream, ProtocolType.Tcp);
        try
        {
            NetnsSockets.SetReusePort(udp);
            udp.Bind(endpoint);
            NetnsSockets.SetReusePort(tcp);
            tcp.Bind(endpoint);
            tcp.Listen(128);
        }
        catch
        {
            udp.Dispose();
            tcp.Dispose();
            throw;
        }
        _dns = DnsServer.Start(udp, tcp, new DnsAnswerer(State), new DnsForwarder(upstreams), _loggerFactory.CreateLogger<DnsServer>());
    }

    /// <summary>
    /// In-pod mode (Istio's): no listeners on pod addresses in the node's namespace; the node agent hands each pod's
    /// namespace over ZDS and <see cref="InPodRegistry"/> opens the pod's listeners inside it.
    /// </summary>
    private async Task StartInPodAsync(string zdsSocket, CancellationToken cancellationToken)
    {
        _netnsSockets = await NetnsSockets.StartAsync(cancellationToken).ConfigureAwait(false);
        var upstreams = _options.DnsUpstreams.IsEmpty ? DnsForwarder.ReadResolvConf() : _options.DnsUpstreams;
        var context = new InPodContext(State, Metrics, new MeshTls(_control.Certificates), _hboneOptions, _inbound, _meshEndpoints,
            new DnsAnswerer(State), new DnsForwarder(upstreams),
            new PlaintextInbound(State, Metrics, _meshEndpoints, _loggerFactory.CreateLogger<PlaintextInbound>()),
            _netnsSockets, new InPodPorts { Hbone = _options.HbonePort, Socks5 = _options.SocksPort }, _loggerFactory);
        _inPod = new InPodRegistry(context);
        _zds = new ZdsClient(zdsSocket, _inPod, _loggerFactory.CreateLogger<ZdsClient>());
        _zdsStart = StartZdsWhenReadyAsync(_zds, _stopping.Token);
    }

    /// <summary>
    /// Says hello to the node agent only once ready (config synced, a certificate for every local identity): in an
    /// upgrade the agent then hands this ztunnel the pods' listening sockets, shared with the old one, and from that
    /// moment the kernel gives it a share of the new connections, which it must be able to carry.
    /// </summary>
    private async Task StartZdsWhenReadyAsync(ZdsClient zds, CancellationToken stopping)
    {
        try
        {
            await _control.WaitUntilReadyAsync(stopping).ConfigureAwait(false);
        }
        catch (OperationCanceledException)
        {
            return;
        }
        zds.Start();
    }

    /// <summary>The pods served in their own network namespaces; null unless <see cref="ZtunnelOptions.ZdsSocket"/> is set.</summary>
    public InPodRegistry? InPod => _inPod;

    /// <summary>The ZDS client; null unless <see cref="ZtunnelOptions.ZdsSocket"/> is set.</summary>
    public ZdsClient? Zds => _zds;

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
        await _stopping.CancelAsync().ConfigureAwait(false);
        await _zdsStart.ConfigureAwait(false);
        if (_zds is not null)
        {
            await _zds.DisposeAsync().ConfigureAwait(false);
        }
        if (_inPod is not null)
        {
            // Graceful: every pod stops accepting (a ztunnel that took over accepts from the same sockets; with none, the
            // sockets close and new connections are refused), and connections already captured, like HBONE tunnels
            // (GOAWAY), get the drain timeout to end.
            await Task.WhenAll(_inPod.DrainAsync(_options.DrainTimeout), _inbound.DisposeAsync().AsTask()).ConfigureAwait(false);
            await _inPod.DisposeAsync().ConfigureAwait(false);
        }
        _netnsSockets?.Dispose();
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

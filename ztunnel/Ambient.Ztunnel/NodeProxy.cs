using System.Net;
using System.Text;
using System.Text.Json;
using Ambient.Core.Hbone;
using Ambient.Core.Memory;
using Ambient.Core.Model;
using Ambient.Core.Telemetry;
using Ambient.Core.Xds;
using Ambient.Ztunnel.Admin;
using Ambient.Ztunnel.Control;
using Ambient.Ztunnel.Identity;
using Ambient.Ztunnel.Proxy;
using Ambient.Ztunnel.Proxy.Inbound;
using Ambient.Ztunnel.Proxy.Outbound;
using Ambient.Ztunnel.Proxy.Socks5;
using Ambient.Ztunnel.State;
using Ambient.Ztunnel.Telemetry;

namespace Ambient.Ztunnel;

/// <summary>
/// One node's proxy, composed: discovery feeds <see cref="ProxyState"/>; the certificate manager follows the local
/// pods; for every local enrolled pod there is an HBONE listener (podIP:15008) and a SOCKS5 listener
/// (podIP:15080); outbound tunnels share one HBONE pool; the admin ports report it all. Program and the
/// functional tests start it the same way.
/// </summary>
internal sealed partial class NodeProxy : IAdminSource, IAsyncDisposable
{
    private readonly ZtunnelOptions _options;
    private readonly ILogger _logger;
    private readonly ILoggerFactory _loggerFactory;
    private readonly ControlPlane _control;
    private readonly HboneConnectionPool _pool;
    private readonly HboneInboundServer _inbound;
    private readonly MemoryTrimmer _trimmer;
    private readonly OutboundHandler _outbound;
    private readonly Dictionary<IPAddress, Socks5Listener> _socks = new();
    private readonly SemaphoreSlim _reconcile = new(1, 1);
    private readonly CancellationTokenSource _stopping = new();
    private AdminServer? _admin;

    private NodeProxy(ZtunnelOptions options, ILoggerFactory loggerFactory, HboneClientOptions? hboneOptions, HboneInboundOptions? inboundOptions)
    {
        _options = options;
        _loggerFactory = loggerFactory;
        _logger = loggerFactory.CreateLogger("Ambient.Ztunnel");
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
        _pool = new HboneConnectionPool(new ZtunnelTls(_control.Certificates), hboneOptions, loggerFactory);
        var mesh = new MeshInbound(State, _control.Certificates, Metrics, loggerFactory.CreateLogger<MeshInbound>());
        var meshEndpoints = MeshEndpoints.For(options);
        // A burst is over once at least 256 connections have closed, down to half the peak, and none closed for 2 s.
        _trimmer = new MemoryTrimmer(loggerFactory.CreateLogger("Ambient.Ztunnel.Memory"), "inbound connections",
            minimumDrop: 256, quietPeriod: TimeSpan.FromSeconds(2));
        _inbound = new HboneInboundServer((inboundOptions ?? new HboneInboundOptions { Port = options.HbonePort }) with { MeshEndpoints = meshEndpoints },
            mesh, mesh, mesh, loggerFactory, _trimmer);
        _outbound = new OutboundHandler(State, _pool, Metrics, loggerFactory.CreateLogger<OutboundHandler>(), meshEndpoints: meshEndpoints);
    }

    public ProxyState State => _control.State;
    public ConnectionMetrics Metrics { get; }
    public HboneConnectionPool Pool => _pool;
    public CertificateManager Certificates => _control.Certificates;
    public DeltaXdsClient Discovery => _control.Xds;
    public AdminServer Admin => _admin!;
    public IReadOnlyDictionary<IPAddress, IPEndPoint> HboneListeners => _inbound.Listeners;

    public IReadOnlyDictionary<IPAddress, IPEndPoint> SocksListeners
    {
        get
        {
            lock (_socks)
            {
                var copy = new Dictionary<IPAddress, IPEndPoint>(_socks.Count);
                foreach (var (ip, l) in _socks)
                {
                    copy[ip] = l.LocalEndPoint;
                }
                return copy;
            }
        }
    }

    public static async Task<NodeProxy> StartAsync(ZtunnelOptions options, ILoggerFactory loggerFactory, CancellationToken cancellationToken,
        HboneClientOptions? hboneOptions = null, HboneInboundOptions? inboundOptions = null)
    {
        var proxy = new NodeProxy(options, loggerFactory, hboneOptions, inboundOptions);
        try
        {
            proxy._admin = await AdminServer.StartAsync(options.Address, options.AdminPorts, proxy, loggerFactory, cancellationToken).ConfigureAwait(false);
            proxy.State.Changed += proxy.OnStateChanged;
            proxy._control.Start();
            return proxy;
        }
        catch
        {
            await proxy.DisposeAsync().ConfigureAwait(false);
            throw;
        }
    }

    /// <summary>Completes once discovery has synced and every local identity has a certificate.</summary>
    public Task WaitForReadyAsync(CancellationToken cancellationToken) => _control.WaitUntilReadyAsync(cancellationToken);

    // Reconciling never throws (it logs bind failures), so the task needs no observer.
    private void OnStateChanged(ProxyState state) => _ = ReconcileListenersAsync();

    /// <summary>Makes the per-pod listeners match the local enrolled pods of the current snapshot.</summary>
    private async Task ReconcileListenersAsync()
    {
        if (_stopping.IsCancellationRequested)
        {
            return;
        }
        await _reconcile.WaitAsync().ConfigureAwait(false);
        try
        {
            var wanted = new HashSet<IPAddress>();
            foreach (var w in State.LocalWorkloads.InMesh)
            {
                foreach (var a in w.Addresses)
                {
                    wanted.Add(a);
                }
            }
            foreach (var ip in wanted)
            {
                if (!_inbound.Listeners.ContainsKey(ip))
                {
                    try
                    {
                        var ep = _inbound.AddListener(ip);
                        Log.ListenerAdded(_logger, "HBONE", ep.ToString());
                    }
                    catch (Exception e) when (e is IOException or System.Net.Sockets.SocketException)
                    {
                        Log.ListenerFailed(_logger, "HBONE", $"{ip}:{_options.HbonePort}", e.Message);
                    }
                }
                bool haveSocks;
                lock (_socks)
                {
                    haveSocks = _socks.ContainsKey(ip);
                }
                if (!haveSocks)
                {
                    try
                    {
                        var listener = Socks5Listener.Start(new IPEndPoint(ip, _options.SocksPort), _outbound, _loggerFactory.CreateLogger<Socks5Listener>());
                        lock (_socks)
                        {
                            _socks[ip] = listener;
                        }
                        Log.ListenerAdded(_logger, "SOCKS5", listener.LocalEndPoint.ToString());
                    }
                    catch (Exception e) when (e is IOException or System.Net.Sockets.SocketException)
                    {
                        Log.ListenerFailed(_logger, "SOCKS5", $"{ip}:{_options.SocksPort}", e.Message);
                    }
                }
            }
            foreach (var ip in _inbound.Listeners.Keys.ToArray())
            {
                if (!wanted.Contains(ip))
                {
                    _inbound.RemoveListener(ip);
                    Log.ListenerRemoved(_logger, "HBONE", ip.ToString());
                }
            }
            List<Socks5Listener> gone = [];
            lock (_socks)
            {
                foreach (var ip in _socks.Keys.ToArray())
                {
                    if (!wanted.Contains(ip))
                    {
                        gone.Add(_socks[ip]);
                        _socks.Remove(ip);
                    }
                }
            }
            foreach (var l in gone)
            {
                Log.ListenerRemoved(_logger, "SOCKS5", l.LocalEndPoint.ToString());
                await l.DisposeAsync().ConfigureAwait(false);
            }
        }
        finally
        {
            _reconcile.Release();
        }
    }

    public bool IsReady(out string reason)
    {
        if (!_control.Xds.WaitForSyncAsync(CancellationToken.None).IsCompletedSuccessfully)
        {
            reason = "workload discovery has not synced";
            return false;
        }
        if (!_control.Certificates.AllReady)
        {
            reason = "certificates for local workloads are not all issued";
            return false;
        }
        reason = "";
        return true;
    }

    public void WriteMetrics(StringBuilder prometheusText)
    {
        Metrics.WritePrometheus(prometheusText);
        ProcessMetrics.WritePrometheus(prometheusText);
    }

    public void WriteConfigDump(Utf8JsonWriter json)
    {
        var snapshot = State.Snapshot;
        json.WriteStartObject();
        json.WriteString("node", _options.Node);
        MeshSnapshotJson.WriteWorkloads(json, snapshot);
        MeshSnapshotJson.WriteServices(json, snapshot);
        var trustRoots = _control.Certificates.Trust.RootPems();
        json.WriteStartArray("certificates");
        foreach (var c in _control.Certificates.Snapshot())
        {
            json.WriteStartObject();
            json.WriteString("identity", c.Identity);
            json.WriteString("state", c.State.ToString());
            json.WriteString("serial", c.SerialNumber);
            if (c.NotBefore is { } nb) { json.WriteString("notBefore", nb); }
            if (c.NotAfter is { } na) { json.WriteString("expiry", na); }
            if (c.NextAttempt is { } next) { json.WriteString("nextRefresh", next); }
            json.WriteNumber("failures", c.Failures);
            if (c.LastError is { } err) { json.WriteString("lastError", err); }
            // Istio's shape: the chain served (leaf first) and the roots peers are checked against.
            json.WriteStartArray("certChain");
            if (_control.Certificates.TryGetWorkloadCertificate(c.Identity, out var held))
            {
                json.WriteStringValue(held.CertificateWithKey.ExportCertificatePem());
                foreach (var cert in held.Chain)
                {
                    json.WriteStringValue(cert.ExportCertificatePem());
                }
            }
            json.WriteEndArray();
            json.WriteStartArray("rootCerts");
            foreach (var root in trustRoots)
            {
                json.WriteStringValue(root);
            }
            json.WriteEndArray();
            json.WriteEndObject();
        }
        json.WriteEndArray();
        json.WriteStartArray("trustBundle");
        foreach (var root in trustRoots)
        {
            json.WriteStringValue(root);
        }
        json.WriteEndArray();
        json.WriteStartArray("pooledConnections");
        foreach (var entry in _pool.Snapshot())
        {
            json.WriteStartObject();
            json.WriteString("source", entry.Key.SourceIdentity);
            json.WriteString("destination", entry.Key.DestinationIdentity);
            json.WriteString("address", entry.Key.Destination.ToString());
            json.WriteStartArray("connections");
            foreach (var c in entry.Connections)
            {
                json.WriteStartObject();
                json.WriteString("peer", c.Peer);
                json.WriteNumber("activeStreams", c.ActiveStreams);
                json.WriteNumber("maxConcurrentStreams", c.MaxConcurrentStreams);
                json.WriteNumber("ageSeconds", Math.Round(c.Age.TotalSeconds, 1));
                json.WriteBoolean("goingAway", c.IsGoingAway);
                json.WriteEndObject();
            }
            json.WriteEndArray();
            json.WriteEndObject();
        }
        json.WriteEndArray();
        json.WriteStartObject("listeners");
        json.WriteStartArray("hbone");
        foreach (var ep in _inbound.Listeners.Values)
        {
            json.WriteStringValue(ep.ToString());
        }
        json.WriteEndArray();
        json.WriteStartArray("socks5");
        foreach (var ep in SocksListeners.Values)
        {
            json.WriteStringValue(ep.ToString());
        }
        json.WriteEndArray();
        json.WriteEndObject();
        json.WriteEndObject();
    }

    public async ValueTask DisposeAsync()
    {
        await _stopping.CancelAsync().ConfigureAwait(false);
        await _reconcile.WaitAsync().ConfigureAwait(false);
        try
        {
            Socks5Listener[] socks;
            lock (_socks)
            {
                socks = [.. _socks.Values];
                _socks.Clear();
            }
            foreach (var l in socks)
            {
                await l.DisposeAsync().ConfigureAwait(false);
            }
            await _inbound.DisposeAsync().ConfigureAwait(false);
            _trimmer.Dispose();
            await _pool.DisposeAsync().ConfigureAwait(false);
            await _control.DisposeAsync().ConfigureAwait(false);
            if (_admin is not null)
            {
                await _admin.DisposeAsync().ConfigureAwait(false);
            }
        }
        finally
        {
            _reconcile.Release();
        }
    }

    private static partial class Log
    {
        [LoggerMessage(1, LogLevel.Information, "{Kind} listener up on {Endpoint}")]
        public static partial void ListenerAdded(ILogger logger, string kind, string endpoint);

        [LoggerMessage(2, LogLevel.Information, "{Kind} listener for {Address} removed")]
        public static partial void ListenerRemoved(ILogger logger, string kind, string address);

        [LoggerMessage(3, LogLevel.Error, "{Kind} listener on {Endpoint} could not start: {Error}")]
        public static partial void ListenerFailed(ILogger logger, string kind, string endpoint, string error);
    }
}

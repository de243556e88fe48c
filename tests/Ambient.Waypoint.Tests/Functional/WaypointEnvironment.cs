using System.Net;
using Ambient.Core.Identity;
using Ambient.Core.Model;
using Ambient.Core.Protos.AuthorizationPolicies;
using Ambient.Core.Protos.Discovery;
using Ambient.Core.Protos.Waypoint;
using Ambient.Core.Xds;
using Ambient.Dataplane.Identity;
using Ambient.Hbone;
using Ambient.Istiod;
using Ambient.TestCommon;
using Ambient.Ztunnel;
using Ambient.Ztunnel.Admin;
using Google.Protobuf.WellKnownTypes;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Routing;
using Microsoft.AspNetCore.Server.Kestrel.Core;
using Microsoft.Extensions.Logging;

namespace Ambient.Waypoint.Tests.Functional;

/// <summary>
/// Everything in-process on loopback: a real istiod-lite over a temp config folder; the waypoint (a pod on node-1)
/// started as Program starts it; an HTTP echo app and a TCP echo at pod echo-v1's address behind a real ztunnel
/// (node-2); and the test as the client pod: an HBONE client with the client's certificate from the same CA, which
/// opens tunnels to the waypoint with <c>:authority</c> = the Service VIP:port, as a source ztunnel would.
/// </summary>
internal sealed class WaypointEnvironment : IAsyncDisposable
{
    public const int HttpPort = 80;
    public const int Http2Port = 81;
    public const int TcpPort = 9000;

    /// <summary>The test collection of every class that starts an environment: the pods and nodes have fixed
    /// addresses (node-2's ztunnel on :15008), so two environments cannot run side by side.</summary>
    public const string Collection = "waypoint environment";

    /// <summary>
    /// Every test that starts an environment fails after this long instead of holding the run: xunit then cancels
    /// <c>TestContext.Current.CancellationToken</c>, which every wait of these tests takes. Minutes, not seconds: the
    /// slowest test (the rapid-reset attack) runs about 20 s on a machine shared with other builds.
    /// </summary>
    public const int TestTimeoutMs = 120_000;

    /// <summary>How long one part (a proxy, an app, istiod) gets to stop before the rest of the teardown goes on.</summary>
    private static readonly TimeSpan PartStopTimeout = TimeSpan.FromSeconds(30);

    private readonly TempDir _dir;
    private readonly ILoggerFactory _logs;
    private readonly List<IAsyncDisposable> _parts = [];

    private WaypointEnvironment(TempDir dir, IstiodHost istiod, ILoggerFactory logs, ListLogger captured, string ns)
    {
        _dir = dir;
        Istiod = istiod;
        _logs = logs;
        Logs = captured;
        Namespace = ns;
    }

    public IstiodHost Istiod { get; }

    /// <summary>The mesh config folder istiod-lite watches: files written here are pushed like any config change.</summary>
    public string ConfigFolder => Path.Combine(_dir.Path, "mesh");
    public string Namespace { get; }
    public ListLogger Logs { get; }
    public WaypointProxy Waypoint { get; private set; } = null!;
    public NodeProxy BackendNode { get; private set; } = null!;
    public LoopbackKestrel Echo { get; private set; } = null!;
    public LoopbackKestrel Echo2 { get; private set; } = null!;

    /// <summary>The HTTPRoute backends: pods running the echo sample (the Gateway API echo contract) on 8080, each
    /// behind a Service of the same name, as the conformance suite's infra-backend-v1..v3.</summary>
    public static readonly string[] RouteBackends = ["infra-backend-v1", "infra-backend-v2", "infra-backend-v3"];

    private readonly Dictionary<string, StringWriter> _echoLogs = [];

    /// <summary>What the echo pod <paramref name="pod"/> logged (one line per request it received).</summary>
    public string EchoLog(string pod)
    {
        var log = _echoLogs[pod];
        lock (log)
        {
            return log.ToString();
        }
    }
    public SpiffeId ClientIdentity => new(SpiffeId.DefaultTrustDomain, Namespace, "client");
    public SpiffeId WaypointIdentity => new(SpiffeId.DefaultTrustDomain, Namespace, "waypoint");

    private CertificateManager _clientCertificates = null!;
    private HboneConnectionPool _clientPool = null!;

    public MeshSnapshot Snapshot => Istiod.Mesh.Snapshot;

    public ServiceInfo Service(string name) => Snapshot.FindServiceByKey($"{Namespace}/{name}.{Namespace}.svc.cluster.local")!;

    public static async Task<WaypointEnvironment> StartAsync(string ns)
    {
        var dir = new TempDir();
        var config = Path.Combine(dir.Path, "mesh");
        Directory.CreateDirectory(config);
        File.WriteAllText(Path.Combine(config, "mesh.yaml"), Yaml(ns));
        var captured = new ListLogger(LogLevel.Information);
        var logs = LoggerFactory.Create(l => l.SetMinimumLevel(LogLevel.Information).AddProvider(captured));
        using var starting = new CancellationTokenSource(TimeSpan.FromSeconds(30));
        var istiod = await IstiodHost.StartAsync(
            new IstiodOptions(config, Path.Combine(dir.Path, "state"), new IPEndPoint(IPAddress.Loopback, 0), null, "Kubernetes", "cluster.local"),
            l => l.SetMinimumLevel(LogLevel.Warning), starting.Token);
        var env = new WaypointEnvironment(dir, istiod, logs, captured, ns);
        try
        {
            await env.StartPartsAsync();
            return env;
        }
        catch
        {
            await env.DisposeAsync();
            throw;
        }
    }

    private async Task StartPartsAsync()
    {
        using var ready = new CancellationTokenSource(TimeSpan.FromSeconds(30));
        var snapshot = Snapshot;
        var istiodUri = new Uri($"https://127.0.0.1:{Istiod.GrpcEndpoint.Port}");
        string Token(string node) => Path.Combine(Istiod.Options.StateFolder, "tokens", node + ".token");

        // The app in pod echo-v1: HTTP/1.1 on 8080 and h2c on 8081 (each answers what it received), bytes echoed on 9000.
        var echoAddress = snapshot.PodAddress(Namespace, "echo-v1")!;
        static void MapEcho(IEndpointRouteBuilder app) => app.Map("/{**path}", (HttpContext c) => Results.Text(
            $"host={c.Request.Host} path={c.Request.Path}{c.Request.QueryString} protocol={c.Request.Protocol} method={c.Request.Method}"));
        Echo = await LoopbackKestrel.StartAsync(MapEcho,
            new LoopbackKestrelOptions { EndPoint = new IPEndPoint(echoAddress, 8080), Protocols = HttpProtocols.Http1 });
        _parts.Add(Echo);
        Echo2 = await LoopbackKestrel.StartAsync(MapEcho,
            new LoopbackKestrelOptions { EndPoint = new IPEndPoint(echoAddress, 8081), Protocols = HttpProtocols.Http2 });
        _parts.Add(Echo2);
        var tcpEcho = TcpEcho.Start(new IPEndPoint(echoAddress, TcpPort));
        _parts.Add(new ActionDisposable(tcpEcho.Dispose));
        var podAddresses = new List<IPAddress> { echoAddress };
        foreach (var backend in RouteBackends)
        {
            var address = snapshot.PodAddress(Namespace, backend)!;
            podAddresses.Add(address);
            var log = new StringWriter();
            _echoLogs[backend] = log;
            var app = Samples.Echo.EchoServer.Build(new Samples.Echo.EchoSettings(address, [8080], backend, Namespace, backend, "echo", null),
                new LockedWriter(log));
            await app.StartAsync(ready.Token);
            _parts.Add(app);
        }

        BackendNode = await NodeProxy.StartAsync(new ZtunnelOptions("node-2", snapshot.NodeAddress("node-2")!, istiodUri, Istiod.RootCertificatePath,
            Token("node-2"), HbonePort: 15008, SocksPort: 15080, new AdminPorts(0, 0, 0), "Kubernetes"), _logs, ready.Token);
        _parts.Add(BackendNode);

        Waypoint = await WaypointProxy.StartAsync(new WaypointOptions("node-1", Namespace, "waypoint", snapshot.PodAddress(Namespace, WaypointPlacement.PodNameFor(Namespace, "waypoint"))!,
            istiodUri, Istiod.RootCertificatePath, Token("node-1"), HbonePort: 15008, AdminPort: 0, "Kubernetes"), _logs, ready.Token);
        _parts.Add(Waypoint);

        // The client pod's identity, issued by the CA exactly as its ztunnel would get it.
        _clientCertificates = new CertificateManager(new CertificateManagerOptions
        {
            CaAddress = istiodUri,
            Token = () => File.ReadAllText(Token("node-1")).Trim(),
        }, TrustBundle.FromPem(File.ReadAllText(Istiod.RootCertificatePath)), _logs.CreateLogger("client"));
        _parts.Add(_clientCertificates);
        _clientCertificates.SetIdentities([ClientIdentity]);
        _clientPool = new HboneConnectionPool(new MeshTls(_clientCertificates), loggerFactory: _logs);
        _parts.Add(_clientPool);

        await BackendNode.WaitForReadyAsync(ready.Token);
        await Waypoint.WaitForReadyAsync(ready.Token);
        while (!_clientCertificates.AllReady || !podAddresses.TrueForAll(BackendNode.HboneListeners.ContainsKey))
        {
            await Task.Delay(20, ready.Token);
        }
    }

    /// <summary>
    /// What istiod-lite will push for the Services this waypoint serves (ServiceProtocols, route.proto), applied
    /// through the waypoint's own xDS handler: port 80 speaks HTTP, 9000 plain TCP.
    /// </summary>
    public void ServeServices(params string[] names)
    {
        var response = new DeltaDiscoveryResponse { TypeUrl = XdsTypeUrls.ServiceProtocols, Nonce = "test" };
        foreach (var name in names)
        {
            var hostname = $"{name}.{Namespace}.svc.cluster.local";
            var protocols = new ServiceProtocols { Namespace = Namespace, Hostname = hostname };
            protocols.Ports.Add(new PortProtocol { ServicePort = HttpPort, Protocol = PortAppProtocol.Http });
            protocols.Ports.Add(new PortProtocol { ServicePort = Http2Port, Protocol = PortAppProtocol.Http2 });
            protocols.Ports.Add(new PortProtocol { ServicePort = TcpPort, Protocol = PortAppProtocol.Tcp });
            response.Resources.Add(new Resource { Name = $"{Namespace}/{hostname}", Resource_ = Any.Pack(protocols) });
        }
        Assert.Null(Waypoint.Config.ApplyProtocols(response));
    }

    /// <summary>An HBONE tunnel from the client pod to the waypoint addressed to <paramref name="target"/> (the original destination).</summary>
    public async Task<HboneStream> TunnelAsync(IPEndPoint target, CancellationToken cancellationToken = default)
    {
        var key = new HbonePoolKey(ClientIdentity.ToString(), WaypointIdentity.ToString(), Waypoint.HboneEndpoint);
        // As the client's ztunnel: forwarded for= the app's address, which names the source pod.
        var forwarded = new[] { ("forwarded", $"for=\"{Snapshot.PodAddress(Namespace, "client")}\"") };
        return await _clientPool.OpenAsync(key, $"{target.Address}:{target.Port}", forwarded, cancellationToken);
    }

    /// <summary>An HttpClient whose every connection is a tunnel through the waypoint to <paramref name="target"/>.</summary>
    public HttpClient HttpThroughWaypoint(IPEndPoint target, Action<int>? connectionOpened = null)
    {
        var opened = 0;
        var handler = new SocketsHttpHandler
        {
            UseProxy = false,
            // Redirects are what the tests look at, not something to follow.
            AllowAutoRedirect = false,
            ConnectCallback = async (_, ct) =>
            {
                connectionOpened?.Invoke(Interlocked.Increment(ref opened));
                return await TunnelAsync(target, ct);
            },
        };
        return new HttpClient(handler) { Timeout = TimeSpan.FromSeconds(20) };
    }

    public string Warnings() => string.Join("\n", Logs.AtLeast(LogLevel.Warning).Select(e => $"{e.Category}: {e.Message} {e.Exception?.Message}"));

    public async ValueTask DisposeAsync()
    {
        // Each part gets a bounded time to stop: a part that does not stop fails the teardown with its name, and the
        // others (and the next test) go on, instead of the whole run hanging with the listeners still bound.
        var stuck = new List<string>();
        for (var i = _parts.Count - 1; i >= 0; i--)
        {
            await StopPartAsync(_parts[i].GetType().Name, _parts[i].DisposeAsync(), stuck);
        }
        await StopPartAsync(nameof(IstiodHost), Istiod.DisposeAsync(), stuck);
        _logs.Dispose();
        _dir.Dispose();
        if (stuck.Count > 0)
        {
            throw new TimeoutException($"did not stop within {PartStopTimeout.TotalSeconds:0} s: {string.Join(", ", stuck)}");
        }
    }

    private static async Task StopPartAsync(string name, ValueTask stopping, List<string> stuck)
    {
        try
        {
            await stopping.AsTask().WaitAsync(PartStopTimeout);
        }
        catch (TimeoutException)
        {
            stuck.Add(name);
        }
    }

    private static string Yaml(string ns) =>
        MeshYaml.Namespace(ns) + MeshYaml.ServiceAccount(ns, "client") + MeshYaml.ServiceAccount(ns, "echo") + MeshYaml.ServiceAccount(ns, "waypoint")
        + MeshYaml.Sleep(ns, "client", "client", "node-1")
        + $$$"""
        apiVersion: gateway.networking.k8s.io/v1
        kind: Gateway
        metadata: {name: waypoint, namespace: {{{ns}}}, annotations: {ambient.dev/node: node-1}}
        spec:
          gatewayClassName: istio-waypoint
          listeners: [{name: mesh, port: 15008, protocol: HBONE}]
        ---
        apiVersion: v1
        kind: Pod
        metadata: {name: echo-v1, namespace: {{{ns}}}, labels: {app: echo}}
        spec:
          serviceAccountName: echo
          nodeName: node-2
          containers: [{name: main, image: ambient/echo, ports: [{name: http, containerPort: 8080}, {name: h2c, containerPort: 8081}, {name: tcp-echo, containerPort: 9000}]}]
        ---
        apiVersion: v1
        kind: Service
        metadata: {name: echo, namespace: {{{ns}}}}
        spec:
          selector: {app: echo}
          ports: [{name: http, port: {{{HttpPort}}}, targetPort: http}, {name: http2, port: {{{Http2Port}}}, targetPort: h2c}, {name: tcp, port: {{{TcpPort}}}, targetPort: tcp-echo}]
        ---
        apiVersion: v1
        kind: Pod
        metadata: {name: ghost, namespace: {{{ns}}}, labels: {app: ghost}}
        spec:
          serviceAccountName: echo
          nodeName: node-3
          containers: [{name: main, image: ambient/echo, ports: [{name: http, containerPort: 8080}]}]
        ---
        apiVersion: v1
        kind: Service
        metadata: {name: ghost, namespace: {{{ns}}}}
        spec:
          selector: {app: ghost}
          ports: [{name: http, port: {{{HttpPort}}}, targetPort: 8080}]
        ---
        apiVersion: v1
        kind: Service
        metadata: {name: empty, namespace: {{{ns}}}}
        spec:
          selector: {app: nobody}
          ports: [{name: http, port: {{{HttpPort}}}, targetPort: 8080}]
        ---

        """ + string.Concat(RouteBackends.Select(name => $$$"""
        apiVersion: v1
        kind: Pod
        metadata: {name: {{{name}}}, namespace: {{{ns}}}, labels: {app: {{{name}}}}}
        spec:
          serviceAccountName: echo
          nodeName: node-2
          containers: [{name: main, image: ambient/echo, ports: [{name: http, containerPort: 8080}]}]
        ---
        apiVersion: v1
        kind: Service
        metadata: {name: {{{name}}}, namespace: {{{ns}}}}
        spec:
          selector: {app: {{{name}}}}
          ports: [{name: http, port: 8080, targetPort: 8080}]
        ---

        """)) + $$$"""
        # A backend Service this waypoint does not serve whose port declares h2c (the echo also speaks h2c).
        apiVersion: v1
        kind: Service
        metadata: {name: infra-backend-v2-h2c, namespace: {{{ns}}}}
        spec:
          selector: {app: infra-backend-v2}
          ports: [{name: web, port: 8080, targetPort: 8080, appProtocol: kubernetes.io/h2c}]
        ---

        """;

    /// <summary>Applies HTTPRoutes through the waypoint's own xDS handler, replacing every route applied before.</summary>
    public void UseRoutes(params HTTPRoute[] routes) =>
        Assert.Null(Waypoint.Config.ApplyRoutes(Replacing(XdsTypeUrls.HttpRoute, Waypoint.Config.Routes.Keys,
            routes.Select(r => ($"{r.Namespace}/{r.Name}", (Google.Protobuf.IMessage)r)))));

    /// <summary>A push that removes every resource named in <paramref name="current"/> and adds <paramref name="next"/>.</summary>
    private static DeltaDiscoveryResponse Replacing(string typeUrl, IEnumerable<string> current, IEnumerable<(string Name, Google.Protobuf.IMessage Message)> next)
    {
        var response = new DeltaDiscoveryResponse { TypeUrl = typeUrl, Nonce = "test" };
        response.RemovedResources.Add(current);
        foreach (var (name, message) in next)
        {
            response.Resources.Add(new Resource { Name = name, Resource_ = Any.Pack(message) });
        }
        return response;
    }

    /// <summary>
    /// Applies AuthorizationPolicies through the waypoint's own xDS handler, as istiod-lite pushes those that target
    /// the waypoint's Gateway or a Service it serves, replacing every policy applied before.
    /// </summary>
    public void UsePolicies(params AuthorizationPolicySpec[] policies) =>
        Assert.Null(Waypoint.Config.ApplyPolicies(Replacing(XdsTypeUrls.AuthorizationPolicy, Waypoint.Config.Policies.Keys,
            policies.Select(p => ($"{p.Namespace}/{p.Name}", (Google.Protobuf.IMessage)p)))));

    /// <summary>Writes to a StringWriter under the lock <see cref="EchoLog"/> reads it with.</summary>
    private sealed class LockedWriter(StringWriter inner) : TextWriter
    {
        public override System.Text.Encoding Encoding => inner.Encoding;

        public override void Write(char value)
        {
            lock (inner)
            {
                inner.Write(value);
            }
        }

        public override void Write(string? value)
        {
            lock (inner)
            {
                inner.Write(value);
            }
        }

        public override void WriteLine(string? value)
        {
            lock (inner)
            {
                inner.WriteLine(value);
            }
        }
    }

    private sealed class ActionDisposable(Action dispose) : IAsyncDisposable
    {
        public ValueTask DisposeAsync()
        {
            dispose();
            return ValueTask.CompletedTask;
        }
    }
}

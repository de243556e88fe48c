using System.Collections.Immutable;
using System.Net;
using System.Net.Sockets;
using System.Security.Cryptography.X509Certificates;
using Ambient.Hbone;
using Ambient.Core.Model;
using Ambient.Core.Protos.Workload;
using Ambient.Hbone.Server;
using Ambient.TestCommon;
using Ambient.Ztunnel.Proxy.Inbound;
using Ambient.Ztunnel.Proxy.Outbound;
using Ambient.Dataplane.State;
using Ambient.Ztunnel.Telemetry;
using Ambient.Ztunnel.Tests.Inbound;
using Microsoft.Extensions.Logging;

namespace Ambient.Ztunnel.Tests.Outbound;

/// <summary>
/// Builds meshes by hand for the outbound proxy: pods, services, waypoints. Identities follow
/// <see cref="InboundTestEnvironment"/>: the source is ns/client-ns sa/client (its client cert) and whatever stands
/// at the HBONE server is ns/server-ns sa/server (its server cert).
/// </summary>
internal static class OutboundTestMesh
{
    public static readonly IPAddress SourceAddress = IPAddress.Parse("127.0.0.2");
    public static readonly IPAddress ServiceVip = IPAddress.Parse("10.96.0.10");

    public static WorkloadInfo Pod(string name, string ns, string sa, IPAddress address, GatewayInfo? waypoint = null, string? serviceKey = null,
        string network = "", GatewayInfo? networkGateway = null) =>
        new($"Kubernetes//Pod/{ns}/{name}", ns, "cluster.local", sa)
        {
            Name = name,
            CanonicalName = name,
            WorkloadName = name,
            Addresses = [address],
            TunnelProtocol = TunnelProtocol.Hbone,
            Waypoint = waypoint,
            Network = network,
            NetworkGateway = networkGateway,
            Services = serviceKey is null ? [] : [new WorkloadServicePorts(serviceKey, [new PortMapping(80, 8080, AppProtocol.Unknown)])],
        };

    public static WorkloadInfo Source(string network = "") => Pod("client", "client-ns", "client", SourceAddress, network: network);

    public static ServiceInfo Service(GatewayInfo? waypoint, string name = "echo", string ns = "demo", bool withVip = true) =>
        new(name, ns, $"{name}.{ns}.svc.cluster.local")
        {
            Vips = withVip ? [ServiceVip] : ImmutableArray<IPAddress>.Empty,
            Ports = [new ServicePortInfo(80, 8080, AppProtocol.Unknown)],
            Waypoint = waypoint,
        };

    public static ProxyState Mesh(params object[] items)
    {
        var workloads = new List<WorkloadInfo>();
        var services = new List<ServiceInfo>();
        foreach (var item in items)
        {
            if (item is WorkloadInfo w)
                workloads.Add(w);
            else
                services.Add((ServiceInfo)item);
        }
        return new ProxyState("node-1", MeshSnapshot.Create(workloads, services, MeshOptions.Default));
    }

    /// <summary>A plain stream pair: the proxy gets one end as the app's connection, the test holds the other.</summary>
    public static async Task<(Socket App, OutboundClient Client)> StreamPairAsync()
    {
        using var listener = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
        listener.Bind(new IPEndPoint(IPAddress.Loopback, 0));
        listener.Listen(1);
        var app = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
        await app.ConnectAsync(listener.LocalEndPoint!);
        var accepted = await listener.AcceptAsync();
        return (app, new OutboundClient((IPEndPoint)accepted.RemoteEndPoint!, new NetworkStream(accepted, ownsSocket: true)));
    }

    public static OutboundProxy NewProxy(ProxyState state, HboneConnectionPool pool, ILoggerFactory logs) =>
        new(state, pool, new ConnectionMetrics(), logs.CreateLogger<OutboundProxy>());

    public static HboneConnectionPool Pool(InboundTestEnvironment env) => new(new TestTls(env.ClientCert), loggerFactory: env.LoggerFactory);

    /// <summary>For tests that must never tunnel: any dial fails.</summary>
    public static HboneConnectionPool NoTunnelPool() => new(new NoTls());

    private sealed class NoTls : IHboneTlsProvider
    {
        public (X509Certificate2 Certificate, X509Certificate2Collection? Chain) GetClientCertificate(string sourceIdentity) =>
            throw new InvalidOperationException("this test does not tunnel");

        public bool ValidateServer(X509Certificate2 serverCert, X509Chain? chain, string expectedIdentity, out string? failure) =>
            throw new InvalidOperationException("this test does not tunnel");
    }

    /// <summary>Presents the one client cert; accepts a server whose URI SAN is the expected identity.</summary>
    private sealed class TestTls(X509Certificate2 client) : IHboneTlsProvider
    {
        public (X509Certificate2 Certificate, X509Certificate2Collection? Chain) GetClientCertificate(string sourceIdentity) => (client, null);

        public bool ValidateServer(X509Certificate2 serverCert, X509Chain? chain, string expectedIdentity, out string? failure)
        {
            var sans = TestCertificates.UriSans(serverCert);
            failure = sans.Contains(expectedIdentity) ? null : $"server is {string.Join(",", sans)}, expected {expectedIdentity}";
            return failure is null;
        }
    }
}

/// <summary>An HBONE server (the product's inbound server on loopback) that serves any authority: it records the
/// CONNECT authority (the observer's Destination) and connects every tunnel to one echo server.</summary>
internal sealed class RecordingHboneServer : IAsyncDisposable
{
    private readonly Socks5.EchoServer _echo;

    private RecordingHboneServer(Socks5.EchoServer echo, InboundTestEnvironment env)
    {
        _echo = echo;
        Env = env;
    }

    public InboundTestEnvironment Env { get; }

    public IPEndPoint Listener => Env.Listener;

    public static async Task<RecordingHboneServer> StartAsync(params IPEndPoint[] authorities)
    {
        var echo = new Socks5.EchoServer(IPAddress.Loopback);
        var env = await InboundTestEnvironment.StartAsync(new HboneInboundOptions
        {
            Port = 0,
            DrainTimeout = TimeSpan.FromSeconds(1),
            ConnectUpstream = async (_, ct) =>
            {
                var socket = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
                await socket.ConnectAsync(echo.EndPoint, ct);
                return socket;
            },
        });
        foreach (var authority in authorities)
            env.Targets.Serve(InboundTestEnvironment.Workload, authority);
        return new RecordingHboneServer(echo, env);
    }

    /// <summary>The <c>:authority</c> of every CONNECT served so far.</summary>
    public List<IPEndPoint> Authorities => Env.Observer.Read(o => o.Opened.Select(i => i.Destination).ToList());

    public async ValueTask DisposeAsync()
    {
        await Env.DisposeAsync();
        await _echo.DisposeAsync();
    }
}

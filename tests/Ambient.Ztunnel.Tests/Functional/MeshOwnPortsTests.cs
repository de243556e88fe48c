using System.Net;
using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;
using Ambient.TestCommon;
using Ambient.Ztunnel.Tests.Inbound;

namespace Ambient.Ztunnel.Tests.Functional;

/// <summary>
/// The mesh's own endpoints are never a tunnel's destination. Inbound: a meshed peer's CONNECT to any of a ztunnel's
/// listener ports (HBONE, SOCKS5, capture, DNS, admin) gets 400 naming the reason, so nobody can ride another pod's
/// SOCKS5 port and speak with that pod's identity. Outbound: a pod's SOCKS5 request for istiod (15012/15014 on its
/// address) or for any ztunnel port is refused with SOCKS5 reply 2 (not allowed by ruleset).
/// </summary>
public sealed class MeshOwnPortsTests : IClassFixture<MeshOwnPortsFixture>
{
    private const string EchoService = "echo." + MeshOwnPortsFixture.Namespace + ".svc.cluster.local";
    private readonly MeshOwnPortsFixture _fixture;

    public MeshOwnPortsTests(MeshOwnPortsFixture fixture) => _fixture = fixture;

    private MeshEnvironment Mesh => _fixture.Mesh;

    public static TheoryData<int> ZtunnelPorts => new() { 15000, 15001, 15006, 15008, 15020, 15021, 15053, 15080 };

    [Fact]
    public async Task Two_hop_pivot_through_another_pods_SOCKS5_port_is_refused()
    {
        // Hop 1: the client pod asks its ztunnel for echo-v1's SOCKS5 port; hop 2 would then ask echo-v1's ztunnel for
        // the echo service, so the traffic would leave node-2 as echo-v1 (its identity, its certificate).
        var echoPod = Mesh.PodAddress("echo-v1").ToString();
        var refused = await Assert.ThrowsAsync<SocksRefusedException>(async () =>
        {
            using var pivot = await Mesh.Socks5ConnectAsync("client", echoPod, 15080);
            await Mesh.Socks5HandshakeAsync(pivot, EchoService, 80);
            await EchoAsync(pivot);
        });
        Assert.Equal(2, refused.Code); // not allowed by ruleset

        // What is allowed still works: the service and the pod's application port.
        using (var direct = await Mesh.Socks5ConnectAsync("client", EchoService, 80))
        {
            await EchoAsync(direct);
        }
        using (var pod = await Mesh.Socks5ConnectAsync("client", echoPod, 8080))
        {
            await EchoAsync(pod);
        }
        // Nobody reached node-2 as echo-v1: no tunnel with the echo identity as its source.
        Assert.DoesNotContain(Mesh.Logs.Entries, e => e.Message.Contains("src.identity=spiffe://cluster.local/ns/" + MeshOwnPortsFixture.Namespace + "/sa/echo", StringComparison.Ordinal));
    }

    [Fact]
    public async Task Hbone_connect_to_a_service_hostname_reaches_that_services_pod_on_this_listener()
    {
        // What a waypoint or a sandwiched client sends: the service's name and port, not a pod address.
        var echoPod = Mesh.PodAddress("echo-v1");
        var (cert, key) = _fixture.ClientCert;
        string[] common = ["--addr", $"{echoPod}:15008", "--ca", _fixture.RootPath, "--cert", cert, "--key", key, "--send-len", "10"];

        var ok = await H2Client.RunAsync([.. common, "--authority", $"{EchoService}:80"]);
        var unknown = await H2Client.RunAsync([.. common, "--authority", $"nope.{MeshOwnPortsFixture.Namespace}.svc.cluster.local:80"]);
        var noPort = await H2Client.RunAsync([.. common, "--authority", $"{EchoService}:81"]);

        Assert.True(ok.Status == 200 && ok.EchoedLen == 10, ok.Raw);
        Assert.True(unknown.Status == 400, unknown.Raw);
        Assert.Contains("not a known service hostname", unknown.Body, StringComparison.Ordinal);
        Assert.True(noPort.Status == 400, noPort.Raw);
        Assert.Contains("no target port", noPort.Body, StringComparison.Ordinal);
    }

    [Theory]
    [MemberData(nameof(ZtunnelPorts))]
    public async Task Hbone_connect_to_a_ztunnel_port_is_400_with_the_reason(int port)
    {
        // A meshed peer (a valid client certificate) speaking HBONE straight to node-2, as another ztunnel would.
        var echoPod = Mesh.PodAddress("echo-v1");
        var (cert, key) = _fixture.ClientCert;
        var r = await H2Client.RunAsync(["--addr", $"{echoPod}:15008", "--ca", _fixture.RootPath, "--cert", cert, "--key", key,
            "--authority", $"{echoPod}:{port}", "--send-len", "10"]);

        Assert.True(r.Status == 400, $"CONNECT {echoPod}:{port}: {r.Raw}");
        Assert.Contains($"port {port} is a ztunnel port", r.Body, StringComparison.Ordinal);
        Assert.Contains(Mesh.Logs.Entries, e => e.Message.Contains("inbound rejected", StringComparison.Ordinal)
            && e.Message.Contains($"target={echoPod}:{port}", StringComparison.Ordinal)
            && e.Message.Contains("is a ztunnel port", StringComparison.Ordinal));
    }

    [Theory]
    [MemberData(nameof(ZtunnelPorts))]
    public async Task Socks5_request_for_a_ztunnel_port_on_any_address_is_not_allowed(int port)
    {
        foreach (var address in new[] { Mesh.PodAddress("echo-v1"), Mesh.Istiod.Mesh.Snapshot.NodeAddress("node-1")!, IPAddress.Loopback })
        {
            var refused = await Assert.ThrowsAsync<SocksRefusedException>(() => Mesh.Socks5ConnectAsync("client", address.ToString(), port));
            Assert.True(refused.Code == 2, $"{address}:{port}: SOCKS5 reply {refused.Code}, expected 2 (not allowed by ruleset)");
        }
    }

    [Fact]
    public async Task Socks5_request_for_istiod_is_not_allowed()
    {
        // istiod-lite of this mesh listens on a port of its own choosing; the ztunnel knows it from --istiod. 15012 and
        // 15014 are Istio's numbers for the same address.
        var istiod = Mesh.Istiod.GrpcEndpoint;
        foreach (var port in new[] { istiod.Port, 15012, 15014 })
        {
            var refused = await Assert.ThrowsAsync<SocksRefusedException>(() => Mesh.Socks5ConnectAsync("client", istiod.Address.ToString(), port));
            Assert.True(refused.Code == 2, $"{istiod.Address}:{port}: SOCKS5 reply {refused.Code}, expected 2 (not allowed by ruleset)");
        }
        Assert.Contains(Mesh.Logs.Entries, e => e.Message.Contains($"{istiod}", StringComparison.Ordinal)
            && e.Message.Contains("control plane", StringComparison.Ordinal));
    }

    private static async Task EchoAsync(System.Net.Sockets.Socket socket)
    {
        var payload = RandomNumberGenerator.GetBytes(4096);
        await socket.SendAsync(payload);
        var back = new byte[payload.Length];
        await MeshEnvironment.ReceiveExactlyAsync(socket, back, CancellationToken.None).WaitAsync(TimeSpan.FromSeconds(30));
        Assert.Equal(payload, back);
    }
}

/// <summary>One mesh for the class (namespace "ownports") and the client pod's certificate as PEM files, taken from
/// node-1's certificate manager, for HBONE clients that are not a ztunnel.</summary>
public sealed class MeshOwnPortsFixture : IAsyncLifetime
{
    internal const string Namespace = "ownports";
    private readonly TempDir _dir = new();

    internal MeshEnvironment Mesh { get; private set; } = null!;
    internal string RootPath { get; private set; } = "";
    internal (string Cert, string Key) ClientCert { get; private set; }

    public async ValueTask InitializeAsync()
    {
        Mesh = await MeshEnvironment.StartAsync(Namespace);
        RootPath = Mesh.Istiod.RootCertificatePath;
        var identity = $"spiffe://cluster.local/ns/{Namespace}/sa/client";
        Assert.True(Mesh.Nodes["node-1"].Certificates.TryGetCertificate(identity, out var cert, out _), $"node-1 holds no certificate for {identity}");
        using var key = cert.GetECDsaPrivateKey()!;
        ClientCert = (_dir.Write("client.crt", cert.ExportCertificatePem()), _dir.Write("client.key", key.ExportPkcs8PrivateKeyPem()));
    }

    public async ValueTask DisposeAsync()
    {
        if (Mesh is not null)
        {
            await Mesh.DisposeAsync();
        }
        _dir.Dispose();
    }
}

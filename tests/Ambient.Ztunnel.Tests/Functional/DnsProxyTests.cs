using System.Net;
using Ambient.Ztunnel.Tests.DnsProxy;
using static Ambient.Ztunnel.Tests.DnsProxy.DnsTestKit;

namespace Ambient.Ztunnel.Tests.Functional;

/// <summary>The DNS proxy as the ztunnel process runs it: turned on by its option, fed by real discovery from
/// istiod-lite, answering a pod by the address it asks from.</summary>
public sealed class DnsProxyTests : IAsyncLifetime
{
    private const string Ns = "dnsfn";
    private readonly FakeUpstream _upstream = new();
    private MeshEnvironment _mesh = null!;

    public async ValueTask InitializeAsync() =>
        // Port 0: the node address is shared with other test classes' meshes, and the real 15053 may be taken.
        _mesh = await MeshEnvironment.StartAsync(Ns, configure: o => o with { DnsPort = 0, DnsUpstreams = [_upstream.EndPoint] });

    public async ValueTask DisposeAsync()
    {
        await _mesh.DisposeAsync();
        await _upstream.DisposeAsync();
    }

    [Fact]
    public async Task ThePodsNode_AnswersServiceNames_FromDiscovery_AndForwardsTheRest()
    {
        var dns = _mesh.Nodes["node-1"].Dns!;
        Assert.Equal(_mesh.Istiod.Mesh.Snapshot.NodeAddress("node-1"), dns.UdpEndPoint.Address);
        var vip = Assert.Single(_mesh.Istiod.Mesh.Snapshot.FindServiceByKey($"{Ns}/echo.{Ns}.svc.cluster.local")!.Vips);
        var client = _mesh.PodAddress("client");

        foreach (var name in new[] { "echo", $"echo.{Ns}", $"echo.{Ns}.svc", $"echo.{Ns}.svc.cluster.local" })
        {
            var response = Read(await UdpExchangeAsync(dns.UdpEndPoint, Query(name), client));
            Assert.True(response.Addresses.SequenceEqual([vip]), $"{name}: {string.Join(",", response.Addresses)} rcode {response.ResponseCode}");
        }
        // Another namespace's service by its qualified name; an unknown one is NXDOMAIN.
        Assert.NotEmpty(Read(await UdpExchangeAsync(dns.UdpEndPoint, Query($"legacy-echo.{Ns}-legacy"), client)).Addresses);
        Assert.Equal(3, Read(await UdpExchangeAsync(dns.UdpEndPoint, Query($"nope.{Ns}.svc.cluster.local"), client)).ResponseCode);

        var forwarded = Read((await TcpExchangeAsync(dns.TcpEndPoint, client, Query("example.com")))[0]);
        Assert.Equal([FakeUpstream.Answer], forwarded.Addresses);
        Assert.NotNull(_mesh.Nodes["node-2"].Dns);
    }
}

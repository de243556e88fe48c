using System.Net;
using Ambient.Core;
using Ambient.Ztunnel.Admin;
using Ambient.Ztunnel.Proxy;

namespace Ambient.Ztunnel.Tests.Proxy;

public class MeshEndpointsTests
{
    private static MeshEndpoints ForNode(string istiod, int socksPort = MeshPorts.Socks5, AdminPorts? admin = null) =>
        MeshEndpoints.For(new ZtunnelOptions("node-1", IPAddress.Parse("127.0.1.1"), new Uri(istiod), "root.pem", "node.token",
            MeshPorts.Hbone, socksPort, admin ?? new AdminPorts(), "Kubernetes"));

    [Theory]
    [InlineData("10.0.0.5:15000")]
    [InlineData("10.0.0.5:15001")]
    [InlineData("10.0.0.5:15006")]
    [InlineData("127.0.0.9:15008")]
    [InlineData("0.0.0.0:15020")]
    [InlineData("[::1]:15021")]
    [InlineData("10.0.0.5:15053")]
    [InlineData("[::ffff:10.0.0.5]:15080")]
    public void Istios_ztunnel_ports_are_refused_on_any_address(string target)
    {
        var refusal = MeshEndpoints.Default.Refusal(IPEndPoint.Parse(target));
        Assert.NotNull(refusal);
        Assert.Contains("is a ztunnel port", refusal, StringComparison.Ordinal);
    }

    [Fact]
    public void Ports_the_node_was_started_with_are_refused_too_and_port_zero_is_not_a_port()
    {
        var endpoints = ForNode("https://127.0.0.1:15012", socksPort: 16080, admin: new AdminPorts(0, 16020, 0));
        Assert.Contains("(a listener of this ztunnel)", endpoints.Refusal(IPEndPoint.Parse("127.0.5.5:16080")), StringComparison.Ordinal);
        Assert.NotNull(endpoints.Refusal(IPEndPoint.Parse("127.0.1.1:16020")));
        // The default numbers stay refused: other ztunnels of the mesh still use them.
        Assert.NotNull(endpoints.Refusal(IPEndPoint.Parse("127.0.5.5:15080")));
        Assert.Null(endpoints.Refusal(IPEndPoint.Parse("127.0.5.5:1")));
    }

    [Fact]
    public void Istiod_is_refused_on_its_own_address_only()
    {
        var endpoints = ForNode("https://127.0.0.7:17012");
        foreach (var port in new[] { 17012, 15012, 15014 })
        {
            Assert.Contains("control plane (istiod)", endpoints.Refusal(new IPEndPoint(IPAddress.Parse("127.0.0.7"), port)), StringComparison.Ordinal);
            Assert.Null(endpoints.Refusal(new IPEndPoint(IPAddress.Parse("127.0.0.8"), port)));
        }
        Assert.Null(endpoints.Refusal(IPEndPoint.Parse("127.0.0.7:8080")));
        // The unspecified address is this host: it reaches an istiod on loopback.
        Assert.NotNull(ForNode("https://127.0.0.1:15012").Refusal(IPEndPoint.Parse("0.0.0.0:15012")));
        // An istiod given by name is resolved once.
        Assert.NotNull(ForNode("https://localhost:15012").Refusal(IPEndPoint.Parse("127.0.0.1:15014")));
    }

    [Fact]
    public void Application_ports_are_allowed()
    {
        Assert.Null(MeshEndpoints.Default.Refusal(IPEndPoint.Parse("10.0.0.5:8080")));
        Assert.Null(MeshEndpoints.Default.Refusal(IPEndPoint.Parse("10.0.0.5:15012")));
        Assert.Null(MeshEndpoints.Default.Refusal(IPEndPoint.Parse("10.0.0.5:80")));
    }
}

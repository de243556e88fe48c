using System.Collections.Immutable;
using System.Net;
using Ambient.Core.Config;
using Ambient.Core.Model;
using Ambient.Dataplane.State;

namespace Ambient.Ztunnel.Tests.State;

/// <summary>
/// A dual-stack cluster's pods and Services carry an IPv6 address next to the IPv4 one: what the ztunnel receives over
/// xDS keeps both, and either VIP leads to the pod (over its first address, the IPv4 path a loopback mesh can reach).
/// </summary>
public sealed class DualStackTests
{
    private static readonly SourceLocation Source = new("dual-stack.yaml", 1);

    private static MeshSnapshot Received()
    {
        var labels = ImmutableSortedDictionary.CreateRange(StringComparer.Ordinal, [new KeyValuePair<string, string>("app", "web")]);
        var ambient = ImmutableSortedDictionary.CreateRange(StringComparer.Ordinal, [new KeyValuePair<string, string>("istio.io/dataplane-mode", "ambient")]);
        var none = ImmutableSortedDictionary<string, string>.Empty;
        List<Resource> config =
        [
            new NamespaceResource("v1", new ObjectMeta("shop", "", ambient, none), Source),
            new PodResource("v1", new ObjectMeta("web-0", "shop", labels, none), Source, "web", "node-1",
                [new ContainerSpec("app", "web", [], [], [new ContainerPort("http", 8080, "TCP")], none)], "10.244.0.5") { SecondaryPodIPs = ["fd00:10:244::5"] },
            new PodResource("v1", new ObjectMeta("client", "shop", none, none), Source, "client", "node-1", [], "10.244.0.6") { SecondaryPodIPs = ["fd00:10:244::6"] },
            new ServiceResource("v1", new ObjectMeta("web", "shop", none, none), Source, "ClusterIP", "10.96.0.5", labels,
                [new ServicePortSpec("http", 80, TargetPort.FromName("http"), null, "TCP")]) { SecondaryClusterIPs = ["fd00:10:96::5"] },
        ];
        var built = MeshBuilder.Build(config);
        Assert.Empty(built.Problems);
        return MeshSnapshot.FromProtos(built.ToProtos());
    }

    [Theory]
    [InlineData("10.96.0.5")]
    [InlineData("fd00:10:96::5")]
    public void Either_vip_resolves_to_the_pod_over_hbone(string vip)
    {
        var snapshot = Received();
        var state = new ProxyState("node-1", snapshot);

        var result = state.ResolveDestination(snapshot.FindPod("shop", "client"), IPAddress.Parse(vip), 80);

        Assert.True(result.Succeeded, result.Error);
        var d = result.Destination!;
        Assert.Equal("web-0", d.Workload!.Name);
        Assert.Equal([IPAddress.Parse("10.244.0.5"), IPAddress.Parse("fd00:10:244::5")], d.Workload.Addresses);
        Assert.Equal(new IPEndPoint(IPAddress.Parse("10.244.0.5"), 8080), d.Target);
        Assert.True(d.UseHbone);
    }

    [Fact]
    public void The_pods_ipv6_address_finds_the_same_workload()
    {
        var snapshot = Received();
        Assert.Same(snapshot.FindPod("shop", "web-0"), snapshot.FindWorkloadByAddress(IPAddress.Parse("fd00:10:244::5")));
        Assert.Equal(2, snapshot.FindServiceByKey("shop/web.shop.svc.cluster.local")!.Vips.Length);
    }
}

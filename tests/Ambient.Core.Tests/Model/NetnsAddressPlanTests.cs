using System.Net;
using Ambient.Core.Config;
using Ambient.Core.Model;
using static Ambient.Core.Tests.Model.ConfigFixtures;
using static Ambient.TestCommon.GatewayApiFixtures;

namespace Ambient.Core.Tests.Model;

/// <summary>The netns address plan: node i owns the i-th /24 of the pod CIDR (.1 its bridge), VIPs from the service CIDR.</summary>
public class NetnsAddressPlanTests
{
    private static readonly AddressRanges Plan = AddressRanges.ParseNetns("10.244.0.0/16", "10.96.0.0/16", out _)!;

    private static List<Resource> TwoNodes(int podsPerNode)
    {
        var list = new List<Resource>();
        for (var i = 0; i < podsPerNode; i++)
        {
            list.Add(Pod("shop", "a-" + i, node: "node-a"));
            list.Add(Pod("shop", "b-" + i, node: "node-b"));
        }
        for (var i = 0; i < 300; i++) list.Add(Service("shop", "svc-" + i, [("app", "x")], [Port(80)]));
        return list;
    }

    [Fact]
    public void Nodes_are_the_gateways_of_their_slash_24_in_name_order_and_pods_live_in_their_nodes_block()
    {
        var config = TwoNodes(200);
        var assignment = LoopbackAddressAllocator.AssignAll(config, Plan);

        Assert.Equal(IPAddress.Parse("10.244.0.1"), assignment.NodeAddress("node-a"));
        Assert.Equal(IPAddress.Parse("10.244.1.1"), assignment.NodeAddress("node-b"));
        var seen = new HashSet<IPAddress>();
        foreach (PodResource p in config.OfType<PodResource>())
        {
            var b = assignment.PodAddress(p.Metadata.Namespace, p.Metadata.Name)!.GetAddressBytes();
            Assert.Equal((10, 244, p.NodeName == "node-a" ? 0 : 1), (b[0], b[1], (int)b[2]));
            Assert.InRange(b[3], 2, 254); // .1 is the bridge
            Assert.True(seen.Add(new IPAddress(b)));
        }
        Assert.Empty(assignment.Problems);
    }

    [Fact]
    public void Vips_come_from_the_service_cidr_and_never_take_the_dns_vip()
    {
        var config = TwoNodes(1);
        var assignment = LoopbackAddressAllocator.AssignAll(config, Plan);

        Assert.Equal(IPAddress.Parse("10.96.0.10"), Plan.DnsVip);
        var vips = new HashSet<IPAddress>();
        foreach (var s in config.OfType<ServiceResource>())
        {
            var vip = assignment.ServiceVip(s.Metadata.Namespace, s.Metadata.Name)!;
            Assert.True(Plan.ServiceCidr.Contains(vip), $"{vip} is outside {Plan.ServiceCidr}");
            Assert.NotEqual(Plan.DnsVip, vip);
            Assert.True(vips.Add(vip));
        }
    }

    [Fact]
    public void A_full_node_block_is_reported_not_thrown_and_a_pod_without_a_node_gets_no_address()
    {
        var config = new List<Resource> { Pod("shop", "homeless", node: null) };
        for (var i = 0; i < 254; i++) config.Add(Pod("shop", "p" + i, node: "node-a"));
        var assignment = LoopbackAddressAllocator.AssignAll(config, Plan);

        Assert.Null(assignment.PodAddress("shop", "homeless"));
        // 253 addresses (.2-.254) for 254 pods: exactly one is left out, and said so.
        Assert.Equal(253, config.Count(r => r is PodResource { NodeName: "node-a" } p && assignment.PodAddress("shop", p.Metadata.Name) is not null));
        Assert.Contains(assignment.Problems, p => p.Message.Contains("no free address left in 10.244.0.0/24", StringComparison.Ordinal));
    }

    [Fact]
    public void A_waypoint_pod_gets_an_address_of_its_nodes_block_and_istiod_publishes_the_same_plan()
    {
        List<Resource> config = [AmbientNamespace("shop"), Waypoint("shop", node: "node-b"), Pod("shop", "a", node: "node-a"), Pod("shop", "b", node: "node-b")];
        var assignment = LoopbackAddressAllocator.AssignAll(config, Plan);
        var placement = Assert.Single(assignment.Waypoints);
        var address = assignment.PodAddress("shop", placement.PodName)!;
        Assert.Equal((byte)1, address.GetAddressBytes()[2]);

        var snapshot = MeshBuilder.Build(config, new MeshOptions { Addresses = Plan });
        Assert.Equal(address, Assert.Single(snapshot.Waypoints).Address);
        Assert.Equal(assignment.PodAddress("shop", "a"), snapshot.PodAddress("shop", "a"));
        Assert.Equal(IPAddress.Parse("10.244.1.1"), snapshot.NodeAddress("node-b"));
    }

    [Theory]
    [InlineData("10.244.0.0/16", "10.96.0.0/16", null)]
    [InlineData("10.244.1.0/16", "10.96.0.0/16", "--pod-cidr")]      // host bits set
    [InlineData("10.244.0.0/25", "10.96.0.0/16", "/8 to /24")]       // not whole /24 blocks
    [InlineData("127.16.0.0/16", "10.96.0.0/16", "loopback")]
    [InlineData("10.244.0.0/16", "10.244.128.0/20", "overlap")]
    [InlineData("10.244.0.0/16", "fd00::/64", "--service-cidr")]
    [InlineData("10.244.0.0", "10.96.0.0/16", "--pod-cidr")]
    public void Ranges_from_flags_are_checked(string pods, string services, string? error)
    {
        var ranges = AddressRanges.ParseNetns(pods, services, out var message);
        if (error is null)
        {
            Assert.NotNull(ranges);
            Assert.Equal(256, ranges.MaxNodes);
            Assert.Equal(IPAddress.Parse("10.244.3.1"), ranges.NodeGateway(3));
            return;
        }
        Assert.Null(ranges);
        Assert.Contains(error, message);
    }

    [Fact]
    public void Loopback_plan_is_unchanged_by_the_generalised_allocator()
    {
        // The loopback slots are what they were: 127.X.Y.Z from the same hash (spot-checked against the old formula).
        var config = TwoNodes(50);
        var plan = LoopbackAddressAllocator.AssignAll(config);
        var explicitPlan = LoopbackAddressAllocator.AssignAll(config, AddressRanges.Loopback);
        foreach (PodResource p in config.OfType<PodResource>())
        {
            var address = plan.PodAddress("shop", p.Metadata.Name)!;
            Assert.Equal(address, explicitPlan.PodAddress("shop", p.Metadata.Name));
            var home = (uint)(StableHash.Fnv1a64("shop/" + p.Metadata.Name) % (127u * 256 * 254));
            var expected = new IPAddress([127, (byte)(1 + home / (256 * 254)), (byte)(home % (256 * 254) / 254), (byte)(home % 254 + 1)]);
            // Either the home slot or, after a collision, a later one.
            if (!address.Equals(expected)) Assert.Contains(config, r => r is PodResource q && plan.PodAddress("shop", q.Metadata.Name)!.Equals(expected));
        }
        Assert.Equal(IPAddress.Parse("127.0.1.1"), plan.NodeAddress("node-a"));
    }
}

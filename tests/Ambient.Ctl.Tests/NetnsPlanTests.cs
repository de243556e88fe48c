using System.Net;
using Ambient.Core.Model;
using Ambient.Ctl.Local;
using Ambient.Ctl.Local.Netns;
using Ambient.TestCommon;

namespace Ambient.Ctl.Tests;

/// <summary>What `local up --network netns` plans before touching the host: addresses, names, and the kube-proxy rules.</summary>
public class NetnsPlanTests
{
    private static readonly AddressRanges Ranges = AddressRanges.ParseNetns("10.244.0.0/16", "10.96.0.0/16", out _)!;

    [Fact]
    public void SampleMesh_in_netns_mode_puts_each_pod_in_its_nodes_slash_24_as_istiod_publishes_it()
    {
        var plan = MeshPlan.Load(RepoPaths.SampleMesh, out var errors, Ranges);
        Assert.Empty(errors);
        Assert.NotNull(plan);
        Assert.Equal(Ranges, plan.Addresses);
        Assert.Equal(IPAddress.Parse("10.244.0.1"), plan.Nodes["node-1"]);
        Assert.Equal(IPAddress.Parse("10.244.1.1"), plan.Nodes["node-2"]);
        var snapshot = MeshBuilder.Build(plan.Resources, new MeshOptions { Addresses = Ranges });
        foreach (var c in plan.Containers)
        {
            Assert.Equal(snapshot.PodAddress(c.Namespace, c.Pod), c.Address);
            Assert.True(SameSlash24(plan.Nodes[c.Node], c.Address) && !c.Address.Equals(plan.Nodes[c.Node]), $"{c.DisplayName} {c.Address} is not on node {c.Node}'s bridge");
        }
    }

    [Fact]
    public void Service_rules_dnat_each_vip_port_to_its_ready_endpoints_with_equal_odds_and_dns_to_the_nodes_proxy()
    {
        var plan = MeshPlan.Load(RepoPaths.SampleMesh, out _, Ranges)!;
        var names = new NetworkNames("t1");
        var nodes = new Dictionary<string, int> { ["node-1"] = 0, ["node-2"] = 1 };
        var v1 = plan.Containers.Single(c => c.Pod == "echo-v1").Address;
        var v2 = plan.Containers.Single(c => c.Pod == "echo-v2").Address;
        var vip = MeshBuilder.Build(plan.Resources, new MeshOptions { Addresses = Ranges }).Services.Single(s => s.Key == "demo/echo.demo.svc.cluster.local").Vips[0];

        var rules = ServiceRules.Build(names, Ranges, nodes, plan.Resources, new HashSet<IPAddress> { v1, v2 });
        var lines = rules.Split('\n');
        Assert.Equal("*nat", lines[0]);
        Assert.Equal(":AMB-t1-SVC - [0:0]", lines[1]); // declaring the chain makes iptables-restore --noflush replace it whole
        Assert.Contains($"-A AMB-t1-SVC -s 10.244.1.0/24 -d 10.96.0.10/32 -p udp -m udp --dport 53 -j DNAT --to-destination 10.244.1.1:15053", lines);
        Assert.Contains($"-A AMB-t1-SVC -s 10.244.0.0/24 -d 10.96.0.10/32 -p tcp -m tcp --dport 53 -j DNAT --to-destination 10.244.0.1:15053", lines);
        var echo = lines.Where(l => l.Contains($"-d {vip}/32", StringComparison.Ordinal)).ToList();
        Assert.Equal(2, echo.Count); // port 80 (named target port "http" = 8080 on each pod), one rule per endpoint
        Assert.Contains("--probability 0.50000000000 -j DNAT --to-destination ", echo[0]);
        Assert.DoesNotContain("probability", echo[1]);
        Assert.Equal(new[] { $"{v1}:8080", $"{v2}:8080" }.Order(), echo.Select(l => l[(l.LastIndexOf(' ') + 1)..]).Order());
        Assert.Equal("COMMIT", lines[^2]);

        // A pod that does not run is no endpoint; with none left the VIP gets no rule at all.
        var one = ServiceRules.Build(names, Ranges, nodes, plan.Resources, new HashSet<IPAddress> { v2 }).Split('\n').Where(l => l.Contains($"-d {vip}/32", StringComparison.Ordinal));
        Assert.Equal($"-A AMB-t1-SVC -d {vip}/32 -p tcp -m tcp --dport 80 -j DNAT --to-destination {v2}:8080", Assert.Single(one));
        Assert.DoesNotContain($"-d {vip}/32", ServiceRules.Build(names, Ranges, nodes, plan.Resources, new HashSet<IPAddress>()), StringComparison.Ordinal);
    }

    [Fact]
    public void Every_owned_name_carries_the_prefix_and_link_names_fit_ifnamsiz()
    {
        var names = new NetworkNames("abc123");
        Assert.Equal("amb-abc123-b255", names.Bridge(255));
        Assert.Equal("amb-abc123-9999", names.Veth(NetworkNames.MaxVethIndex));
        Assert.True(names.Bridge(255).Length <= 15 && names.Veth(NetworkNames.MaxVethIndex).Length <= 15);
        Assert.StartsWith("AMB-abc123-", names.ServicesChain);
        Assert.True(names.ServicesChain.Length <= 28 && names.HairpinChain.Length <= 28 && names.ForwardChain.Length <= 28);
        Assert.Equal("amb-abc123-shop-web", names.Netns("shop", "web"));
        var longName = names.Netns(new string('n', 63), new string('p', 200));
        Assert.True(longName.Length <= 64 && longName.StartsWith(names.Prefix, StringComparison.Ordinal));
        Assert.NotEqual(longName, names.Netns(new string('n', 63), new string('p', 199)));
    }

    [Theory]
    [InlineData("")]
    [InlineData("abcdefg")]
    [InlineData("Ab")]
    [InlineData("a-b")]
    public void Network_ids_that_could_overflow_or_escape_the_prefix_are_refused(string id) => Assert.NotNull(NetworkNames.Validate(id));

    [Fact]
    public void The_default_id_is_a_stable_valid_function_of_the_state_folder()
    {
        var id = NetworkNames.DefaultId("/tmp/a/.ambient-state");
        Assert.Null(NetworkNames.Validate(id));
        Assert.Equal(id, NetworkNames.DefaultId("/tmp/a/.ambient-state"));
        Assert.NotEqual(id, NetworkNames.DefaultId("/tmp/b/.ambient-state"));
    }

    private static bool SameSlash24(IPAddress a, IPAddress b)
    {
        var x = a.GetAddressBytes();
        var y = b.GetAddressBytes();
        return x[0] == y[0] && x[1] == y[1] && x[2] == y[2];
    }
}

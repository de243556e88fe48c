using System.Net;
using Ambient.Core.Config;
using Ambient.Core.Model;
using static Ambient.Core.Tests.Model.ConfigFixtures;

namespace Ambient.Core.Tests.Model;

public class LoopbackAddressAllocatorTests
{
    private static List<Resource> ManyPods(int count)
    {
        var list = new List<Resource>(count);
        for (var i = 0; i < count; i++)
        {
            list.Add(Pod($"ns-{i % 7}", $"pod-{i}"));
        }
        return list;
    }

    [Fact]
    public void Pod_addresses_are_in_range_unique_and_never_end_in_0_or_255()
    {
        var config = ManyPods(2000);
        var assignment = LoopbackAddressAllocator.AssignAll(config);

        var seen = new HashSet<IPAddress>();
        foreach (PodResource p in config)
        {
            var b = assignment.PodAddress(p.Metadata.Namespace, p.Metadata.Name)!.GetAddressBytes();
            Assert.Equal(127, b[0]);
            Assert.InRange(b[1], 1, 127);
            Assert.InRange(b[3], 1, 254);
            Assert.True(seen.Add(new IPAddress(b)));
        }
    }

    [Fact]
    public void Assignment_is_a_pure_function_of_the_config_not_of_its_order()
    {
        var config = ManyPods(500);
        config.Add(Service("ns-1", "svc", [("a", "b")], [Port(80)]));
        var reversed = Enumerable.Reverse(config).ToList();

        var first = LoopbackAddressAllocator.AssignAll(config);
        var second = LoopbackAddressAllocator.AssignAll(reversed);

        foreach (var r in config)
        {
            if (r is PodResource p)
            {
                Assert.Equal(first.PodAddress(p.Metadata.Namespace, p.Metadata.Name), second.PodAddress(p.Metadata.Namespace, p.Metadata.Name));
            }
        }
        Assert.Equal(first.ServiceVip("ns-1", "svc"), second.ServiceVip("ns-1", "svc"));
    }

    [Fact]
    public void Adding_an_unrelated_pod_moves_no_existing_pod()
    {
        var config = ManyPods(1000);
        var before = LoopbackAddressAllocator.AssignAll(config);
        config.Add(Pod("ns-0", "a-newcomer"));
        var after = LoopbackAddressAllocator.AssignAll(config);

        foreach (PodResource p in config.Take(1000))
        {
            Assert.Equal(before.PodAddress(p.Metadata.Namespace, p.Metadata.Name), after.PodAddress(p.Metadata.Namespace, p.Metadata.Name));
        }
        Assert.NotNull(after.PodAddress("ns-0", "a-newcomer"));
    }

    [Fact]
    public void Hash_collisions_resolve_by_sorted_order_and_linear_probing()
    {
        // Find two keys with the same home slot in a one-octet range (65,024 slots): birthday odds make this quick.
        var (first, second) = FindCollision(65_024);
        var used = new HashSet<uint>();
        var allocator = new LoopbackAddressAllocator(5, 5, used);

        var a = allocator.Allocate(first);   // sorted first: takes the home slot
        var b = allocator.Allocate(second);  // probes to the next usable address

        Assert.Equal(NextUsable(a), b);

        // Either order of insertion into the config gives the same result, because AssignAll sorts.
        var fresh = new LoopbackAddressAllocator(5, 5, []);
        Assert.Equal(a, fresh.Allocate(first));
    }

    [Fact]
    public void Probing_skips_reserved_addresses_and_wraps_to_the_range_start()
    {
        var used = new HashSet<uint>();
        var probe = new LoopbackAddressAllocator(9, 9, used);
        var home = probe.Allocate("k");
        // Fresh allocator with the home slot reserved (say, an explicit podIP): "k" must move to the next one.
        Assert.True(LoopbackAddressAllocator.TryToUInt32(home, out var homeValue));
        var moved = new LoopbackAddressAllocator(9, 9, [homeValue]).Allocate("k");
        Assert.Equal(NextUsable(home), moved);
    }

    [Fact]
    public void Explicit_pod_ip_inside_the_range_is_never_handed_out_again()
    {
        var alone = LoopbackAddressAllocator.AssignAll([Pod("a", "x")]).PodAddress("a", "x")!;
        var withExplicit = LoopbackAddressAllocator.AssignAll([Pod("a", "x"), Pod("b", "y", podIP: alone.ToString())]);

        Assert.Equal(alone, withExplicit.PodAddress("b", "y"));
        Assert.NotEqual(alone, withExplicit.PodAddress("a", "x"));
        Assert.Empty(withExplicit.Problems);
    }

    [Theory]
    [InlineData("10.0.0.7", true)]
    [InlineData("255.255.255.254", true)]
    [InlineData("10.1", false)]          // shorthand IPAddress.TryParse accepts, Kubernetes does not
    [InlineData("010.0.0.7", false)]
    [InlineData("0x0a.0.0.7", false)]
    [InlineData("10.0.0.7/32", false)]
    public void Explicit_ipv4_is_used_only_in_canonical_dotted_quad_form(string podIP, bool used)
    {
        var assignment = LoopbackAddressAllocator.AssignAll([Pod("a", "x", podIP: podIP)]);

        Assert.Equal(used, assignment.PodAddress("a", "x")!.ToString() == podIP);
        Assert.Equal(used, assignment.Problems.Count == 0);
    }

    [Fact]
    public void Services_get_vips_in_their_own_range_except_headless_and_explicit()
    {
        var assignment = LoopbackAddressAllocator.AssignAll(
        [
            Service("ns", "auto", [("a", "b")], [Port(80)]),
            Service("ns", "fixed", [("a", "b")], [Port(80)], clusterIP: "10.96.0.1"),
            Service("ns", "headless", [("a", "b")], [Port(80)], clusterIP: "None"),
        ]);

        Assert.InRange(assignment.ServiceVip("ns", "auto")!.GetAddressBytes()[1], 128, 254);
        Assert.Equal(IPAddress.Parse("10.96.0.1"), assignment.ServiceVip("ns", "fixed"));
        Assert.Null(assignment.ServiceVip("ns", "headless"));
        Assert.Null(assignment.ServiceVip("ns", "missing"));
    }

    [Fact]
    public void Nodes_are_numbered_in_sorted_order()
    {
        var assignment = LoopbackAddressAllocator.AssignAll([Pod("n", "1", node: "zeta"), Pod("n", "2", node: "alpha"), Pod("n", "3", node: "mid"), Pod("n", "4", node: null)]);

        Assert.Equal(IPAddress.Parse("127.0.1.1"), assignment.NodeAddress("alpha"));
        Assert.Equal(IPAddress.Parse("127.0.1.2"), assignment.NodeAddress("mid"));
        Assert.Equal(IPAddress.Parse("127.0.1.3"), assignment.NodeAddress("zeta"));
        Assert.Equal(3, assignment.Nodes.Count);
    }

    [Fact]
    public void Nodes_move_to_another_range_and_nothing_else_does()
    {
        Resource[] config = [Pod("n", "1", node: "b"), Pod("n", "2", node: "a"), Service("n", "s", [("a", "b")], [Port(80)])];
        var standard = LoopbackAddressAllocator.AssignAll(config);
        var moved = LoopbackAddressAllocator.AssignAll(config, firstNodeOctet: 200);

        Assert.Equal(IPAddress.Parse("127.0.200.1"), moved.NodeAddress("a"));
        Assert.Equal(IPAddress.Parse("127.0.200.2"), moved.NodeAddress("b"));
        // Pods and VIPs are keyed by name only: the same as in the default range.
        Assert.Equal(standard.PodAddress("n", "1"), moved.PodAddress("n", "1"));
        Assert.Equal(standard.ServiceVip("n", "s"), moved.ServiceVip("n", "s"));
        // The last range fills up sooner, and says so.
        var many = Enumerable.Range(0, 255).Select(i => (Resource)Pod("n", "p" + i, node: "node-" + i.ToString("D3", System.Globalization.CultureInfo.InvariantCulture))).ToArray();
        var full = LoopbackAddressAllocator.AssignAll(many, firstNodeOctet: 255);
        Assert.Equal(254, full.Nodes.Count);
        Assert.Contains(full.Problems, p => p.Message.Contains("more than 254 nodes", StringComparison.Ordinal));
    }

    [Fact]
    public void Stable_hash_is_fnv1a_64_over_utf8()
    {
        // Published FNV-1a test vectors: other tools can reproduce our slots.
        Assert.Equal(0xcbf29ce484222325UL, StableHash.Fnv1a64(""));
        Assert.Equal(0xaf63dc4c8601ec8cUL, StableHash.Fnv1a64("a"));
        Assert.Equal(0x85944171f73967e8UL, StableHash.Fnv1a64("foobar"));
    }

    [Theory]
    [InlineData("a", "x", "a-b", "x")]   // '-' sorts before '/': "a-b/x" < "a/x" although "a" < "a-b"
    [InlineData("a", "x", "a", "y")]
    [InlineData("ns", "pod", "ns2", "a")]
    [InlineData("ab", "c", "a", "b/c")]
    [InlineData("same", "same", "same", "same")]
    [InlineData("ns", "", "ns", "a")]
    public void Keys_sort_and_hash_exactly_like_their_joined_string(string ns1, string name1, string ns2, string name2)
    {
        var expected = Math.Sign(string.CompareOrdinal(ns1 + "/" + name1, ns2 + "/" + name2));
        Assert.Equal(expected, Math.Sign(ObjectKey.CompareJoined(new(ns1, name1), new(ns2, name2))));
        Assert.Equal(-expected, Math.Sign(ObjectKey.CompareJoined(new(ns2, name2), new(ns1, name1))));
        Assert.Equal(StableHash.Fnv1a64(ns1 + "/" + name1), StableHash.Fnv1a64Joined(ns1, '/', name1));
    }

    [Fact]
    public void Joined_hash_handles_non_ascii_as_utf8()
        => Assert.Equal(StableHash.Fnv1a64("nämespace/pöd-ü"), StableHash.Fnv1a64Joined("nämespace", '/', "pöd-ü"));

    private static IPAddress NextUsable(IPAddress address)
    {
        Assert.True(LoopbackAddressAllocator.TryToUInt32(address, out var v));
        do
        {
            v++;
        }
        while ((v & 0xff) is 0 or 255);
        // Range 127.X.0.1-127.X.255.254 of a one-octet allocator wraps back to its start.
        if (((v >> 16) & 0xff) != ((address.GetAddressBytes()[1])))
        {
            v = (v & 0xff000000) | ((uint)address.GetAddressBytes()[1] << 16) | 1;
        }
        return LoopbackAddressAllocator.ToIPAddress(v);
    }

    private static (string First, string Second) FindCollision(uint slots)
    {
        var homes = new Dictionary<uint, string>();
        for (var i = 0; ; i++)
        {
            var key = "ns/pod-" + i;
            var home = (uint)(StableHash.Fnv1a64(key) % slots);
            if (homes.TryGetValue(home, out var other))
            {
                return string.CompareOrdinal(other, key) < 0 ? (other, key) : (key, other);
            }
            homes.Add(home, key);
        }
    }
}

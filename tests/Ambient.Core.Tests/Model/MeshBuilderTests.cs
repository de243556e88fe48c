using System.Net;
using Ambient.Core.Config;
using Ambient.Core.Model;
using Ambient.Core.Protos.Workload;
using static Ambient.Core.Tests.Model.ConfigFixtures;

namespace Ambient.Core.Tests.Model;

public class MeshBuilderTests
{
    [Theory]
    // namespace label, pod label, enrolled
    [InlineData("ambient", null, true)]
    [InlineData("ambient", "ambient", true)]
    [InlineData("ambient", "none", false)]
    [InlineData(null, null, false)]
    [InlineData(null, "ambient", true)]
    [InlineData(null, "none", false)]
    [InlineData("none", "ambient", true)]
    [InlineData("none", null, false)]
    [InlineData("Ambient", null, false)] // label values are case-sensitive, as in Istio
    public void Enrollment_follows_namespace_and_pod_labels(string? nsLabel, string? podLabel, bool enrolled)
    {
        var ns = nsLabel is null ? Namespace("demo") : Namespace("demo", ("istio.io/dataplane-mode", nsLabel));
        var pod = Pod("demo", "p", podLabel is null ? [] : [("istio.io/dataplane-mode", podLabel)]);

        var w = MeshBuilder.Build([ns, pod]).FindPod("demo", "p")!;

        Assert.Equal(enrolled ? TunnelProtocol.Hbone : TunnelProtocol.None, w.TunnelProtocol);
        Assert.Equal(enrolled, w.IsInMesh);
    }

    [Fact]
    public void Pod_without_namespace_resource_is_treated_as_unlabelled()
    {
        var snapshot = MeshBuilder.Build([Pod("ghost", "a"), Pod("ghost", "b", [("istio.io/dataplane-mode", "ambient")])]);

        Assert.Equal(TunnelProtocol.None, snapshot.FindPod("ghost", "a")!.TunnelProtocol);
        Assert.Equal(TunnelProtocol.Hbone, snapshot.FindPod("ghost", "b")!.TunnelProtocol);
    }

    [Fact]
    public void Workload_fields_follow_istio_naming()
    {
        var snapshot = MeshBuilder.Build([AmbientNamespace("shop"), Pod("shop", "cart-0", serviceAccount: "cart", node: "node-b", podIP: "10.1.2.3")]);

        var w = Assert.Single(snapshot.Workloads);
        Assert.Equal("Kubernetes//Pod/shop/cart-0", w.Uid);
        Assert.Equal("cart-0", w.Name);
        Assert.Equal("shop", w.Namespace);
        Assert.Equal("cart-0", w.WorkloadName);
        Assert.Equal(WorkloadType.Pod, w.WorkloadType);
        Assert.Equal("node-b", w.Node);
        Assert.Equal("cart", w.ServiceAccount);
        Assert.Equal("cluster.local", w.TrustDomain);
        Assert.Equal("Kubernetes", w.ClusterId);
        Assert.Equal("", w.Network);
        Assert.Equal(WorkloadStatus.Healthy, w.Status);
        Assert.Equal("spiffe://cluster.local/ns/shop/sa/cart", w.Identity);
        Assert.Equal([IPAddress.Parse("10.1.2.3")], w.Addresses);
        // No app/version labels: canonical name = pod name, revision "latest".
        Assert.Equal("cart-0", w.CanonicalName);
        Assert.Equal("latest", w.CanonicalRevision);
    }

    [Fact]
    public void Options_set_cluster_trust_domain_and_network()
    {
        var options = new MeshOptions { ClusterId = "east", TrustDomain = "example.org", Network = "net1", DomainSuffix = "corp.local" };
        var snapshot = MeshBuilder.Build([Pod("a", "p", podIP: "10.0.0.1"), Service("a", "s", [("x", "y")], [Port(80)], clusterIP: "10.96.0.1")], options);

        var w = snapshot.FindPod("a", "p")!;
        Assert.Equal("east//Pod/a/p", w.Uid);
        Assert.Equal("east", w.ClusterId);
        Assert.Equal("spiffe://example.org/ns/a/sa/default", w.Identity);
        Assert.Equal("net1", w.Network);
        var s = Assert.Single(snapshot.Services);
        Assert.Equal("s.a.svc.corp.local", s.Hostname);
        Assert.Equal("net1", s.ToProto().Addresses[0].Network);
    }

    [Theory]
    [InlineData(new[] { "app", "cart", "version", "v2" }, "cart", "v2")]
    [InlineData(new[] { "app.kubernetes.io/name", "k8s-cart", "app", "cart", "app.kubernetes.io/version", "1.2", "version", "v2" }, "k8s-cart", "1.2")]
    [InlineData(new[] { "service.istio.io/canonical-name", "canon", "app", "cart", "service.istio.io/canonical-revision", "r9" }, "canon", "r9")]
    [InlineData(new[] { "version", "v3" }, "pod-x", "v3")]
    public void Canonical_name_and_revision_come_from_labels(string[] labelPairs, string name, string revision)
    {
        var labels = new (string, string)[labelPairs.Length / 2];
        for (var i = 0; i < labels.Length; i++)
        {
            labels[i] = (labelPairs[2 * i], labelPairs[2 * i + 1]);
        }
        var w = MeshBuilder.Build([Pod("ns", "pod-x", labels)]).FindPod("ns", "pod-x")!;

        Assert.Equal(name, w.CanonicalName);
        Assert.Equal(revision, w.CanonicalRevision);
    }

    [Fact]
    public void Services_select_pods_by_all_selector_labels_in_the_same_namespace()
    {
        var snapshot = MeshBuilder.Build(
        [
            AmbientNamespace("shop"),
            Pod("shop", "web-0", [("app", "web"), ("tier", "front")]),
            Pod("shop", "web-1", [("app", "web")]),                      // lacks tier
            Pod("shop", "db-0", [("app", "db"), ("tier", "front")]),
            Pod("other", "web-0", [("app", "web"), ("tier", "front")]),  // other namespace
            Service("shop", "web", [("app", "web"), ("tier", "front")], [Port(80, 8080, "http")]),
            Service("shop", "manual", [], [Port(90)]),                    // empty selector selects nothing
        ]);

        var web = snapshot.FindServiceByKey("shop/web.shop.svc.cluster.local")!;
        var endpoints = snapshot.EndpointsOf(web);
        Assert.Equal(["Kubernetes//Pod/shop/web-0"], endpoints.Select(e => e.Workload.Uid));
        Assert.Equal([(snapshot.FindPod("shop", "web-0")!, 8080)], snapshot.EndpointsOf(web, 80));
        Assert.Empty(snapshot.EndpointsOf(snapshot.FindServiceByKey("shop/manual.shop.svc.cluster.local")!));

        var services = snapshot.FindPod("shop", "web-0")!.ToProto().Services;
        var list = Assert.Single(services);
        Assert.Equal("shop/web.shop.svc.cluster.local", list.Key);
        var port = Assert.Single(list.Value.Ports);
        Assert.Equal((80u, 8080u, AppProtocol.Http11), (port.ServicePort, port.TargetPort, port.AppProtocol));
        Assert.Empty(snapshot.FindPod("shop", "web-1")!.Services);
        Assert.Empty(snapshot.FindPod("other", "web-0")!.Services);
    }

    [Fact]
    public void Named_target_port_resolves_per_pod_and_unresolvable_name_drops_that_port()
    {
        var snapshot = MeshBuilder.Build(
        [
            Pod("ns", "a", [("app", "x")], ports: new ContainerPort("http", 8080, "TCP")),
            Pod("ns", "b", [("app", "x")], ports: new ContainerPort("http", 9090, "TCP")),
            Pod("ns", "c", [("app", "x")], ports: new ContainerPort("metrics", 15020, "TCP")),
            Service("ns", "x", [("app", "x")], [NamedTargetPort(80, "http", "http2"), Port(81, 7070)]),
        ]);
        var svc = snapshot.FindServiceByKey("ns/x.ns.svc.cluster.local")!;

        // Service proto: named target port -> 0 (resolved per pod), numeric kept.
        var proto = svc.ToProto();
        Assert.Equal([(80u, 0u, AppProtocol.Http2), (81u, 7070u, AppProtocol.Unknown)],
            proto.Ports.Select(p => (p.ServicePort, p.TargetPort, p.AppProtocol)));

        var on80 = snapshot.EndpointsOf(svc, 80).Select(e => (e.Workload.Name, e.TargetPort)).ToArray();
        Assert.Equal([("a", 8080), ("b", 9090)], on80);
        var on81 = snapshot.EndpointsOf(svc, 81).Select(e => (e.Workload.Name, e.TargetPort)).ToArray();
        Assert.Equal([("a", 7070), ("b", 7070), ("c", 7070)], on81);

        // Pod c still lists the service (as Istio does), with only the port it can serve.
        var cPorts = snapshot.FindPod("ns", "c")!.ToProto().Services["ns/x.ns.svc.cluster.local"].Ports;
        Assert.Equal([(81u, 7070u)], cPorts.Select(p => (p.ServicePort, p.TargetPort)));
    }

    [Fact]
    public void Absent_target_port_defaults_to_the_service_port()
    {
        var snapshot = MeshBuilder.Build([Pod("ns", "a", [("app", "x")]), Service("ns", "x", [("app", "x")], [Port(5000)])]);
        var svc = Assert.Single(snapshot.Services);
        Assert.Equal(5000, Assert.Single(svc.Ports).TargetPort);
        Assert.Equal(5000, Assert.Single(snapshot.EndpointsOf(svc, 5000)).TargetPort);
    }

    [Fact]
    public void Service_proto_carries_vip_ports_and_names()
    {
        var snapshot = MeshBuilder.Build(
        [
            Service("shop", "api", [("app", "api")], [Port(80, 8080, "http"), Port(443, 8443, "tls"), Port(9000, 9000, "grpc")], clusterIP: "10.96.0.10"),
            Service("shop", "db", [("app", "db")], [Port(5432)], clusterIP: "None"),
        ]);

        var api = snapshot.FindServiceByKey("shop/api.shop.svc.cluster.local")!.ToProto();
        Assert.Equal("api", api.Name);
        Assert.Equal("shop", api.Namespace);
        Assert.Equal("api.shop.svc.cluster.local", api.Hostname);
        var vip = Assert.Single(api.Addresses);
        Assert.Equal("", vip.Network);
        Assert.Equal(new byte[] { 10, 96, 0, 10 }, vip.Address.ToByteArray());
        Assert.Equal([AppProtocol.Http11, AppProtocol.Tls, AppProtocol.Grpc], api.Ports.Select(p => p.AppProtocol));

        var db = snapshot.FindServiceByKey("shop/db.shop.svc.cluster.local")!;
        Assert.Empty(db.Vips); // headless
        Assert.Empty(db.ToProto().Addresses);
    }

    [Fact]
    public void Pods_and_services_without_addresses_get_stable_loopback_addresses()
    {
        IReadOnlyList<Resource> config = [Pod("ns", "a"), Pod("ns", "b", podIP: "10.0.0.7"), Service("ns", "s", [("app", "a")], [Port(80)])];
        var snapshot = MeshBuilder.Build(config);
        var assignment = LoopbackAddressAllocator.AssignAll(config);

        var a = snapshot.PodAddress("ns", "a")!;
        Assert.Equal(127, a.GetAddressBytes()[0]);
        Assert.InRange(a.GetAddressBytes()[1], 1, 127);
        Assert.Equal(assignment.PodAddress("ns", "a"), a); // what ambientctl computes without asking istiod
        Assert.Equal(IPAddress.Parse("10.0.0.7"), snapshot.PodAddress("ns", "b"));

        var vip = Assert.Single(snapshot.FindServiceByKey("ns/s.ns.svc.cluster.local")!.Vips);
        Assert.InRange(vip.GetAddressBytes()[1], 128, 254);
        Assert.Equal(assignment.ServiceVip("ns", "s"), vip);
        Assert.Equal(IPAddress.Parse("127.0.1.1"), snapshot.NodeAddress("node-a"));
    }

    [Fact]
    public void Node_queries_answer_for_the_ca_and_the_node_proxy()
    {
        var snapshot = MeshBuilder.Build(
        [
            Pod("shop", "a", serviceAccount: "cart", node: "node-1"),
            Pod("shop", "b", node: "node-1"),
            Pod("bank", "c", serviceAccount: "cart", node: "node-2"),
        ]);

        Assert.True(snapshot.HasPodOnNode("node-1", "shop", "cart"));
        Assert.True(snapshot.HasPodOnNode("node-1", "shop", "default"));
        Assert.False(snapshot.HasPodOnNode("node-1", "bank", "cart"));
        Assert.False(snapshot.HasPodOnNode("node-3", "shop", "cart"));
        Assert.Equal(["a", "b"], snapshot.WorkloadsOnNode("node-1").Select(w => w.Name));
        Assert.Empty(snapshot.WorkloadsOnNode("nowhere"));
        Assert.Equal(IPAddress.Parse("127.0.1.1"), snapshot.NodeAddress("node-1"));
        Assert.Equal(IPAddress.Parse("127.0.1.2"), snapshot.NodeAddress("node-2"));
    }

    [Fact]
    public void Bad_input_is_reported_not_fatal()
    {
        var snapshot = MeshBuilder.Build(
        [
            Pod("ns", "a"),
            Pod("ns", "a", node: "node-z"),            // duplicate
            Pod("ns", "b", podIP: "10.0.0.300"),        // not an IP
            Pod("ns", "c", podIP: "10.0.0.9"),
            Pod("ns", "d", podIP: "10.0.0.9"),          // address taken
            Service("ns", "ext", [], [Port(80)], type: "ExternalName"),
        ]);

        Assert.Equal(4, snapshot.Workloads.Length);
        Assert.Equal("node-a", snapshot.FindPod("ns", "a")!.Node); // first definition wins
        Assert.NotNull(snapshot.PodAddress("ns", "b"));             // falls back to a loopback address
        Assert.Equal(snapshot.FindPod("ns", "c"), snapshot.FindWorkloadByAddress(IPAddress.Parse("10.0.0.9")));
        Assert.Empty(snapshot.Services);
        var messages = snapshot.Problems.Select(p => p.ToString()).ToArray();
        Assert.Contains(messages, m => m.Contains("duplicate Pod 'ns/a'", StringComparison.Ordinal));
        Assert.Contains(messages, m => m.Contains("status.podIP: '10.0.0.300' is not an IP address", StringComparison.Ordinal));
        Assert.Contains(messages, m => m.Contains("address 10.0.0.9 of pod ns/d is already used by pod ns/c", StringComparison.Ordinal));
        Assert.Contains(messages, m => m.Contains("ExternalName service 'ns/ext' is not supported", StringComparison.Ordinal));
    }

    /// <summary>
    /// Input sorted by key (as the Kubernetes source gives it) is checked for duplicates without a map, by comparing
    /// neighbours in key order: that order must be the ordinal order of the Key strings.
    /// </summary>
    [Fact]
    public void Keys_compare_as_their_strings_do()
    {
        Resource[] resources =
        [
            Pod("a", "x"), Pod("a-b", "x"), Pod("a", "x-y"), Pod("a", "xy"), Pod("ab", ""), Pod("a", "x"),
            Service("a", "x", [], [Port(80)]), Namespace("a"), Namespace("a-b"),
            new PodResource("v1", Meta("a", "x"), Pod("a", "x").Source, "default", null, [], null) { Ready = false },
        ];
        foreach (var x in resources)
        {
            foreach (var y in resources)
            {
                Assert.Equal(Math.Sign(string.CompareOrdinal(x.Key, y.Key)), Math.Sign(MeshBuilder.CompareKeys(x, y)));
            }
        }
    }

    [Fact]
    public void Duplicates_in_key_sorted_input_are_reported()
    {
        List<Resource> config = [Namespace("ns"), Pod("ns", "a"), Pod("ns", "a", node: "node-z"), Pod("ns", "b"), Service("ns", "s", [], [Port(80)])];
        config.Sort((x, y) => string.CompareOrdinal(x.Key, y.Key));

        var snapshot = MeshBuilder.Build(config);

        Assert.Equal(2, snapshot.Workloads.Length);
        Assert.Contains(snapshot.Problems, p => p.ToString().Contains("duplicate Pod 'ns/a'", StringComparison.Ordinal));
    }

    [Theory]
    [InlineData("http", AppProtocol.Http11)]
    [InlineData("HTTP", AppProtocol.Http11)]
    [InlineData("http2", AppProtocol.Http2)]
    [InlineData("h2c", AppProtocol.Http2)]
    [InlineData("kubernetes.io/h2c", AppProtocol.Http2)]
    [InlineData("grpc", AppProtocol.Grpc)]
    [InlineData("tcp", AppProtocol.Tcp)]
    [InlineData("tls", AppProtocol.Tls)]
    [InlineData("mongo", AppProtocol.Unknown)]
    [InlineData("", AppProtocol.Unknown)]
    [InlineData(null, AppProtocol.Unknown)]
    public void App_protocol_parsing(string? text, AppProtocol expected) => Assert.Equal(expected, AppProtocols.Parse(text));
}

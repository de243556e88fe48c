using Ambient.Core.Config;
using Ambient.Core.Model;
using Ambient.Core.Protos.Workload;
using Google.Protobuf;
using static Ambient.Core.Tests.Model.ConfigFixtures;

namespace Ambient.Core.Tests.Model;

/// <summary>
/// A build with the previous build's cache must give exactly what a build without it gives: each change below leaves the
/// pod record itself alone (the case the cache could get wrong) and checks the output moves with it.
/// </summary>
public class MeshBuildCacheTests
{
    private static List<Resource> Mesh() =>
    [
        AmbientNamespace("shop"),
        Namespace("bank"),
        Pod("shop", "web-0", [("app", "web")], podIP: "10.0.0.1", ports: new ContainerPort("http", 8080, "TCP")),
        Pod("shop", "web-1", [("app", "web"), ("tier", "front")], podIP: "10.0.0.2", ports: new ContainerPort("http", 8080, "TCP")),
        Pod("bank", "vault-0", [("app", "vault")], podIP: "10.0.1.1"),
        Service("shop", "web", [("app", "web")], [Port(80, 8080)], clusterIP: "10.96.0.1"),
        Service("bank", "vault", [("app", "vault")], [Port(443, 8443)], clusterIP: "10.96.0.2"),
    ];

    [Fact]
    public void Unchanged_pods_are_reused_and_the_snapshot_equals_an_uncached_build()
    {
        var cache = new MeshBuildCache();
        var config = Mesh();
        var first = MeshBuilder.Build(config, null, cache);
        Assert.Equal(0, cache.LastReused);

        var second = MeshBuilder.Build(config, null, cache);
        Assert.Equal(3, cache.LastReused);
        Assert.Same(first.FindPod("shop", "web-0"), second.FindPod("shop", "web-0"));
        AssertSameAsUncached(config, second);
    }

    [Fact]
    public void A_changed_pod_label_changes_the_workload()
    {
        var cache = new MeshBuildCache();
        var config = Mesh();
        MeshBuilder.Build(config, null, cache);
        Replace(config, "Pod/shop/web-0", p => ((PodResource)p).WithLabels(("app", "other"), ("version", "v2")));

        var next = MeshBuilder.Build(config, null, cache);

        var web0 = next.FindPod("shop", "web-0")!;
        Assert.Empty(web0.Services);
        Assert.Equal("v2", web0.CanonicalRevision);
        AssertSameAsUncached(config, next);
    }

    [Fact]
    public void A_changed_service_selector_changes_the_pods_it_selects()
    {
        var cache = new MeshBuildCache();
        var config = Mesh();
        var before = MeshBuilder.Build(config, null, cache);
        Assert.Single(before.FindPod("shop", "web-0")!.Services);
        Replace(config, "Service/shop/web", s => (ServiceResource)s with { Selector = Map(("app", "web"), ("tier", "front")) });

        var next = MeshBuilder.Build(config, null, cache);

        Assert.Empty(next.FindPod("shop", "web-0")!.Services);
        Assert.Single(next.FindPod("shop", "web-1")!.Services);
        AssertSameAsUncached(config, next);
    }

    [Fact]
    public void A_changed_service_port_or_a_new_service_changes_the_endpoints_ports()
    {
        var cache = new MeshBuildCache();
        var config = Mesh();
        MeshBuilder.Build(config, null, cache);
        Replace(config, "Service/shop/web", s => (ServiceResource)s with { Ports = [Port(80, 9090)] });
        config.Add(Service("shop", "web-all", [("app", "web")], [NamedTargetPort(81, "http")]));

        var next = MeshBuilder.Build(config, null, cache);

        var services = next.FindPod("shop", "web-0")!.Services;
        Assert.Equal(["shop/web-all.shop.svc.cluster.local", "shop/web.shop.svc.cluster.local"], services.Select(s => s.ServiceKey));
        Assert.Equal(9090, services[1].Ports[0].TargetPort);
        Assert.Equal(8080, services[0].Ports[0].TargetPort);
        AssertSameAsUncached(config, next);
    }

    [Fact]
    public void A_changed_namespace_label_changes_enrollment()
    {
        var cache = new MeshBuildCache();
        var config = Mesh();
        var before = MeshBuilder.Build(config, null, cache);
        Assert.Equal(TunnelProtocol.None, before.FindPod("bank", "vault-0")!.TunnelProtocol);
        Replace(config, "Namespace//bank", _ => AmbientNamespace("bank"));
        Replace(config, "Namespace//shop", _ => Namespace("shop"));

        var next = MeshBuilder.Build(config, null, cache);

        Assert.Equal(TunnelProtocol.Hbone, next.FindPod("bank", "vault-0")!.TunnelProtocol);
        Assert.Equal(TunnelProtocol.None, next.FindPod("shop", "web-0")!.TunnelProtocol);
        AssertSameAsUncached(config, next);
    }

    [Fact]
    public void Other_options_reuse_nothing()
    {
        var cache = new MeshBuildCache();
        var config = Mesh();
        MeshBuilder.Build(config, null, cache);

        var next = MeshBuilder.Build(config, new MeshOptions { ClusterId = "east", Network = "net-1" }, cache);

        Assert.Equal(0, cache.LastReused);
        Assert.Equal("net-1", next.FindPod("shop", "web-0")!.Network);
        Assert.Equal(next.ToProtos().Select(a => a.ToByteString()), MeshBuilder.Build(config, new MeshOptions { ClusterId = "east", Network = "net-1" }).ToProtos().Select(a => a.ToByteString()));
    }

    [Fact]
    public void A_pod_gone_and_back_is_built_again()
    {
        var cache = new MeshBuildCache();
        var config = Mesh();
        MeshBuilder.Build(config, null, cache);
        var without = new List<Resource>(config);
        without.RemoveAll(r => r.Key == "Pod/bank/vault-0");
        Assert.Null(MeshBuilder.Build(without, null, cache).FindPod("bank", "vault-0"));
        Assert.Equal(2, cache.LastReused);

        var back = MeshBuilder.Build(config, null, cache);

        Assert.Equal(2, cache.LastReused);
        Assert.NotNull(back.FindPod("bank", "vault-0"));
        AssertSameAsUncached(config, back);
    }

    [Fact]
    public void Services_selecting_a_pod_are_listed_by_key_whatever_label_their_selector_starts_with()
    {
        var snapshot = MeshBuilder.Build(
        [
            AmbientNamespace("shop"),
            Pod("shop", "many", [("app", "x"), ("tier", "y"), ("zone", "z")]),
            Pod("shop", "one", [("zone", "z")]),
            Service("shop", "b", [("tier", "y")], [Port(80)]),
            Service("shop", "a", [("app", "x"), ("zone", "z")], [Port(80)]),
            Service("shop", "c", [("app", "x"), ("tier", "other")], [Port(80)]),
            Service("shop", "d", [("zone", "z")], [Port(80)]),
            Service("shop", "e", [("version", "v1")], [Port(80)]),
        ]);

        Assert.Equal(["shop/a.shop.svc.cluster.local", "shop/b.shop.svc.cluster.local", "shop/d.shop.svc.cluster.local"],
            snapshot.FindPod("shop", "many")!.Services.Select(s => s.ServiceKey));
        Assert.Equal(["shop/d.shop.svc.cluster.local"], snapshot.FindPod("shop", "one")!.Services.Select(s => s.ServiceKey));
    }

    [Fact]
    public void A_readiness_or_label_change_reuses_the_addresses()
    {
        var cache = new MeshBuildCache();
        var config = Mesh();
        config.Add(Pod("shop", "web-2", [("app", "web")])); // an allocated (loopback) address, not an explicit one
        MeshBuilder.Build(config, null, cache);
        Assert.False(cache.LastAssignmentReused);

        Replace(config, "Pod/shop/web-0", p => (PodResource)p with { Ready = false });
        Replace(config, "Pod/shop/web-2", p => ((PodResource)p).WithLabels(("app", "other")));
        Replace(config, "Service/bank/vault", s => (ServiceResource)s with { Ports = [Port(8443)] });
        var next = MeshBuilder.Build(config, null, cache);

        Assert.True(cache.LastAssignmentReused);
        Assert.Equal(WorkloadStatus.Unhealthy, next.FindPod("shop", "web-0")!.Status);
        AssertSameAsUncached(config, next);
    }

    /// <summary>
    /// Every change that moves an address (or a node) must assign again: a build that wrongly reused the last assignment
    /// would publish the old address.
    /// </summary>
    [Theory]
    [InlineData("pod IP")]
    [InlineData("pod node")]
    [InlineData("service cluster IP")]
    [InlineData("service type")]
    [InlineData("pod renamed")]
    [InlineData("pod added")]
    [InlineData("pod removed")]
    [InlineData("waypoint added")]
    public void A_change_that_moves_addresses_assigns_again(string change)
    {
        var cache = new MeshBuildCache();
        var config = Mesh();
        config.Add(Pod("shop", "web-2", [("app", "web")]));
        MeshBuilder.Build(config, null, cache);
        switch (change)
        {
            case "pod IP": Replace(config, "Pod/shop/web-0", p => (PodResource)p with { PodIP = "10.0.0.9" }); break;
            case "pod node": Replace(config, "Pod/shop/web-2", p => (PodResource)p with { NodeName = "node-b" }); break;
            case "service cluster IP": Replace(config, "Service/shop/web", s => (ServiceResource)s with { ClusterIP = "10.96.0.9" }); break;
            case "service type": Replace(config, "Service/shop/web", s => (ServiceResource)s with { ClusterIP = null, Type = "ExternalName" }); break;
            case "pod renamed": Replace(config, "Pod/shop/web-2", p => (PodResource)p with { Metadata = Meta("shop", "web-3", ("app", "web")) }); break;
            case "pod added": config.Add(Pod("bank", "vault-1", [("app", "vault")])); break;
            case "pod removed": config.RemoveAll(r => r.Key == "Pod/shop/web-2"); break;
            case "waypoint added": config.Add(new GatewayResource("gateway.networking.k8s.io/v1", Meta("shop", "waypoint"), config[0].Source, GatewayResource.WaypointClass, [])); break;
        }

        var next = MeshBuilder.Build(config, null, cache);

        Assert.False(cache.LastAssignmentReused);
        AssertSameAsUncached(config, next);
        Assert.Equal(MeshBuilder.Build(config).NodeAddresses.OrderBy(n => n.Key), next.NodeAddresses.OrderBy(n => n.Key));
    }

    /// <summary>Generations as a cluster makes them, each built with the cache and compared with a build from scratch.</summary>
    [Fact]
    public void A_sequence_of_generations_builds_what_a_full_build_does_at_each_step()
    {
        var cache = new MeshBuildCache();
        var config = Mesh();
        for (var i = 0; i < 40; i++)
        {
            config.Add(Pod("shop", $"p-{i:D2}", [("app", i % 2 == 0 ? "web" : "other")], node: $"node-{i % 3}"));
        }
        Action<List<Resource>>[] steps =
        [
            c => Replace(c, "Pod/shop/p-03", p => (PodResource)p with { Ready = false }),
            c => Replace(c, "Pod/shop/p-03", p => (PodResource)p with { Ready = true }),
            c => Replace(c, "Pod/shop/p-04", p => ((PodResource)p).WithLabels(("app", "other"))),
            c => c.RemoveAll(r => r.Key == "Pod/shop/p-05"),
            c => c.Add(Pod("shop", "p-05", [("app", "web")], node: "node-9")),
            c => Replace(c, "Pod/shop/p-06", p => (PodResource)p with { PodIP = "10.0.0.66" }),
            c => Replace(c, "Service/shop/web", s => (ServiceResource)s with { ClusterIP = "10.96.0.77" }),
            c => Replace(c, "Pod/shop/p-07", p => (PodResource)p with { Ready = false }),
            c => Replace(c, "Namespace//shop", n => Namespace("shop")),
        ];
        MeshBuilder.Build(config, null, cache);
        var reused = 0;
        foreach (var step in steps)
        {
            step(config);
            var built = MeshBuilder.Build(config, null, cache);
            reused += cache.LastAssignmentReused ? 1 : 0;
            AssertSameAsUncached(config, built);
            Assert.Equal(MeshBuilder.Build(config).NodeAddresses.OrderBy(n => n.Key), built.NodeAddresses.OrderBy(n => n.Key));
        }
        Assert.Equal(5, reused); // the readiness, label and namespace steps
    }

    private static void Replace(List<Resource> config, string key, Func<Resource, Resource> change)
    {
        var i = config.FindIndex(r => r.Key == key);
        Assert.True(i >= 0, key);
        config[i] = change(config[i]);
    }

    // Byte-for-byte what the xDS server would send, plus the istiod-side fields the wire does not carry.
    private static void AssertSameAsUncached(List<Resource> config, MeshSnapshot cached)
    {
        var fresh = MeshBuilder.Build(config);
        Assert.Equal(fresh.ToProtos().Select(a => a.ToByteString()), cached.ToProtos().Select(a => a.ToByteString()));
        Assert.Equal(fresh.Workloads.Select(w => (w.Uid, w.Labels.Count, w.ContainerPorts.Length)),
            cached.Workloads.Select(w => (w.Uid, w.Labels.Count, w.ContainerPorts.Length)));
        Assert.Equal(fresh.Problems, cached.Problems);
    }
}

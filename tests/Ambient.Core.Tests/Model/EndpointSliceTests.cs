using System.Collections.Immutable;
using System.Net;
using Ambient.Core.Config;
using Ambient.Core.Model;
using Ambient.Core.Protos.Workload;
using Google.Protobuf;
using static Ambient.Core.Tests.Model.ConfigFixtures;

namespace Ambient.Core.Tests.Model;

/// <summary>
/// Services without a selector take their endpoints from EndpointSlices, as istiod's ambient index does; dual-stack pods
/// and Services publish both addresses.
/// </summary>
public class EndpointSliceTests
{
    private const string ExternalKey = "shop/external.shop.svc.cluster.local";

    private static EndpointSliceResource Slice(string ns, string name, string? service, EndpointSliceEndpoint[] endpoints,
        EndpointSlicePort[]? ports = null, string addressType = "IPv4")
    {
        (string, string)[] labels = service is null ? [] : [(EndpointSliceResource.ServiceNameLabel, service)];
        return new EndpointSliceResource("discovery.k8s.io/v1", Meta(ns, name, labels), new SourceLocation("EndpointSlice " + ns + "/" + name, 0),
            addressType, [.. endpoints], [.. ports ?? [new EndpointSlicePort("http", 9090, "TCP")]]);
    }

    private static EndpointSliceEndpoint Endpoint(string address, bool ready = true, string? pod = null) =>
        new([address], ready, pod is null ? null : new ObjectKeyRef("shop", pod));

    private static List<Resource> Mesh(params Resource[] extra) =>
    [
        AmbientNamespace("shop"),
        Pod("shop", "web-0", [("app", "web")], podIP: "10.0.0.1", ports: new ContainerPort("http", 8080, "TCP")),
        Pod("shop", "db-0", [("app", "db")], podIP: "10.0.0.2"),
        Service("shop", "web", [("app", "web")], [Port(80, 8080, name: "http")], clusterIP: "10.96.0.1"),
        // No selector: Kubernetes leaves its endpoints to whoever writes its EndpointSlices.
        Service("shop", "external", [], [Port(80, 0, name: "http"), Port(5432, 0, name: "sql")], clusterIP: "10.96.0.2"),
        .. extra,
    ];

    [Fact]
    public void A_slice_naming_a_pod_makes_it_an_endpoint_of_the_selectorless_service_with_the_slices_port()
    {
        var snapshot = MeshBuilder.Build(Mesh(Slice("shop", "external-abc", "external", [Endpoint("10.0.0.2", pod: "db-0")])));

        var db = snapshot.FindPod("shop", "db-0")!;
        var entry = Assert.Single(db.Services);
        Assert.Equal(ExternalKey, entry.ServiceKey);
        // The slice port "http" is the Service port named http (80); 9090 is where the endpoint listens.
        Assert.Equal([new PortMapping(80, 9090, AppProtocol.Unknown)], entry.Ports);
        Assert.Equal(9090u, db.ToProto().Services[ExternalKey].Ports[0].TargetPort);
        Assert.Empty(snapshot.FindPod("shop", "web-0")!.Services.Where(s => s.ServiceKey == ExternalKey));
    }

    [Fact]
    public void An_endpoint_without_a_target_ref_at_a_pods_address_is_that_pod()
    {
        var snapshot = MeshBuilder.Build(Mesh(Slice("shop", "external-abc", "external", [Endpoint("10.0.0.2")])));

        Assert.Equal(ExternalKey, Assert.Single(snapshot.FindPod("shop", "db-0")!.Services).ServiceKey);
        Assert.Equal(2, snapshot.Workloads.Length); // no second workload at the pod's address
    }

    [Fact]
    public void An_address_of_no_pod_becomes_a_workload_of_its_own_and_a_not_ready_one_is_unhealthy()
    {
        var snapshot = MeshBuilder.Build(Mesh(Slice("shop", "external-abc", "external",
            [Endpoint("192.0.2.10"), Endpoint("192.0.2.11", ready: false)],
            [new EndpointSlicePort("http", 8080, "TCP"), new EndpointSlicePort("sql", 5432, "TCP"), new EndpointSlicePort("dns", 53, "UDP")])));

        var ready = snapshot.Workloads.Single(w => w.Uid == "Kubernetes/discovery.k8s.io/EndpointSlice/shop/external-abc/192.0.2.10");
        Assert.Equal([IPAddress.Parse("192.0.2.10")], ready.Addresses);
        Assert.Equal((WorkloadStatus.Healthy, TunnelProtocol.None, "external-abc"), (ready.Status, ready.TunnelProtocol, ready.Name));
        Assert.Equal([new PortMapping(80, 8080, AppProtocol.Unknown), new PortMapping(5432, 5432, AppProtocol.Unknown)],
            Assert.Single(ready.Services).Ports);
        var notReady = snapshot.Workloads.Single(w => w.Uid == "Kubernetes/discovery.k8s.io/EndpointSlice/shop/external-abc/192.0.2.11");
        Assert.Equal(WorkloadStatus.Unhealthy, notReady.Status);
        // The service's endpoints are what a ztunnel load-balances over.
        Assert.Equal(2, snapshot.EndpointsOf(snapshot.FindServiceByKey(ExternalKey)!).Length);
        Assert.Same(ready, snapshot.FindWorkloadByAddress(IPAddress.Parse("192.0.2.10")));
    }

    [Fact]
    public void Slices_of_a_service_with_a_selector_of_no_service_or_of_fqdns_are_ignored()
    {
        var snapshot = MeshBuilder.Build(Mesh(
            Slice("shop", "web-abc", "web", [Endpoint("192.0.2.20"), Endpoint("10.0.0.2", pod: "db-0")]),
            Slice("shop", "loose", null, [Endpoint("192.0.2.21")]),
            Slice("shop", "gone", "missing", [Endpoint("192.0.2.22")]),
            Slice("shop", "names", "external", [Endpoint("db.example.com")], addressType: "FQDN")));

        Assert.Equal(["Kubernetes//Pod/shop/db-0", "Kubernetes//Pod/shop/web-0"], snapshot.Workloads.Select(w => w.Uid));
        Assert.Empty(snapshot.FindPod("shop", "db-0")!.Services);
        Assert.Empty(snapshot.Problems);
    }

    [Fact]
    public void A_changed_or_deleted_slice_changes_the_cached_pod_workload()
    {
        var cache = new MeshBuildCache();
        var config = Mesh(Slice("shop", "external-abc", "external", [Endpoint("10.0.0.2", pod: "db-0")]));
        var first = MeshBuilder.Build(config, null, cache);
        Assert.Single(first.FindPod("shop", "db-0")!.Services);

        // The pods and Services are the same records: only the slice moves from db-0 to web-0.
        var i = config.FindIndex(r => r is EndpointSliceResource);
        config[i] = Slice("shop", "external-abc", "external", [Endpoint("10.0.0.1", pod: "web-0")]);
        var second = MeshBuilder.Build(config, null, cache);
        Assert.Equal(2, cache.LastReused);
        Assert.Empty(second.FindPod("shop", "db-0")!.Services);
        Assert.Contains(second.FindPod("shop", "web-0")!.Services, s => s.ServiceKey == ExternalKey);
        AssertSameAsUncached(config, second);

        config.RemoveAt(i);
        var third = MeshBuilder.Build(config, null, cache);
        Assert.DoesNotContain(third.FindPod("shop", "web-0")!.Services, s => s.ServiceKey == ExternalKey);
        AssertSameAsUncached(config, third);
    }

    [Fact]
    public void Dual_stack_pods_and_services_publish_both_addresses_in_xds()
    {
        var config = Mesh();
        var i = config.FindIndex(r => r.Key == "Pod/shop/web-0");
        config[i] = ((PodResource)config[i]) with { SecondaryPodIPs = ["fd00:10::1"] };
        var j = config.FindIndex(r => r.Key == "Service/shop/web");
        config[j] = ((ServiceResource)config[j]) with { SecondaryClusterIPs = ["fd00:96::1"] };

        var snapshot = MeshBuilder.Build(config);

        var web0 = snapshot.FindPod("shop", "web-0")!;
        Assert.Equal([IPAddress.Parse("10.0.0.1"), IPAddress.Parse("fd00:10::1")], web0.Addresses);
        Assert.Equal([IPAddress.Parse("10.0.0.1").GetAddressBytes(), IPAddress.Parse("fd00:10::1").GetAddressBytes()],
            web0.ToProto().Addresses.Select(a => a.ToByteArray()));
        var web = snapshot.FindServiceByKey("shop/web.shop.svc.cluster.local")!;
        Assert.Equal([IPAddress.Parse("10.96.0.1"), IPAddress.Parse("fd00:96::1")], web.Vips);
        Assert.Equal(2, web.ToProto().Addresses.Count);
        Assert.Same(web0, snapshot.FindWorkloadByAddress(IPAddress.Parse("fd00:10::1")));

        // What a ztunnel does with it: both addresses survive the round trip and find the same workload and service.
        var received = MeshSnapshot.FromProtos(snapshot.ToProtos());
        Assert.Equal(2, received.FindPod("shop", "web-0")!.Addresses.Length);
        Assert.Equal("web", received.FindServiceByVip(IPAddress.Parse("fd00:96::1"))!.Name);
    }

    private static void AssertSameAsUncached(List<Resource> config, MeshSnapshot cached)
    {
        var fresh = MeshBuilder.Build(config);
        Assert.Equal(fresh.ToProtos().Select(a => a.ToByteString()), cached.ToProtos().Select(a => a.ToByteString()));
    }
}

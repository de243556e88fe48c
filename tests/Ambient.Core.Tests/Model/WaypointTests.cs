using System.Net;
using Ambient.Core.Config;
using Ambient.Core.Model;
using Ambient.Core.Protos.Workload;
using static Ambient.Core.Tests.Model.ConfigFixtures;
using static Ambient.TestCommon.GatewayApiFixtures;

namespace Ambient.Core.Tests.Model;

/// <summary>Waypoint Gateways in the model: the pod and Service they become, and who uses them (istio.io/use-waypoint).</summary>
public class WaypointTests
{
    private const string Domain = "cluster.local";

    private static string? WaypointName(GatewayInfo? g) => g?.Host is { } h ? h.Hostname[..h.Hostname.IndexOf('.', StringComparison.Ordinal)] : null;

    [Theory]
    // Namespace, Service and Pod labels; the waypoint "wp"'s istio.io/waypoint-for (null = default service); "all" is a
    // second waypoint for all traffic. Expected: the Service's waypoint, the pod's waypoint.
    [InlineData("wp", null, null, null, "wp", null)]          // default: services only
    [InlineData("wp", null, null, "service", "wp", null)]
    [InlineData("wp", null, null, "workload", null, "wp")]
    [InlineData("wp", null, null, "all", "wp", "wp")]
    [InlineData("wp", null, null, "none", null, null)]
    [InlineData("wp", "all", null, "service", "all", null)]     // the Service's own label wins over the namespace's
    [InlineData("wp", null, "all", "service", "wp", "all")]     // the Pod's own label wins over the namespace's
    [InlineData("wp", "none", null, "all", null, "wp")]         // none opts the Service out; its pods are not affected
    [InlineData("wp", null, "none", "all", "wp", null)]         // none opts the Pod out
    [InlineData(null, "wp", null, "all", "wp", null)]           // a Service's label never reaches its endpoints (as Istio)
    [InlineData(null, null, "wp", "all", null, "wp")]
    [InlineData("wp", "missing", null, "all", null, "wp")]      // a label naming no waypoint: no fallback to the namespace's
    [InlineData("missing", null, null, "all", null, null)]
    [InlineData(null, "wp", null, "workload", null, null)]      // a workload-only waypoint takes no Service
    [InlineData(null, null, "wp", "service", null, null)]      // a service-only waypoint takes no pod
    public void Use_waypoint_label_precedence_follows_istio(
        string? namespaceLabel, string? serviceLabel, string? podLabel, string? waypointFor, string? expectedService, string? expectedPod)
    {
        var snapshot = MeshBuilder.Build([
            namespaceLabel is null ? AmbientNamespace("shop") : Namespace("shop", ("istio.io/dataplane-mode", "ambient"), ("istio.io/use-waypoint", namespaceLabel)),
            Waypoint("shop", "wp", waypointFor),
            Waypoint("shop", "all", "all"),
            Labelled(Service("shop", "echo", [("app", "echo")], [Port(80, 8080)]), serviceLabel),
            Pod("shop", "echo-0", podLabel is null ? [("app", "echo")] : [("app", "echo"), ("istio.io/use-waypoint", podLabel)]),
        ]);

        var service = snapshot.FindServiceByHostname("echo.shop.svc.cluster.local")!;
        Assert.Equal(expectedService, WaypointName(service.Waypoint));
        Assert.Equal(expectedPod, WaypointName(snapshot.FindPod("shop", "echo-0")!.Waypoint));
        if (service.Waypoint is { } g)
        {
            Assert.Equal(new NamespacedHost("shop", $"{expectedService}.shop.svc.{Domain}"), g.Host);
            Assert.Equal(15008, g.HboneMtlsPort);
        }
        if (namespaceLabel == "missing" || serviceLabel == "missing")
        {
            Assert.Contains(snapshot.Problems, p => p.Message.Contains("names waypoint shop/missing, which does not exist", StringComparison.Ordinal));
        }
    }

    [Fact]
    public void When_the_source_deploys_waypoints_the_clusters_pod_and_service_are_the_waypoint()
    {
        // Kubernetes mode: istiod-lite's Deployment runs the pod (named by its ReplicaSet) and the Service has a ClusterIP.
        var deployed = MeshOptions.Default with { WaypointsDeployed = true };
        Resource[] config = [
            AmbientNamespace("shop"),
            Waypoint("shop", "wp", "all"),
            Service("shop", "wp", [("gateway.networking.k8s.io/gateway-name", "wp")], [Port(15008)], clusterIP: "10.96.0.20") with
            {
                Metadata = Meta("shop", "wp", ("gateway.istio.io/managed", "istio.io-mesh-controller"), ("gateway.networking.k8s.io/gateway-name", "wp")),
            },
            Pod("shop", "wp-7d9f8b6c5d-x2x4z", [("gateway.networking.k8s.io/gateway-name", "wp"), ("istio.io/dataplane-mode", "none")],
                serviceAccount: "wp", node: "node-b", podIP: "10.244.2.9"),
            Labelled(Service("shop", "echo", [("app", "echo")], [Port(80, 8080)]), "wp"),
            Pod("shop", "echo-0", [("app", "echo")], podIP: "10.244.1.5"),
        ];
        var snapshot = MeshBuilder.Build(config, deployed);

        var w = snapshot.FindWaypoint("shop", "wp")!;
        Assert.Equal(("wp-7d9f8b6c5d-x2x4z", "node-b", IPAddress.Parse("10.244.2.9")), (w.PodName, w.Node, w.Address));
        Assert.Same(w, snapshot.FindWaypointByPod("shop", "wp-7d9f8b6c5d-x2x4z"));
        // No invented pod: the waypoint's only workload is the cluster's, named after its Deployment, with its identity.
        Assert.Null(snapshot.FindPod("shop", WaypointPlacement.PodNameFor("shop", "wp")));
        var pod = snapshot.FindPod("shop", "wp-7d9f8b6c5d-x2x4z")!;
        Assert.Equal(("wp", "wp", WorkloadType.Deployment), (pod.ServiceAccount, pod.WorkloadName, pod.WorkloadType));
        Assert.Null(pod.Waypoint);
        // The Service is the cluster's, with its ClusterIP, selecting that pod; it gets no waypoint of its own.
        var service = snapshot.FindServiceByHostname("wp.shop.svc.cluster.local")!;
        Assert.Equal([IPAddress.Parse("10.96.0.20")], service.Vips);
        Assert.Null(service.Waypoint);
        Assert.Equal("wp", WaypointName(snapshot.FindServiceByHostname("echo.shop.svc.cluster.local")!.Waypoint));
        Assert.Empty(snapshot.Problems);

        // Until the cluster runs the pod the waypoint has no address (its Gateway is not Programmed), and nothing is invented.
        var pending = MeshBuilder.Build([.. config.Where(r => r.Metadata.Name != "wp-7d9f8b6c5d-x2x4z")], deployed);
        Assert.Null(pending.FindWaypoint("shop", "wp")!.Address);
        Assert.DoesNotContain(pending.Workloads, x => x.Name.StartsWith("wp", StringComparison.Ordinal));
        Assert.Contains(pending.Routing.Gateways.Single().Conditions, c => c.Type == "Programmed" && !c.Status);
    }

    [Fact]
    public void A_missing_waypoint_named_by_a_namespace_is_reported_once()
    {
        var snapshot = MeshBuilder.Build([
            Namespace("shop", ("istio.io/use-waypoint", "ghost")),
            Service("shop", "a", [("app", "a")], [Port(80)]),
            Service("shop", "b", [("app", "b")], [Port(80)]),
        ]);

        var problem = Assert.Single(snapshot.Problems);
        Assert.Equal("metadata.labels[istio.io/use-waypoint]", problem.Field);
        Assert.Contains("Namespace shop names waypoint shop/ghost", problem.Message, StringComparison.Ordinal);
    }

    [Theory]
    [InlineData("All", true)]
    [InlineData("Same", false)]
    public void A_waypoint_in_another_namespace_is_used_when_its_listener_allows_it(string allowedFrom, bool used)
    {
        var snapshot = MeshBuilder.Build([
            AmbientNamespace("infra"),
            Namespace("shop", ("istio.io/use-waypoint", "egress"), ("istio.io/use-waypoint-namespace", "infra")),
            Waypoint("infra", "egress", "all", allowedFrom: allowedFrom),
            Service("shop", "echo", [("app", "echo")], [Port(80)]),
            Pod("shop", "echo-0", [("app", "echo"), ("istio.io/use-waypoint", "egress"), ("istio.io/use-waypoint-namespace", "infra")]),
        ]);

        var expected = used ? new GatewayInfo(new NamespacedHost("infra", "egress.infra.svc.cluster.local"), "", null, 15008) : null;
        Assert.Equal(expected, snapshot.FindServiceByHostname("echo.shop.svc.cluster.local")!.Waypoint);
        Assert.Equal(expected, snapshot.FindPod("shop", "echo-0")!.Waypoint);
        Assert.Equal(used ? 0 : 2, snapshot.Problems.Count(p => p.Message.Contains("does not allow namespace shop", StringComparison.Ordinal)));
    }

    [Fact]
    public void A_waypoint_gateway_becomes_a_pod_and_a_service_as_istio_deploys_it()
    {
        var resources = new List<Resource>
        {
            Namespace("shop", ("istio.io/dataplane-mode", "ambient"), ("istio.io/use-waypoint", "waypoint")),
            Waypoint("shop", "waypoint", "all"),
            Pod("shop", "b", node: "node-b"),
            Pod("shop", "a", node: "node-a"),
        };
        var snapshot = MeshBuilder.Build(resources);

        var waypoint = Assert.Single(snapshot.Waypoints);
        Assert.Matches("^waypoint-[bcdfghjklmnpqrstvwxz2456789]{10}-[bcdfghjklmnpqrstvwxz2456789]{5}$", waypoint.PodName);
        Assert.Equal("node-a", waypoint.Node); // no annotation: the first node by name
        var pod = snapshot.FindPod("shop", waypoint.PodName)!;
        Assert.Equal("waypoint", pod.ServiceAccount);
        Assert.Equal("spiffe://cluster.local/ns/shop/sa/waypoint", pod.Identity);
        Assert.Equal("node-a", pod.Node);
        Assert.Equal(TunnelProtocol.None, pod.TunnelProtocol); // istio.io/dataplane-mode: none, not captured by ztunnel
        Assert.Equal("waypoint", pod.WorkloadName);
        Assert.Equal(WorkloadType.Deployment, pod.WorkloadType);
        Assert.Equal("waypoint", pod.CanonicalName);
        Assert.Equal("waypoint", pod.Labels["gateway.networking.k8s.io/gateway-name"]);
        Assert.Null(pod.Waypoint); // the namespace's waypoint is not its own waypoint
        Assert.Equal(waypoint.Address, Assert.Single(pod.Addresses));
        Assert.True(LoopbackAddressAllocator.TryToUInt32(waypoint.Address!, out var v4) && (v4 >> 16 & 0xff) is >= 1 and <= 127);
        Assert.True(snapshot.HasPodOnNode("node-a", "shop", "waypoint"));
        Assert.False(snapshot.HasPodOnNode("node-b", "shop", "waypoint"));

        var service = snapshot.FindServiceByHostname("waypoint.shop.svc.cluster.local")!;
        Assert.Null(service.Waypoint);
        Assert.Equal(15008, Assert.Single(service.Ports).Port);
        Assert.Single(service.Vips);
        Assert.Equal(pod.Uid, Assert.Single(snapshot.EndpointsOf(service)).Workload.Uid);
        Assert.Equal(service.Key, waypoint.Service.ToString());

        // ambientctl computes the same placement and address from the config alone.
        var assignment = LoopbackAddressAllocator.AssignAll(resources);
        var placement = Assert.Single(assignment.Waypoints);
        Assert.Equal((waypoint.PodName, "node-a"), (placement.PodName, placement.Node));
        Assert.Equal(waypoint.Address, assignment.PodAddress("shop", placement.PodName));
        Assert.Empty(snapshot.Problems);
    }

    [Fact]
    public void The_node_annotation_places_the_waypoint_and_the_node_gets_an_address()
    {
        var snapshot = MeshBuilder.Build([AmbientNamespace("shop"), Waypoint("shop", node: "node-z"), Pod("shop", "a", node: "node-a")]);

        Assert.Equal("node-z", Assert.Single(snapshot.Waypoints).Node);
        Assert.NotNull(snapshot.NodeAddress("node-z"));
        Assert.True(snapshot.HasPodOnNode("node-z", "shop", "waypoint"));
    }

    [Fact]
    public void A_declared_service_with_the_waypoints_name_is_reported_and_ignored()
    {
        var snapshot = MeshBuilder.Build([AmbientNamespace("shop"), Waypoint("shop"), Service("shop", "waypoint", [("app", "x")], [Port(80)]), Pod("shop", "a")]);

        var service = snapshot.FindServiceByHostname("waypoint.shop.svc.cluster.local")!;
        Assert.Equal(15008, Assert.Single(service.Ports).Port);
        Assert.Contains(snapshot.Problems, p => p.Message.Contains("has the name of a waypoint's Service", StringComparison.Ordinal));
    }

    [Fact]
    public void Gateways_of_other_classes_are_not_waypoints_and_bad_waypoint_for_is_reported()
    {
        var snapshot = MeshBuilder.Build([AmbientNamespace("shop"), Waypoint("shop", "ingress", gatewayClass: "istio"),
            Waypoint("shop", "odd", "everything"), Pod("shop", "a")]);

        Assert.Equal("odd", Assert.Single(snapshot.Waypoints).Name);
        Assert.Contains(snapshot.Problems, p => p.Field == "metadata.labels[istio.io/waypoint-for]" && p.Message.Contains("'everything'", StringComparison.Ordinal));
    }

    private static ServiceResource Labelled(ServiceResource service, string? useWaypoint) =>
        useWaypoint is null ? service : service with { Metadata = service.Metadata with { Labels = Map(("istio.io/use-waypoint", useWaypoint)) } };
}

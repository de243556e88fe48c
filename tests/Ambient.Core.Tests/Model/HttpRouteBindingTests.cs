using Ambient.Core.Config;
using Ambient.Core.Model;
using Ambient.Core.Protos.Waypoint;
using static Ambient.Core.Tests.Model.ConfigFixtures;
using static Ambient.TestCommon.GatewayApiFixtures;

namespace Ambient.Core.Tests.Model;

/// <summary>HTTPRoutes bound to waypoints (GAMMA: a Service parent, or the waypoint's Gateway) and their status conditions.</summary>
public class HttpRouteBindingTests
{
    // Namespace shop uses waypoint "waypoint" for its Services; "plain" opts out; "other" is in namespace "bank".
    private static List<Resource> Mesh(params Resource[] more) =>
    [
        Namespace("shop", ("istio.io/dataplane-mode", "ambient"), ("istio.io/use-waypoint", "waypoint")),
        AmbientNamespace("bank"),
        Waypoint("shop"),
        Service("shop", "echo", [("app", "echo")], [Port(80, 8080, name: "http"), Port(9090, appProtocol: "grpc"), Port(5432, name: "tcp-db"),
            Port(8081, appProtocol: "kubernetes.io/h2c"), Port(8082, name: "http2-x"), Port(8083, appProtocol: "http")]),
        Service("shop", "echo-v2", [("app", "echo"), ("version", "v2")], [Port(80, 8080)]),
        Service("shop", "plain", [("app", "plain")], [Port(80)]) with
        {
            Metadata = Meta("shop", "plain", ("istio.io/use-waypoint", "none")),
        },
        Service("bank", "other", [("app", "other")], [Port(80)]),
        Pod("shop", "echo-0", [("app", "echo")]),
        .. more,
    ];

    private static (StatusCondition Accepted, StatusCondition ResolvedRefs) Conditions(MeshSnapshot snapshot, string route, int parent = 0)
    {
        var status = snapshot.Routing.Routes.Single(r => r.Namespace + "/" + r.Name == route);
        var conditions = status.Parents[parent].Conditions;
        return (conditions.Single(c => c.Type == "Accepted"), conditions.Single(c => c.Type == "ResolvedRefs"));
    }

    private static void AssertCondition(StatusCondition condition, bool status, string reason)
    {
        Assert.True(condition.Status == status && condition.Reason == reason, $"expected {condition.Type}={status}/{reason}, got {condition}");
    }

    [Fact]
    public void A_route_on_a_service_with_a_waypoint_is_accepted_and_sent_to_that_waypoint_with_the_service_protocols()
    {
        var snapshot = MeshBuilder.Build(Mesh(Route("shop", "split", [ServiceParent("echo", port: 80)], Backend("echo", 80), Backend("echo-v2", 80))));

        var (accepted, refs) = Conditions(snapshot, "shop/split");
        AssertCondition(accepted, true, "Accepted");
        AssertCondition(refs, true, "ResolvedRefs");
        var sent = snapshot.Routing.For("shop/waypoint");
        var route = Assert.Single(sent.Routes);
        Assert.Equal(("shop", "split"), (route.Namespace, route.Name));
        Assert.All(route.Rules[0].BackendRefs, b => Assert.Equal(("shop", ""), (b.BackendRef.Namespace, b.InvalidReason)));

        // Every Service the waypoint serves (not the opted-out one, not the waypoint's own), with each port's protocol.
        Assert.Equal(["shop/echo-v2.shop.svc.cluster.local", "shop/echo.shop.svc.cluster.local"],
            sent.Protocols.Select(p => p.Namespace + "/" + p.Hostname).Order(StringComparer.Ordinal));
        var echo = sent.Protocols.Single(p => p.Hostname.StartsWith("echo.", StringComparison.Ordinal));
        Assert.Equal(
            [(80u, PortAppProtocol.Http), (9090u, PortAppProtocol.Grpc), (5432u, PortAppProtocol.Tcp), (8081u, PortAppProtocol.Http2),
                (8082u, PortAppProtocol.Http2), (8083u, PortAppProtocol.Http)],
            echo.Ports.Select(p => (p.ServicePort, p.Protocol)));
    }

    [Theory]
    [InlineData("missing", "", "Service", "BackendNotFound")]
    [InlineData("other", "bank", "Service", "RefNotPermitted")] // no ReferenceGrant in bank
    [InlineData("echo", "", "ConfigMap", "InvalidKind")]
    public void Unresolved_backend_refs_are_marked_for_the_waypoint_and_in_resolved_refs(string name, string ns, string kind, string reason)
    {
        var snapshot = MeshBuilder.Build(Mesh(Route("shop", "r", [ServiceParent("echo")], Backend("echo", 80), Backend(name, 80, ns, kind))));

        var (accepted, refs) = Conditions(snapshot, "shop/r");
        AssertCondition(accepted, true, "Accepted"); // an unresolved backend does not detach the route
        AssertCondition(refs, false, reason);
        var backends = Assert.Single(snapshot.Routing.For("shop/waypoint").Routes).Rules[0].BackendRefs;
        Assert.Equal(["", reason], backends.Select(b => b.InvalidReason));
    }

    public static TheoryData<string, ReferenceGrantResource[], string> CrossNamespaceGrants => new()
    {
        { "a grant for the Service", [Grant("bank", "g", "shop", "other")], "" },
        { "a grant for every Service", [Grant("bank", "g", "shop")], "" },
        { "one matching grant among others", [Grant("bank", "a", "elsewhere"), Grant("bank", "b", "shop", "other")], "" },
        { "no grant", [], "RefNotPermitted" },
        { "a grant trusting another namespace", [Grant("bank", "g", "elsewhere", "other")], "RefNotPermitted" },
        { "a grant for another Service", [Grant("bank", "g", "shop", "not-the-service")], "RefNotPermitted" },
        { "a grant in the route's namespace, not the target's", [Grant("shop", "g", "shop", "other")], "RefNotPermitted" },
        { "a grant trusting another kind", [Grant("bank", "g", "shop", "other", fromKind: "GRPCRoute")], "RefNotPermitted" },
        { "a grant to another kind", [Grant("bank", "g", "shop", "other", toKind: "Secret")], "RefNotPermitted" },
    };

    [Theory]
    [MemberData(nameof(CrossNamespaceGrants))]
    public void A_cross_namespace_backend_ref_needs_a_reference_grant_in_the_target_namespace(string _, ReferenceGrantResource[] grants, string reason)
    {
        var snapshot = MeshBuilder.Build(Mesh([Route("shop", "r", [ServiceParent("echo")], Backend("echo", 80), Backend("other", 80, "bank")), .. grants]));

        var (accepted, refs) = Conditions(snapshot, "shop/r");
        AssertCondition(accepted, true, "Accepted");
        AssertCondition(refs, reason.Length == 0, reason.Length == 0 ? "ResolvedRefs" : reason);
        var backends = Assert.Single(snapshot.Routing.For("shop/waypoint").Routes).Rules[0].BackendRefs;
        Assert.Equal(["", reason], backends.Select(b => b.InvalidReason));
        Assert.Equal(("bank", "other"), (backends[1].BackendRef.Namespace, backends[1].BackendRef.Name));
    }

    [Theory]
    [InlineData(true, "")]
    [InlineData(false, "RefNotPermitted")]
    public void A_cross_namespace_mirror_needs_a_reference_grant_too(bool granted, string reason)
    {
        var route = Route("shop", "r", [ServiceParent("echo")], Backend("echo", 80));
        route.Spec.Rules[0].Filters.Add(new HTTPRouteFilter
        {
            Type = HTTPRouteFilterType.RequestMirror,
            RequestMirror = new HTTPRequestMirrorFilter { BackendRef = Backend("other", 80, "bank") },
        });
        Resource[] grants = granted ? [Grant("bank", "g", "shop", "other")] : [];
        var snapshot = MeshBuilder.Build(Mesh([route, .. grants]));

        AssertCondition(Conditions(snapshot, "shop/r").ResolvedRefs, granted, granted ? "ResolvedRefs" : reason);
        var sent = Assert.Single(snapshot.Routing.For("shop/waypoint").Routes).Rules[0].Filters[0].RequestMirror;
        Assert.Equal(reason, sent.InvalidReason);
    }

    [Fact]
    public void Adding_or_removing_a_grant_rebinds_the_route()
    {
        var route = Route("shop", "r", [ServiceParent("echo")], Backend("other", 80, "bank"));
        var without = MeshBuilder.Build(Mesh(route));
        var with = MeshBuilder.Build(Mesh(route, Grant("bank", "g", "shop", "other")));

        AssertCondition(Conditions(without, "shop/r").ResolvedRefs, false, "RefNotPermitted");
        AssertCondition(Conditions(with, "shop/r").ResolvedRefs, true, "ResolvedRefs");
        // What the waypoint is sent differs, so istiod pushes the change.
        Assert.NotEqual(Assert.Single(without.Routing.For("shop/waypoint").Routes), Assert.Single(with.Routing.For("shop/waypoint").Routes));
    }

    [Theory]
    [InlineData("ghost", 0u, "", "NoMatchingParent")]                   // no such Service
    [InlineData("echo", 81u, "", "NoMatchingParent")]                  // no such port
    [InlineData("plain", 0u, "", "NoMatchingParent")]                  // the Service has no waypoint
    [InlineData("other", 0u, "bank", "NoMatchingParent")]              // a consumer route to a Service without a waypoint
    public void Service_parents_that_no_waypoint_serves_are_not_accepted(string service, uint port, string ns, string reason)
    {
        var snapshot = MeshBuilder.Build(Mesh(Route("shop", "r", [ServiceParent(service, port, ns)], Backend("echo", 80))));

        AssertCondition(Conditions(snapshot, "shop/r").Accepted, false, reason);
        Assert.Empty(snapshot.Routing.For("shop/waypoint").Routes);
    }

    // GEP-1294 "Namespace boundaries": a route whose Service parent is in another namespace is a consumer route. It is
    // accepted (no NotAllowedByListeners) and sent to the waypoint serving that Service, which applies it only to
    // clients in the route's namespace.
    [Fact]
    public void A_consumer_route_is_accepted_and_sent_to_the_waypoint_of_the_service_in_the_other_namespace()
    {
        var snapshot = MeshBuilder.Build(Mesh(
            Route("bank", "consumer", [ServiceParent("echo", port: 80, ns: "shop")], Backend("echo", 80, "shop")),
            Route("shop", "producer", [ServiceParent("echo")], Backend("echo-v2", 80))));

        var (accepted, refs) = Conditions(snapshot, "bank/consumer");
        AssertCondition(accepted, true, "Accepted");
        Assert.Contains("consumer route", accepted.Message, StringComparison.Ordinal);
        AssertCondition(refs, true, "ResolvedRefs");
        var sent = snapshot.Routing.For("shop/waypoint").Routes;
        Assert.Equal(["bank/consumer", "shop/producer"], sent.Select(r => r.Namespace + "/" + r.Name).Order(StringComparer.Ordinal));
        var consumer = sent.Single(r => r.Namespace == "bank");
        Assert.Equal(("shop", "echo"), (consumer.ParentRefs[0].Namespace, consumer.ParentRefs[0].Name));
        Assert.Equal(("shop", ""), (consumer.Rules[0].BackendRefs[0].BackendRef.Namespace, consumer.Rules[0].BackendRefs[0].InvalidReason));
    }

    // GEP-1294 "Namespace boundaries": mesh routes augment Services rather than exposing them, and a ReferenceGrant is
    // needed only where a reference reaches further than the client could anyway. A consumer route's backendRef (or
    // mirror) to its own parent Service reaches exactly what its clients were calling (upstream MeshConsumerRoute sends
    // to its parent echo-v1 in the producer namespace with no grant); any other Service there still needs a grant, as
    // for producer routes.
    [Theory]
    [InlineData("echo", "")]
    [InlineData("echo-v2", "RefNotPermitted")]
    public void A_consumer_routes_backend_ref_to_its_parent_service_needs_no_grant_and_others_do(string backend, string reason)
    {
        var route = Route("bank", "consumer", [ServiceParent("echo", ns: "shop")], Backend(backend, 80, "shop"));
        route.Spec.Rules[0].Filters.Add(new HTTPRouteFilter
        {
            Type = HTTPRouteFilterType.RequestMirror,
            RequestMirror = new HTTPRequestMirrorFilter { BackendRef = Backend(backend, 80, "shop") },
        });
        var snapshot = MeshBuilder.Build(Mesh(route));

        AssertCondition(Conditions(snapshot, "bank/consumer").Accepted, true, "Accepted");
        AssertCondition(Conditions(snapshot, "bank/consumer").ResolvedRefs, reason.Length == 0, reason.Length == 0 ? "ResolvedRefs" : reason);
        var rule = Assert.Single(snapshot.Routing.For("shop/waypoint").Routes).Rules[0];
        Assert.Equal(reason, rule.BackendRefs[0].InvalidReason);
        Assert.Equal(reason, rule.Filters[0].RequestMirror.InvalidReason);
    }

    [Fact]
    public void A_consumer_route_to_another_service_in_the_producer_namespace_follows_its_reference_grant()
    {
        var snapshot = MeshBuilder.Build(Mesh(
            Route("bank", "consumer", [ServiceParent("echo", ns: "shop")], Backend("echo-v2", 80, "shop")),
            Grant("shop", "g", "bank", "echo-v2")));

        AssertCondition(Conditions(snapshot, "bank/consumer").ResolvedRefs, true, "ResolvedRefs");
        Assert.Equal("", Assert.Single(snapshot.Routing.For("shop/waypoint").Routes).Rules[0].BackendRefs[0].InvalidReason);
    }

    [Fact]
    public void A_gateway_parent_binds_to_its_waypoint_only_from_namespaces_its_listener_allows()
    {
        var snapshot = MeshBuilder.Build(Mesh(
            Route("shop", "mine", [GatewayParent("waypoint")], Backend("echo", 80)),
            Route("bank", "theirs", [GatewayParent("waypoint", "shop")], Backend("other", 80)),
            Route("shop", "wrong-section", [GatewayParent("waypoint", sectionName: "nope")], Backend("echo", 80)),
            Route("shop", "not-a-waypoint", [GatewayParent("ingress")], Backend("echo", 80))));

        AssertCondition(Conditions(snapshot, "shop/mine").Accepted, true, "Accepted");
        AssertCondition(Conditions(snapshot, "bank/theirs").Accepted, false, "NotAllowedByListeners");
        AssertCondition(Conditions(snapshot, "shop/wrong-section").Accepted, false, "NoMatchingParent");
        AssertCondition(Conditions(snapshot, "shop/not-a-waypoint").Accepted, false, "NoMatchingParent");
        Assert.Equal(["mine"], snapshot.Routing.For("shop/waypoint").Routes.Select(r => r.Name));
    }

    [Fact]
    public void A_route_with_a_filter_the_waypoint_does_not_implement_is_not_accepted_nor_sent()
    {
        var route = Route("shop", "ext", [ServiceParent("echo")], Backend("echo", 80));
        route.Spec.Rules[0].Filters.Add(new HTTPRouteFilter { Type = HTTPRouteFilterType.FilterUnspecified });
        var snapshot = MeshBuilder.Build(Mesh(route));

        AssertCondition(Conditions(snapshot, "shop/ext").Accepted, false, "UnsupportedValue");
        Assert.Empty(snapshot.Routing.For("shop/waypoint").Routes);
    }

    [Fact]
    public void Each_parent_gets_its_own_conditions_and_the_route_is_sent_once()
    {
        var snapshot = MeshBuilder.Build(Mesh(Route("shop", "both", [ServiceParent("echo"), ServiceParent("echo-v2"), ServiceParent("plain")], Backend("echo", 80))));

        AssertCondition(Conditions(snapshot, "shop/both", 0).Accepted, true, "Accepted");
        AssertCondition(Conditions(snapshot, "shop/both", 1).Accepted, true, "Accepted");
        AssertCondition(Conditions(snapshot, "shop/both", 2).Accepted, false, "NoMatchingParent");
        Assert.Single(snapshot.Routing.For("shop/waypoint").Routes);
    }

    [Fact]
    public void Waypoint_gateways_are_accepted_and_programmed_once_placed()
    {
        var snapshot = MeshBuilder.Build(Mesh());

        var status = Assert.Single(snapshot.Routing.Gateways);
        Assert.Equal(("shop", "waypoint"), (status.Namespace, status.Name));
        AssertCondition(status.Conditions.Single(c => c.Type == "Accepted"), true, "Accepted");
        AssertCondition(status.Conditions.Single(c => c.Type == "Programmed"), true, "Programmed");

        var unplaced = MeshBuilder.Build([Waypoint("shop")]); // no pod names a node
        AssertCondition(Assert.Single(unplaced.Routing.Gateways).Conditions.Single(c => c.Type == "Programmed"), false, "AddressNotAssigned");
    }
}

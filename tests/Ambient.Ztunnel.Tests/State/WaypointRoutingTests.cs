using System.Net;
using Ambient.Core.Model;
using Ambient.Core.Protos.Workload;
using Ambient.Dataplane.State;
using static Ambient.Ztunnel.Tests.Outbound.OutboundTestMesh;

namespace Ambient.Ztunnel.Tests.State;

/// <summary>How <see cref="ProxyState"/> routes through waypoints and network gateways kept from xDS.</summary>
public sealed class WaypointRoutingTests
{
    private static readonly IPAddress WaypointPod = IPAddress.Parse("10.0.0.50");
    private static readonly IPAddress EchoPod = IPAddress.Parse("10.0.0.7");

    private static WorkloadInfo WaypointWorkload(string? serviceKey = null) => Pod("waypoint", "demo", "waypoint", WaypointPod, serviceKey: serviceKey);

    [Fact]
    public void Service_waypoint_given_by_address_routes_to_its_hbone_port_with_the_vip_as_authority()
    {
        var service = Service(new GatewayInfo(null, "", WaypointPod, 15008));
        var state = Mesh(Source(), service, WaypointWorkload(), Pod("echo-1", "demo", "echo", EchoPod, serviceKey: service.Key));

        var d = state.ResolveDestination(Source(), ServiceVip, 80).Destination!;

        Assert.Equal(RouteKind.Waypoint, d.Route);
        Assert.True(d.UseHbone);
        Assert.Equal(new IPEndPoint(WaypointPod, 15008), d.TunnelEndpoint);
        Assert.Equal("10.96.0.10:80", d.Authority);
        Assert.Equal(new IPEndPoint(ServiceVip, 80), d.Target);
        Assert.Equal("spiffe://cluster.local/ns/demo/sa/waypoint", d.ExpectedIdentity);
        Assert.Equal("waypoint", d.Workload!.Name);
        Assert.Same(service, d.Service);
    }

    [Fact]
    public void Service_waypoint_given_by_hostname_is_reached_through_one_of_its_endpoints()
    {
        var waypointService = new ServiceInfo("waypoint", "demo", "waypoint.demo.svc.cluster.local")
        {
            Vips = [IPAddress.Parse("10.96.0.99")],
            Ports = [new ServicePortInfo(15008, 15008, AppProtocol.Unknown)],
        };
        var service = Service(new GatewayInfo(new NamespacedHost("demo", "waypoint.demo.svc.cluster.local"), "", null, 15008));
        var state = Mesh(Source(), service, waypointService, WaypointWorkload(waypointService.Key));

        var d = state.ResolveDestination(Source(), "echo.demo", 80).Destination!;

        Assert.Equal(RouteKind.Waypoint, d.Route);
        Assert.Equal(new IPEndPoint(WaypointPod, 15008), d.TunnelEndpoint);
        Assert.Equal("10.96.0.10:80", d.Authority); // a hostname request names the service to the waypoint by its VIP
    }

    [Fact]
    public void Service_without_a_vip_is_named_to_its_waypoint_by_hostname()
    {
        var service = Service(new GatewayInfo(null, "", WaypointPod, 15008), withVip: false);
        var state = Mesh(Source(), service, WaypointWorkload());

        var d = state.ResolveDestination(Source(), "echo.demo.svc.cluster.local", 80).Destination!;

        Assert.Equal("echo.demo.svc.cluster.local:80", d.Authority);
        Assert.Equal(new IPEndPoint(WaypointPod, 15008), d.TunnelEndpoint);
        Assert.Equal(new IPEndPoint(IPAddress.None, 80), d.Target); // no address to name; the port is still judged
    }

    [Fact]
    public void Workload_waypoint_applies_to_the_pod_addressed_directly()
    {
        var state = Mesh(Source(), WaypointWorkload(), Pod("echo-1", "demo", "echo", EchoPod, waypoint: new GatewayInfo(null, "", WaypointPod, 15008)));

        var d = state.ResolveDestination(Source(), EchoPod, 8080).Destination!;

        Assert.Equal(RouteKind.Waypoint, d.Route);
        Assert.Equal("10.0.0.7:8080", d.Authority);
        Assert.Equal(new IPEndPoint(WaypointPod, 15008), d.TunnelEndpoint);
    }

    [Fact]
    public void The_waypoints_own_traffic_goes_straight_to_the_endpoint()
    {
        var service = Service(new GatewayInfo(null, "", WaypointPod, 15008));
        var waypoint = WaypointWorkload();
        var state = Mesh(waypoint, service, Pod("echo-1", "demo", "echo", EchoPod, serviceKey: service.Key));

        var d = state.ResolveDestination(waypoint, ServiceVip, 80).Destination!;

        Assert.Equal(RouteKind.Hbone, d.Route);
        Assert.Equal(new IPEndPoint(EchoPod, 8080), d.Target);
        Assert.Equal(new IPEndPoint(EchoPod, 15008), d.TunnelEndpoint);
        Assert.Equal("10.0.0.7:8080", d.Authority);
    }

    [Fact]
    public void A_waypoint_that_is_not_in_the_mesh_is_no_healthy_endpoint()
    {
        var service = Service(new GatewayInfo(null, "", WaypointPod, 15008));
        var state = Mesh(Source(), service, Pod("echo-1", "demo", "echo", EchoPod, serviceKey: service.Key));

        var r = state.ResolveDestination(Source(), ServiceVip, 80);

        Assert.Equal(ResolveFailure.NoHealthyEndpoint, r.Failure);
        Assert.Contains("waypoint /10.0.0.50 is not a workload of the mesh", r.Error, StringComparison.Ordinal);
    }

    [Fact]
    public void A_port_the_service_does_not_expose_is_refused_before_the_waypoint()
    {
        var service = Service(new GatewayInfo(null, "", WaypointPod, 15008));
        var state = Mesh(Source(), service, WaypointWorkload());

        Assert.Equal(ResolveFailure.PortNotExposed, state.ResolveDestination(Source(), ServiceVip, 81).Failure);
    }

    [Fact]
    public void A_pod_on_another_network_is_reached_through_its_network_gateway()
    {
        var gateway = IPAddress.Parse("172.16.0.1");
        var remote = Pod("echo-1", "demo", "echo", EchoPod, network: "net-b", networkGateway: new GatewayInfo(null, "net-b", gateway, 15008));
        var state = Mesh(Source("net-a"), remote, Pod("eastwest", "istio-system", "eastwest", gateway, network: "net-b"));

        var d = state.ResolveDestination(Source("net-a"), EchoPod, 8080).Destination!;

        Assert.Equal(RouteKind.NetworkGateway, d.Route);
        Assert.Equal(new IPEndPoint(gateway, 15008), d.TunnelEndpoint);
        Assert.Equal("10.0.0.7:8080", d.Authority);
        Assert.Equal("spiffe://cluster.local/ns/istio-system/sa/eastwest", d.ExpectedIdentity);

        var sameNetwork = state.ResolveDestination(Source("net-b"), EchoPod, 8080).Destination!;
        Assert.Equal(RouteKind.Hbone, sameNetwork.Route);
    }
}

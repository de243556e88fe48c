using System.Net;
using Ambient.Core.Model;
using Ambient.Core.Protos.Discovery;
using Ambient.Core.Protos.Waypoint;
using Ambient.Core.Xds;
using Ambient.Waypoint.Inbound;
using Ambient.Waypoint.State;
using Google.Protobuf.WellKnownTypes;

namespace Ambient.Waypoint.Tests.Inbound;

public sealed class ServedServicesTests
{
    private static readonly IPAddress Own = IPAddress.Parse("127.10.0.5");

    private static ServiceInfo Service(string name, GatewayInfo? waypoint) =>
        new(name, "shop", $"{name}.shop.svc.cluster.local") { Waypoint = waypoint, Vips = [IPAddress.Parse("127.20.0.1")] };

    [Fact]
    public void A_service_whose_waypoint_is_this_address_is_served_and_others_are_not()
    {
        var served = new ServedServices(new WaypointConfig(), Own);
        var snapshot = MeshSnapshot.Empty;
        Assert.True(served.Serves(snapshot, Service("mine", new GatewayInfo(null, "", Own, 15008))));
        Assert.False(served.Serves(snapshot, Service("theirs", new GatewayInfo(null, "", IPAddress.Parse("127.10.0.6"), 15008))));
        Assert.False(served.Serves(snapshot, Service("none", null)));
    }

    [Fact]
    public void A_service_istiod_sent_protocols_for_is_served_until_removed()
    {
        var config = new WaypointConfig();
        var served = new ServedServices(config, Own);
        var service = Service("echo", null);
        var protocols = new ServiceProtocols { Namespace = "shop", Hostname = service.Hostname };
        protocols.Ports.Add(new PortProtocol { ServicePort = 80, Protocol = PortAppProtocol.Http });
        var push = new DeltaDiscoveryResponse { TypeUrl = XdsTypeUrls.ServiceProtocols, Nonce = "1" };
        push.Resources.Add(new Resource { Name = service.Key, Resource_ = Any.Pack(protocols) });
        Assert.Null(config.ApplyProtocols(push));
        Assert.True(served.Serves(MeshSnapshot.Empty, service));
        Assert.Equal(PortAppProtocol.Http, config.ProtocolOf("shop", service.Hostname, 80));
        Assert.Equal(PortAppProtocol.Tcp, config.ProtocolOf("shop", service.Hostname, 81));

        Assert.Null(config.ApplyProtocols(new DeltaDiscoveryResponse { TypeUrl = XdsTypeUrls.ServiceProtocols, Nonce = "2", RemovedResources = { service.Key } }));
        Assert.False(served.Serves(MeshSnapshot.Empty, service));
    }

    [Fact]
    public void A_resource_whose_name_does_not_match_its_body_is_nacked()
    {
        var config = new WaypointConfig();
        var push = new DeltaDiscoveryResponse { TypeUrl = XdsTypeUrls.ServiceProtocols, Nonce = "1" };
        push.Resources.Add(new Resource { Name = "shop/other", Resource_ = Any.Pack(new ServiceProtocols { Namespace = "shop", Hostname = "echo" }) });
        Assert.NotNull(config.ApplyProtocols(push));
        Assert.Empty(config.Protocols);
    }
}

using System.Collections.Immutable;
using System.Net;
using Ambient.Core.Model;
using Ambient.Core.Protos.Workload;

namespace Ambient.Core.Tests.Model;

/// <summary>
/// WireEquals lets a rebuild skip serialization; if it ever missed a wire field, a changed workload would never
/// be pushed. Every mutable wire field is changed in turn: WireEquals must notice whenever ToProto differs.
/// </summary>
public class WireEqualityTests
{
    private static WorkloadInfo Workload() => new("c//Pod/ns/p", "ns", "td", "sa")
    {
        Name = "p",
        Addresses = [IPAddress.Parse("10.0.0.1")],
        Network = "n",
        TunnelProtocol = TunnelProtocol.Hbone,
        Node = "node",
        CanonicalName = "app",
        CanonicalRevision = "v1",
        WorkloadName = "p",
        ClusterId = "c",
        Services = [new WorkloadServicePorts("ns/s.ns.svc.cluster.local", [new PortMapping(80, 8080, AppProtocol.Http11)])],
        AuthorizationPolicies = ["ns/allow"],
        Hostname = "p.vm.example",
        Waypoint = new GatewayInfo(null, "n", IPAddress.Parse("10.0.0.9"), 15008),
        NetworkGateway = new GatewayInfo(new NamespacedHost("istio-system", "ew.istio-system.svc.cluster.local"), "", null, 15008),
        Locality = new LocalityInfo("r", "z", "s"),
    };

    public static TheoryData<string> WorkloadMutations() =>
    [
        "Name", "Addresses", "Network", "TunnelProtocol", "Node", "CanonicalName", "CanonicalRevision", "WorkloadType",
        "WorkloadName", "Status", "ClusterId", "ServiceKey", "ServicePort", "TargetPort", "AppProtocol", "ExtraService",
        "AuthorizationPolicies", "Uid", "Namespace", "TrustDomain", "ServiceAccount", "Hostname", "Waypoint",
        "WaypointPort", "NoWaypoint", "NetworkGateway", "Locality", "NoLocality",
    ];

    [Theory]
    [MemberData(nameof(WorkloadMutations))]
    public void Workload_wire_equality_sees_every_wire_field(string field)
    {
        var a = Workload();
        var svc = a.Services[0];
        WorkloadInfo b = field switch
        {
            "Name" => a with { Name = "q" },
            "Addresses" => a with { Addresses = [IPAddress.Parse("10.0.0.2")] },
            "Network" => a with { Network = "other" },
            "TunnelProtocol" => a with { TunnelProtocol = TunnelProtocol.None },
            "Node" => a with { Node = "node-2" },
            "CanonicalName" => a with { CanonicalName = "app2" },
            "CanonicalRevision" => a with { CanonicalRevision = "v2" },
            "WorkloadType" => a with { WorkloadType = WorkloadType.Deployment },
            "WorkloadName" => a with { WorkloadName = "deploy" },
            "Status" => a with { Status = WorkloadStatus.Unhealthy },
            "ClusterId" => a with { ClusterId = "c2" },
            "ServiceKey" => a with { Services = [svc with { ServiceKey = "ns/t.ns.svc.cluster.local" }] },
            "ServicePort" => a with { Services = [svc with { Ports = [new PortMapping(81, 8080, AppProtocol.Http11)] }] },
            "TargetPort" => a with { Services = [svc with { Ports = [new PortMapping(80, 8081, AppProtocol.Http11)] }] },
            "AppProtocol" => a with { Services = [svc with { Ports = [new PortMapping(80, 8080, AppProtocol.Http2)] }] },
            "ExtraService" => a with { Services = [svc, new WorkloadServicePorts("ns/z.ns.svc.cluster.local", [])] },
            "AuthorizationPolicies" => a with { AuthorizationPolicies = ["ns/deny"] },
            "Uid" => Rebuild(a, "c//Pod/ns/q", a.Namespace, a.TrustDomain, a.ServiceAccount),
            "Namespace" => Rebuild(a, a.Uid, "ns2", a.TrustDomain, a.ServiceAccount),
            "TrustDomain" => Rebuild(a, a.Uid, a.Namespace, "td2", a.ServiceAccount),
            "ServiceAccount" => Rebuild(a, a.Uid, a.Namespace, a.TrustDomain, "sa2"),
            "Hostname" => a with { Hostname = "q.vm.example" },
            "Waypoint" => a with { Waypoint = a.Waypoint! with { Address = IPAddress.Parse("10.0.0.10") } },
            "WaypointPort" => a with { Waypoint = a.Waypoint! with { HboneMtlsPort = 15009 } },
            "NoWaypoint" => a with { Waypoint = null },
            "NetworkGateway" => a with { NetworkGateway = a.NetworkGateway! with { Host = new NamespacedHost("istio-system", "ew2") } },
            "Locality" => a with { Locality = new LocalityInfo("r", "z2", "s") },
            "NoLocality" => a with { Locality = null },
            _ => throw new ArgumentOutOfRangeException(nameof(field)),
        };

        Assert.NotEqual(a.ToProto(), b.ToProto());
        Assert.False(a.WireEquals(b));
        Assert.True(a.WireEquals(Workload()));
    }

    [Fact]
    public void Fields_not_on_the_wire_do_not_break_wire_equality()
    {
        var a = Workload();
        var b = a with { Labels = ImmutableSortedDictionary<string, string>.Empty.Add("team", "x"), ContainerPorts = [new("http", 1, "TCP")] };
        Assert.True(a.WireEquals(b));
    }

    [Theory]
    [InlineData("Name")]
    [InlineData("Namespace")]
    [InlineData("Hostname")]
    [InlineData("Network")]
    [InlineData("Vips")]
    [InlineData("Port")]
    [InlineData("TargetPort")]
    [InlineData("AppProtocol")]
    [InlineData("ExtraPort")]
    [InlineData("Waypoint")]
    [InlineData("NoWaypoint")]
    [InlineData("RoutingPreference")]
    [InlineData("LoadBalancingMode")]
    [InlineData("NoLoadBalancing")]
    public void Service_wire_equality_sees_every_wire_field(string field)
    {
        var a = Service("s", "ns", "s.ns.svc.cluster.local");
        var p = a.Ports[0];
        ServiceInfo b = field switch
        {
            "Name" => Service("t", "ns", a.Hostname),
            "Namespace" => Service("s", "ns2", a.Hostname),
            "Hostname" => Service("s", "ns", "s.ns.svc.example"),
            "Network" => a with { Network = "n2" },
            "Vips" => a with { Vips = [IPAddress.Parse("10.96.0.2")] },
            "Port" => a with { Ports = [p with { Port = 81 }] },
            "TargetPort" => a with { Ports = [p with { TargetPort = 8081 }] },
            "AppProtocol" => a with { Ports = [p with { AppProtocol = AppProtocol.Grpc }] },
            "ExtraPort" => a with { Ports = [p, p with { Port = 82 }] },
            "Waypoint" => a with { Waypoint = new GatewayInfo(new NamespacedHost("ns", "wp2"), "", null, 15008) },
            "NoWaypoint" => a with { Waypoint = null },
            "RoutingPreference" => a with { LoadBalancing = a.LoadBalancing! with { RoutingPreference = [LoadBalancing.Types.Scope.Zone] } },
            "LoadBalancingMode" => a with { LoadBalancing = a.LoadBalancing! with { Mode = LoadBalancing.Types.Mode.Strict } },
            "NoLoadBalancing" => a with { LoadBalancing = null },
            _ => throw new ArgumentOutOfRangeException(nameof(field)),
        };

        Assert.NotEqual(a.ToProto(), b.ToProto());
        Assert.False(a.WireEquals(b));
        Assert.True(a.WireEquals(Service("s", "ns", "s.ns.svc.cluster.local")));
    }

    private static ServiceInfo Service(string name, string ns, string hostname) => new(name, ns, hostname)
    {
        Network = "n",
        Vips = [IPAddress.Parse("10.96.0.1")],
        Ports = [new ServicePortInfo(80, 8080, AppProtocol.Http11)],
        Waypoint = new GatewayInfo(new NamespacedHost("ns", "wp"), "", null, 15008),
        LoadBalancing = new LoadBalancingInfo([LoadBalancing.Types.Scope.Node], LoadBalancing.Types.Mode.Failover, LoadBalancing.Types.HealthPolicy.OnlyHealthy),
    };

    private static WorkloadInfo Rebuild(WorkloadInfo a, string uid, string ns, string td, string sa) => new(uid, ns, td, sa)
    {
        Name = a.Name,
        Addresses = a.Addresses,
        Network = a.Network,
        TunnelProtocol = a.TunnelProtocol,
        Node = a.Node,
        CanonicalName = a.CanonicalName,
        CanonicalRevision = a.CanonicalRevision,
        WorkloadName = a.WorkloadName,
        ClusterId = a.ClusterId,
        Services = a.Services,
        AuthorizationPolicies = a.AuthorizationPolicies,
    };
}

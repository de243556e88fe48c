using System.Net;
using Ambient.Core.Config;
using Ambient.Core.Model;
using Ambient.Core.Protos.Workload;
using Google.Protobuf;
using static Ambient.Core.Tests.Model.ConfigFixtures;

namespace Ambient.Core.Tests.Model;

public class MeshSnapshotTests
{
    private static MeshSnapshot Shop() => MeshBuilder.Build(
    [
        AmbientNamespace("shop"),
        Namespace("bank"),
        Pod("shop", "web-0", [("app", "web"), ("version", "v1")], serviceAccount: "web", node: "node-1", podIP: "10.0.0.1",
            ports: new ContainerPort("http", 8080, "TCP")),
        Pod("shop", "web-1", [("app", "web"), ("istio.io/dataplane-mode", "none")], node: "node-2", podIP: "10.0.0.2",
            ports: new ContainerPort("http", 8081, "TCP")),
        Pod("bank", "vault-0", [("app", "vault")], node: "node-1"),
        Service("shop", "web", [("app", "web")], [NamedTargetPort(80, "http", "http"), Port(9090, 9091, "grpc")], clusterIP: "10.96.0.1"),
        Service("bank", "web", [("app", "vault")], [Port(80, 8200)]),        // same short name, other namespace
        Service("bank", "vault", [("app", "vault")], [Port(8200)], clusterIP: "None"),
    ]);

    [Fact]
    public void Finds_workloads_by_uid_and_address()
    {
        var s = Shop();
        var web0 = s.FindWorkloadByUid("Kubernetes//Pod/shop/web-0")!;

        Assert.Equal("web-0", web0.Name);
        Assert.Same(web0, s.FindWorkloadByAddress(IPAddress.Parse("10.0.0.1")));
        Assert.Same(web0, s.FindWorkloadByAddress(IPAddress.Parse("::ffff:10.0.0.1"))); // dual-stack socket view
        Assert.Same(s.FindPod("bank", "vault-0"), s.FindWorkloadByAddress(s.PodAddress("bank", "vault-0")!));
        Assert.Null(s.FindWorkloadByAddress(IPAddress.Parse("10.0.0.99")));
        Assert.Null(s.FindWorkloadByUid("Kubernetes//Pod/shop/nope"));
    }

    [Theory]
    [InlineData("web.shop.svc.cluster.local", null, "shop")]
    [InlineData("web.shop.svc.cluster.local.", null, "shop")]
    [InlineData("web.shop.svc", null, "shop")]
    [InlineData("web.shop", null, "shop")]
    [InlineData("web.bank", "shop", "bank")]
    [InlineData("web", "shop", "shop")]
    [InlineData("web", "bank", "bank")]
    [InlineData("vault", "bank", "bank")]
    [InlineData("web", null, null)]       // a bare name needs the caller's namespace
    [InlineData("vault", "shop", null)]   // no vault in shop
    [InlineData("web.nowhere", null, null)]
    [InlineData("", null, null)]
    public void Finds_services_by_full_and_short_hostnames(string host, string? sourceNamespace, string? expectedNamespace)
    {
        var svc = Shop().FindServiceByHostname(host, sourceNamespace);
        Assert.Equal(expectedNamespace, svc?.Namespace);
    }

    [Fact]
    public void Finds_services_by_vip_and_key()
    {
        var s = Shop();
        var web = s.FindServiceByVip(IPAddress.Parse("10.96.0.1"))!;
        Assert.Equal("shop/web.shop.svc.cluster.local", web.Key);
        Assert.Same(web, s.FindServiceByKey(web.Key));
        Assert.Null(s.FindServiceByVip(IPAddress.Parse("10.96.0.2")));
        var bankWebVip = Assert.Single(s.FindServiceByKey("bank/web.bank.svc.cluster.local")!.Vips);
        Assert.Equal("bank", s.FindServiceByVip(bankWebVip)!.Namespace);
    }

    [Fact]
    public void Endpoints_include_unenrolled_pods_with_their_own_named_ports()
    {
        var s = Shop();
        var web = s.FindServiceByKey("shop/web.shop.svc.cluster.local")!;

        var http = s.EndpointsOf(web, 80).Select(e => (e.Workload.Name, e.TargetPort, e.Workload.IsInMesh));
        Assert.Equal([("web-0", 8080, true), ("web-1", 8081, false)], http);
        Assert.Equal([9091, 9091], s.EndpointsOf(web, 9090).Select(e => e.TargetPort));
        Assert.Empty(s.EndpointsOf(web, 1234));
    }

    [Fact]
    public void Proto_round_trip_is_lossless_and_the_ztunnel_view_answers_the_same_lookups()
    {
        var istiod = Shop();
        var wire = istiod.ToProtos().Select(a => Address.Parser.ParseFrom(a.ToByteArray())).ToList();

        var ztunnel = MeshSnapshot.FromProtos(wire);

        Assert.Equal(wire, ztunnel.ToProtos().ToList()); // protobuf value equality, field by field
        Assert.Equal(istiod.Workloads.Length, ztunnel.Workloads.Length);
        Assert.Equal(istiod.Services.Length, ztunnel.Services.Length);
        for (var i = 0; i < istiod.Workloads.Length; i++)
        {
            var a = istiod.Workloads[i];
            var b = ztunnel.Workloads[i];
            Assert.Equal(
                (a.Uid, a.Name, a.Namespace, a.Network, a.TunnelProtocol, a.TrustDomain, a.ServiceAccount, a.Node, a.CanonicalName,
                 a.CanonicalRevision, a.WorkloadType, a.WorkloadName, a.Status, a.ClusterId, a.Identity),
                (b.Uid, b.Name, b.Namespace, b.Network, b.TunnelProtocol, b.TrustDomain, b.ServiceAccount, b.Node, b.CanonicalName,
                 b.CanonicalRevision, b.WorkloadType, b.WorkloadName, b.Status, b.ClusterId, b.Identity));
            Assert.Equal(a.Addresses, b.Addresses);
            Assert.Equal(a.Services.Select(x => (x.ServiceKey, string.Join(",", x.Ports))), b.Services.Select(x => (x.ServiceKey, string.Join(",", x.Ports))));
        }

        var web = ztunnel.FindServiceByHostname("web", "shop")!;
        Assert.Equal([("web-0", 8080), ("web-1", 8081)], ztunnel.EndpointsOf(web, 80).Select(e => (e.Workload.Name, e.TargetPort)));
        Assert.Equal("spiffe://cluster.local/ns/shop/sa/web", ztunnel.FindWorkloadByAddress(IPAddress.Parse("10.0.0.1"))!.Identity);
        Assert.Equal(["web-0", "vault-0"], ztunnel.WorkloadsOnNode("node-1").Select(w => w.Name).Order(StringComparer.Ordinal).Reverse());
    }

    [Fact]
    public void Services_map_serializes_in_sorted_key_order()
    {
        var s = MeshBuilder.Build(
        [
            Pod("ns", "p", [("app", "x")]),
            Service("ns", "zeta", [("app", "x")], [Port(1)]),
            Service("ns", "alpha", [("app", "x")], [Port(2)]),
            Service("ns", "mid", [("app", "x")], [Port(3)]),
        ]);
        Assert.Equal(["ns/alpha.ns.svc.cluster.local", "ns/mid.ns.svc.cluster.local", "ns/zeta.ns.svc.cluster.local"],
            s.Workloads[0].ToProto().Services.Keys);
    }

    [Fact]
    public void Received_workload_without_trust_domain_or_service_account_gets_istio_defaults()
    {
        var w = WorkloadInfo.FromProto(new Workload { Uid = "c//Pod/ns/p", Name = "p", Namespace = "ns" });
        Assert.Equal("cluster.local", w.TrustDomain);
        Assert.Equal("default", w.ServiceAccount);
        Assert.Equal("spiffe://cluster.local/ns/ns/sa/default", w.Identity);
    }

    [Fact]
    public void Malformed_protos_are_rejected_with_the_resource_named()
    {
        var badAddress = new Workload { Uid = "c//Pod/ns/p", Name = "p", Namespace = "ns" };
        badAddress.Addresses.Add(ByteString.CopyFrom(1, 2, 3));
        var ex = Assert.Throws<InvalidDataException>(() => MeshSnapshot.FromProtos([new Address { Workload = badAddress }]));
        Assert.Contains("workload 'c//Pod/ns/p': addresses[0]: 3 address bytes", ex.Message);

        var badPort = new Service { Name = "s", Namespace = "ns", Hostname = "s.ns.svc.cluster.local" };
        badPort.Ports.Add(new Port { ServicePort = 70000 });
        ex = Assert.Throws<InvalidDataException>(() => MeshSnapshot.FromProtos([new Address { Service = badPort }]));
        Assert.Contains("service 'ns/s.ns.svc.cluster.local': ports[0].service_port: port 70000", ex.Message);

        ex = Assert.Throws<InvalidDataException>(() => MeshSnapshot.FromProtos([new Address()]));
        Assert.Contains("neither a workload nor a service", ex.Message);

        var dup = new Address { Workload = new Workload { Uid = "c//Pod/ns/p", Name = "p" } };
        ex = Assert.Throws<InvalidDataException>(() => MeshSnapshot.FromProtos([dup, dup]));
        Assert.Contains("duplicate workload uid 'c//Pod/ns/p'", ex.Message);
    }
}

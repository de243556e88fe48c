using System.Net;
using System.Text.Json;
using Ambient.Core.Model;
using Ambient.Core.Protos.Discovery;
using Ambient.Core.Protos.Workload;
using Ambient.Core.Xds;
using Google.Protobuf;
using Google.Protobuf.WellKnownTypes;
using Resource = Ambient.Core.Protos.Discovery.Resource;

namespace Ambient.Core.Tests.Xds;

/// <summary>
/// What a real istiod sends beyond what our own istiod-lite fills in: the ztunnel keeps it (waypoints, network
/// gateways, hostnames, locality, load balancing), shows it in config_dump, and a service it can only partly use
/// costs that service's unusable part, not the whole response.
/// </summary>
public sealed class XdsFieldsKeptTests
{
    private static Resource Res(string name, Address address) => new()
    {
        Name = name,
        Version = "1",
        Resource_ = Any.Pack(address, "type.googleapis.com"),
    };

    private static DeltaDiscoveryResponse Response(string nonce, params Resource[] resources)
    {
        var r = new DeltaDiscoveryResponse { TypeUrl = XdsTypeUrls.Address, Nonce = nonce };
        r.Resources.AddRange(resources);
        return r;
    }

    private static JsonElement Dump(MeshSnapshot snapshot)
    {
        using var stream = new MemoryStream();
        using (var json = new Utf8JsonWriter(stream))
        {
            json.WriteStartObject();
            MeshSnapshotJson.WriteWorkloads(json, snapshot);
            MeshSnapshotJson.WriteServices(json, snapshot);
            json.WriteEndObject();
        }
        return JsonDocument.Parse(stream.ToArray()).RootElement.Clone();
    }

    private static Workload Echo() => new()
    {
        Uid = "Kubernetes//Pod/demo/echo-v1",
        Name = "echo-v1",
        Namespace = "demo",
        Addresses = { ByteString.CopyFrom(10, 0, 0, 7) },
        Hostname = "echo-v1.vm.example",
        TunnelProtocol = TunnelProtocol.Hbone,
        Waypoint = new GatewayAddress
        {
            Address = new NetworkAddress { Network = "net1", Address = ByteString.CopyFrom(10, 0, 0, 9) },
            HboneMtlsPort = 15008,
        },
        NetworkGateway = new GatewayAddress
        {
            Hostname = new NamespacedHostname { Namespace = "istio-system", Hostname = "eastwest.istio-system.svc.cluster.local" },
            HboneMtlsPort = 15009,
        },
        Locality = new Locality { Region = "us-east1", Zone = "us-east1-b", Subzone = "rack-7" },
    };

    private static Service EchoService() => new()
    {
        Name = "echo",
        Namespace = "demo",
        Hostname = "echo.demo.svc.cluster.local",
        Addresses = { new NetworkAddress { Address = ByteString.CopyFrom(10, 96, 0, 10) } },
        Ports = { new Port { ServicePort = 80, TargetPort = 8080 } },
        Waypoint = new GatewayAddress
        {
            Hostname = new NamespacedHostname { Namespace = "demo", Hostname = "waypoint.demo.svc.cluster.local" },
            HboneMtlsPort = 15008,
        },
        LoadBalancing = new LoadBalancing
        {
            RoutingPreference = { LoadBalancing.Types.Scope.Node, LoadBalancing.Types.Scope.Zone },
            Mode = LoadBalancing.Types.Mode.Failover,
            HealthPolicy = LoadBalancing.Types.HealthPolicy.AllowAll,
        },
    };

    [Fact]
    public void Waypoint_gateway_hostname_locality_and_load_balancing_are_kept_and_shown()
    {
        var cache = new DeltaXdsClientCache();
        var result = cache.Apply(Response("n1",
            Res("Kubernetes//Pod/demo/echo-v1", new Address { Workload = Echo() }),
            Res("demo/echo.demo.svc.cluster.local", new Address { Service = EchoService() })));
        Assert.True(result.Accepted, result.Error);

        var w = Assert.Single(cache.Snapshot.Workloads);
        Assert.Equal("echo-v1.vm.example", w.Hostname);
        Assert.Equal(new GatewayInfo(null, "net1", IPAddress.Parse("10.0.0.9"), 15008), w.Waypoint);
        Assert.Equal(new NamespacedHost("istio-system", "eastwest.istio-system.svc.cluster.local"), w.NetworkGateway!.Host);
        Assert.Equal(15009, w.NetworkGateway.HboneMtlsPort);
        Assert.Equal(new LocalityInfo("us-east1", "us-east1-b", "rack-7"), w.Locality);

        var s = Assert.Single(cache.Snapshot.Services);
        Assert.Equal(new NamespacedHost("demo", "waypoint.demo.svc.cluster.local"), s.Waypoint!.Host);
        Assert.NotNull(s.LoadBalancing);
        Assert.Equal([LoadBalancing.Types.Scope.Node, LoadBalancing.Types.Scope.Zone], s.LoadBalancing!.RoutingPreference);
        Assert.Equal(LoadBalancing.Types.Mode.Failover, s.LoadBalancing.Mode);
        Assert.Equal(LoadBalancing.Types.HealthPolicy.AllowAll, s.LoadBalancing.HealthPolicy);

        // Round trip: what we keep is what we were sent (istiod-lite writes these through the same ToProto).
        var expectedWorkload = Echo();
        expectedWorkload.TrustDomain = "cluster.local"; // empty trust domain and service account take Istio's defaults
        expectedWorkload.ServiceAccount = "default";
        Assert.Equal(expectedWorkload, w.ToProto());
        Assert.Equal(EchoService(), s.ToProto());

        var dump = Dump(cache.Snapshot);
        var dw = dump.GetProperty("workloads")[0];
        Assert.Equal("echo-v1.vm.example", dw.GetProperty("hostname").GetString());
        Assert.Equal("net1/10.0.0.9", dw.GetProperty("waypoint").GetProperty("destination").GetString());
        Assert.Equal(15008, dw.GetProperty("waypoint").GetProperty("hboneMtlsPort").GetInt32());
        Assert.Equal("istio-system/eastwest.istio-system.svc.cluster.local", dw.GetProperty("networkGateway").GetProperty("destination").GetString());
        Assert.Equal(15009, dw.GetProperty("networkGateway").GetProperty("hboneMtlsPort").GetInt32());
        Assert.Equal("us-east1", dw.GetProperty("locality").GetProperty("region").GetString());
        Assert.Equal("us-east1-b", dw.GetProperty("locality").GetProperty("zone").GetString());
        Assert.Equal("rack-7", dw.GetProperty("locality").GetProperty("subzone").GetString());
        var ds = dump.GetProperty("services")[0];
        Assert.Equal("demo/waypoint.demo.svc.cluster.local", ds.GetProperty("waypoint").GetProperty("destination").GetString());
        var lb = ds.GetProperty("loadBalancer");
        Assert.Equal(["Node", "Zone"], lb.GetProperty("routingPreferences").EnumerateArray().Select(e => e.GetString()));
        Assert.Equal("Failover", lb.GetProperty("mode").GetString());
        Assert.Equal("AllowAll", lb.GetProperty("healthPolicy").GetString());
    }

    [Fact]
    public void Absent_optional_fields_stay_absent()
    {
        var bare = new Workload { Uid = "Kubernetes//Pod/demo/a", Name = "a", Namespace = "demo", Addresses = { ByteString.CopyFrom(10, 0, 0, 1) } };
        var cache = new DeltaXdsClientCache();
        Assert.True(cache.Apply(Response("n1", Res(bare.Uid, new Address { Workload = bare }))).Accepted);
        var w = Assert.Single(cache.Snapshot.Workloads);
        Assert.Null(w.Waypoint);
        Assert.Null(w.NetworkGateway);
        Assert.Null(w.Locality);
        Assert.Equal("", w.Hostname);
        var dw = Dump(cache.Snapshot).GetProperty("workloads")[0];
        Assert.False(dw.TryGetProperty("waypoint", out _));
        Assert.False(dw.TryGetProperty("locality", out _));
    }

    [Fact]
    public void A_waypoint_naming_no_destination_is_nacked_naming_the_workload_and_field()
    {
        var bad = Echo();
        bad.Waypoint = new GatewayAddress { HboneMtlsPort = 15008 };
        var cache = new DeltaXdsClientCache();

        var result = cache.Apply(Response("n1", Res(bad.Uid, new Address { Workload = bad })));

        Assert.False(result.Accepted);
        Assert.Contains("workload 'Kubernetes//Pod/demo/echo-v1': waypoint", result.Error, StringComparison.Ordinal);
        Assert.Contains("neither a hostname nor an address", result.Error, StringComparison.Ordinal);
        Assert.Empty(cache.Snapshot.Workloads);
    }

    [Fact]
    public void A_service_with_vips_on_two_networks_keeps_the_local_network_and_reports_the_rest()
    {
        var service = EchoService();
        service.Addresses.Clear();
        service.Addresses.Add(new NetworkAddress { Network = "remote", Address = ByteString.CopyFrom(10, 200, 0, 10) });
        service.Addresses.Add(new NetworkAddress { Network = "", Address = ByteString.CopyFrom(10, 96, 0, 10) });
        var cache = new DeltaXdsClientCache();

        var result = cache.Apply(Response("n1",
            Res("Kubernetes//Pod/demo/echo-v1", new Address { Workload = Echo() }),
            Res("demo/echo.demo.svc.cluster.local", new Address { Service = service })));

        Assert.True(result.Accepted, result.Error);
        Assert.Null(result.Reply.ErrorDetail);
        var s = Assert.Single(cache.Snapshot.Services);
        Assert.Equal("", s.Network);
        Assert.Equal([IPAddress.Parse("10.96.0.10")], s.Vips);
        Assert.Single(cache.Snapshot.Workloads);
        Assert.NotNull(cache.Snapshot.FindServiceByVip(IPAddress.Parse("10.96.0.10")));
        Assert.Null(cache.Snapshot.FindServiceByVip(IPAddress.Parse("10.200.0.10")));
        var skipped = Assert.Single(result.Skipped);
        Assert.Contains("demo/echo.demo.svc.cluster.local", skipped, StringComparison.Ordinal);
        Assert.Contains("remote/10.200.0.10", skipped, StringComparison.Ordinal);

        // A later push that does not touch the service keeps it as it was and does not report it again.
        var other = new Workload { Uid = "Kubernetes//Pod/demo/b", Name = "b", Namespace = "demo", Addresses = { ByteString.CopyFrom(10, 0, 0, 2) } };
        var next = cache.Apply(Response("n2", Res(other.Uid, new Address { Workload = other })));
        Assert.True(next.Accepted, next.Error);
        Assert.Empty(next.Skipped);
        Assert.Equal([IPAddress.Parse("10.96.0.10")], Assert.Single(cache.Snapshot.Services).Vips);
    }

    [Fact]
    public void A_service_only_on_other_networks_keeps_its_first_network()
    {
        var service = EchoService();
        service.Addresses.Clear();
        service.Addresses.Add(new NetworkAddress { Network = "east", Address = ByteString.CopyFrom(10, 1, 0, 10) });
        service.Addresses.Add(new NetworkAddress { Network = "west", Address = ByteString.CopyFrom(10, 2, 0, 10) });
        service.Addresses.Add(new NetworkAddress { Network = "east", Address = ByteString.CopyFrom(10, 1, 0, 11) });
        var cache = new DeltaXdsClientCache(new MeshOptions { Network = "north" });

        var result = cache.Apply(Response("n1", Res("demo/echo.demo.svc.cluster.local", new Address { Service = service })));

        Assert.True(result.Accepted, result.Error);
        var s = Assert.Single(cache.Snapshot.Services);
        Assert.Equal("east", s.Network);
        Assert.Equal([IPAddress.Parse("10.1.0.10"), IPAddress.Parse("10.1.0.11")], s.Vips);
        Assert.Contains("west/10.2.0.10", Assert.Single(result.Skipped), StringComparison.Ordinal);
    }

    [Fact]
    public void An_elided_trust_domain_is_the_mesh_trust_domain()
    {
        // istiod leaves trust_domain out when it is the mesh default; the default is this mesh's, not cluster.local.
        var bare = new Workload { Uid = "Kubernetes//Pod/demo/a", Name = "a", Namespace = "demo", Addresses = { ByteString.CopyFrom(10, 0, 0, 1) } };
        var cache = new DeltaXdsClientCache(new MeshOptions { TrustDomain = "example.org" });
        Assert.True(cache.Apply(Response("n1", Res(bare.Uid, new Address { Workload = bare }))).Accepted);
        Assert.Equal("spiffe://example.org/ns/demo/sa/default", Assert.Single(cache.Snapshot.Workloads).Identity);
    }
}

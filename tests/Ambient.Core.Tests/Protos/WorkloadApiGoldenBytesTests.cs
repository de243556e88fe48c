using Ambient.Core.Protos.Security;
using Ambient.Core.Protos.Workload;
using Google.Protobuf;
using AuthzAddress = Ambient.Core.Protos.Security.Address;
using WorkloadAddress = Ambient.Core.Protos.Workload.Address;
using Extension = Ambient.Core.Protos.Workload.Extension;
using SecurityExtension = Ambient.Core.Protos.Security.Extension;

namespace Ambient.Core.Tests.Protos;

/// <summary>
/// istio.workload.Address and istio.security.Authorization against bytes written by hand from Istio's upstream
/// definitions (see <see cref="GoldenWire"/>; never generated from our .proto files):
/// <list type="bullet">
/// <item>istio/ztunnel <c>proto/workload.proto</c> @ 1c0573bf97a7b8eacb62802990cd0ee20f073942 (the same numbers as
///   istio/istio <c>pkg/workloadapi/workload.proto</c> @ e7930827404e016167f9954f850e4e1fc5627f74):
///   Address { oneof { Workload workload = 1; Service service = 2; } };
///   Workload { uid = 20; name = 1; namespace = 2; repeated bytes addresses = 3; hostname = 21; network = 4;
///   TunnelProtocol tunnel_protocol = 5; trust_domain = 6; service_account = 7; GatewayAddress waypoint = 8;
///   GatewayAddress network_gateway = 19; node = 9; canonical_name = 10; canonical_revision = 11;
///   WorkloadType workload_type = 12; workload_name = 13; bool native_tunnel = 14; ApplicationTunnel
///   application_tunnel = 23; map&lt;string, PortList&gt; services = 22; repeated string authorization_policies = 16;
///   WorkloadStatus status = 17; cluster_id = 18; Locality locality = 24; NetworkMode network_mode = 25; reserved 15 };
///   Service { name = 1; namespace = 2; hostname = 3; repeated NetworkAddress addresses = 4; repeated Port ports = 5;
///   repeated string subject_alt_names = 6; GatewayAddress waypoint = 7; LoadBalancing load_balancing = 8;
///   IPFamilies ip_families = 9 };
///   LoadBalancing { repeated Scope routing_preference = 1 (NODE = 4, ZONE = 2); Mode mode = 2 (FAILOVER = 2);
///   HealthPolicy health_policy = 3 (ALLOW_ALL = 1) }; IPFamilies DUAL = 3;
///   PortList { repeated Port ports = 1 }; Port { service_port = 1; target_port = 2 };
///   GatewayAddress { oneof destination { NamespacedHostname hostname = 1; NetworkAddress address = 2; }
///   hbone_mtls_port = 3 }; NetworkAddress { string network = 1; bytes address = 2 };
///   NamespacedHostname { namespace = 1; hostname = 2 }; ApplicationTunnel { Protocol protocol = 1 (PROXY = 1);
///   uint32 port = 2 }; Locality { region = 1; zone = 2; subzone = 3 }; TunnelProtocol HBONE = 1;
///   WorkloadType POD = 2; WorkloadStatus UNHEALTHY = 1; NetworkMode HOST_NETWORK = 1.</item>
/// <item>istio/ztunnel <c>proto/authorization.proto</c> @ 807432124b9faea755c69104f87d86863468193b (same numbers as
///   istio/istio <c>pkg/workloadapi/security/authorization.proto</c> @ 6141a5f50320d6d64265e14fade23aa261cff568):
///   Authorization { name = 1; namespace = 2; Scope scope = 3 (WORKLOAD_SELECTOR = 2); Action action = 4 (DENY = 1);
///   repeated Rule rules = 5 }; Rule { repeated Clause clauses = 1 }; Clause { repeated Match matches = 2 };
///   Match { namespaces = 1; not_namespaces = 2; principals = 3; not_principals = 4 (StringMatch);
///   source_ips = 5; not_source_ips = 6; destination_ips = 7; not_destination_ips = 8 (Address);
///   repeated uint32 destination_ports = 9; not_destination_ports = 10 }; Address { bytes address = 1; uint32 length = 2 };
///   StringMatch { oneof { exact = 1; prefix = 2; suffix = 3; google.protobuf.Empty presence = 4 } }.</item>
/// </list>
/// Varints used: 15008 = a0 75, 15088 = f0 75, 8080 = 90 3f, 9090 = 82 47, 80 = 50; tags of fields 16-25 take two
/// bytes (e.g. uid = 20: 20&lt;&lt;3|2 = 162 = a2 01). proto3 packs repeated scalars (wire type 2).
/// </summary>
public sealed class WorkloadApiGoldenBytesTests
{
    private static readonly byte[] Fd00Seven = Convert.FromHexString("fd000000000000000000000000000007");

    [Fact]
    public void Address_with_a_workload_matches_istio_field_numbers()
    {
        var workload = new GoldenWire()
            .Hex("0a 07").Ascii("echo-v1")                          // name = 1: tag 0x0a = 1<<3|2
            .Hex("12 04").Ascii("demo")                             // namespace = 2: tag 0x12 = 2<<3|2
            .Hex("1a 04 0a 00 00 07")                               // addresses = 3: tag 0x1a = 3<<3|2, 10.0.0.7
            .Hex("1a 10").Bytes(Fd00Seven)                          // addresses = 3 again: fd00::7 (16 bytes)
            .Hex("22 04").Ascii("net1")                             // network = 4: tag 0x22 = 4<<3|2
            .Hex("28 01")                                           // tunnel_protocol = 5: tag 0x28 = 5<<3|0, HBONE = 1
            .Hex("32 0d").Ascii("cluster.local")                    // trust_domain = 6: tag 0x32 = 6<<3|2, 13 bytes
            .Hex("3a 04").Ascii("echo")                             // service_account = 7: tag 0x3a = 7<<3|2
            .Hex("42 11")                                           // waypoint = 8: tag 0x42 = 8<<3|2, GatewayAddress of 17 bytes
            .Hex("12 0c")                                           //   GatewayAddress.address = 2: NetworkAddress of 12 bytes
            .Hex("0a 04").Ascii("net1")                             //     NetworkAddress.network = 1
            .Hex("12 04 0a 00 00 09")                               //     NetworkAddress.address = 2: 10.0.0.9
            .Hex("18 a0 75")                                        //   GatewayAddress.hbone_mtls_port = 3: tag 0x18 = 3<<3|0, 15008
            .Hex("4a 06").Ascii("node-2")                           // node = 9: tag 0x4a = 9<<3|2
            .Hex("52 04").Ascii("echo")                             // canonical_name = 10: tag 0x52 = 10<<3|2
            .Hex("5a 02").Ascii("v1")                               // canonical_revision = 11: tag 0x5a = 11<<3|2
            .Hex("60 02")                                           // workload_type = 12: tag 0x60 = 12<<3|0, POD = 2
            .Hex("6a 07").Ascii("echo-v1")                          // workload_name = 13: tag 0x6a = 13<<3|2
            .Hex("70 01")                                           // native_tunnel = 14: tag 0x70 = 14<<3|0, true
            .Hex("82 01 0a").Ascii("demo/allow")                    // authorization_policies = 16: tag 16<<3|2 = 130 = 82 01, 10 bytes
            .Hex("88 01 01")                                        // status = 17: tag 17<<3|0 = 136 = 88 01, UNHEALTHY = 1
            .Hex("92 01 0a").Ascii("Kubernetes")                    // cluster_id = 18: tag 18<<3|2 = 146 = 92 01, 10 bytes
            .Hex("9a 01 2e")                                        // network_gateway = 19: tag 19<<3|2 = 154 = 9a 01, GatewayAddress of 46 bytes
            .Hex("0a 29")                                           //   GatewayAddress.hostname = 1: NamespacedHostname of 41 bytes
            .Hex("0a 0c").Ascii("istio-system")                     //     NamespacedHostname.namespace = 1: 12 bytes
            .Hex("12 19").Ascii("eastwest.istio-system.svc")        //     NamespacedHostname.hostname = 2: 25 bytes
            .Hex("18 a0 75")                                        //   GatewayAddress.hbone_mtls_port = 3: 15008
            .Hex("a2 01 1c").Ascii("Kubernetes//Pod/demo/echo-v1")  // uid = 20: tag 20<<3|2 = 162 = a2 01, 28 bytes
            .Hex("aa 01 0f").Ascii("echo-v1.example")               // hostname = 21: tag 21<<3|2 = 170 = aa 01, 15 bytes
            .Hex("b2 01 2b")                                        // services = 22: tag 22<<3|2 = 178 = b2 01, map entry of 43 bytes
            .Hex("0a 20").Ascii("demo/echo.demo.svc.cluster.local") //   key = 1: 32 bytes
            .Hex("12 07")                                           //   value = 2: PortList of 7 bytes
            .Hex("0a 05")                                           //     PortList.ports = 1: Port of 5 bytes
            .Hex("08 50")                                           //       Port.service_port = 1: tag 0x08 = 1<<3|0, 80
            .Hex("10 90 3f")                                        //       Port.target_port = 2: tag 0x10 = 2<<3|0, 8080
            .Hex("ba 01 05")                                        // application_tunnel = 23: tag 23<<3|2 = 186 = ba 01, 5 bytes
            .Hex("08 01")                                           //   ApplicationTunnel.protocol = 1: PROXY = 1
            .Hex("10 f0 75")                                        //   ApplicationTunnel.port = 2: 15088
            .Hex("c2 01 1e")                                        // locality = 24: tag 24<<3|2 = 194 = c2 01, 30 bytes
            .Hex("0a 08").Ascii("us-east1")                         //   Locality.region = 1
            .Hex("12 0a").Ascii("us-east1-b")                       //   Locality.zone = 2
            .Hex("1a 06").Ascii("rack-7")                           //   Locality.subzone = 3
            .Hex("c8 01 01")                                        // network_mode = 25: tag 25<<3|0 = 200 = c8 01, HOST_NETWORK = 1
            .ToArray();
        Assert.Equal(335, workload.Length);
        var golden = new GoldenWire()
            .Hex("0a cf 02").Bytes(workload)                        // Address.workload = 1: tag 0x0a = 1<<3|2, 335 bytes (varint cf 02)
            .ToArray();

        var expected = new WorkloadAddress
        {
            Workload = new Workload
            {
                Uid = "Kubernetes//Pod/demo/echo-v1",
                Name = "echo-v1",
                Namespace = "demo",
                Addresses = { ByteString.CopyFrom(10, 0, 0, 7), ByteString.CopyFrom(Fd00Seven) },
                Hostname = "echo-v1.example",
                Network = "net1",
                TunnelProtocol = TunnelProtocol.Hbone,
                TrustDomain = "cluster.local",
                ServiceAccount = "echo",
                Waypoint = new GatewayAddress
                {
                    Address = new NetworkAddress { Network = "net1", Address = ByteString.CopyFrom(10, 0, 0, 9) },
                    HboneMtlsPort = 15008,
                },
                NetworkGateway = new GatewayAddress
                {
                    Hostname = new NamespacedHostname { Namespace = "istio-system", Hostname = "eastwest.istio-system.svc" },
                    HboneMtlsPort = 15008,
                },
                Node = "node-2",
                CanonicalName = "echo",
                CanonicalRevision = "v1",
                WorkloadType = WorkloadType.Pod,
                WorkloadName = "echo-v1",
                NativeTunnel = true,
                ApplicationTunnel = new ApplicationTunnel { Protocol = ApplicationTunnel.Types.Protocol.Proxy, Port = 15088 },
                Services = { ["demo/echo.demo.svc.cluster.local"] = new PortList { Ports = { new Port { ServicePort = 80, TargetPort = 8080 } } } },
                AuthorizationPolicies = { "demo/allow" },
                Status = WorkloadStatus.Unhealthy,
                ClusterId = "Kubernetes",
                Locality = new Locality { Region = "us-east1", Zone = "us-east1-b", Subzone = "rack-7" },
                NetworkMode = NetworkMode.HostNetwork,
            },
        };
        GoldenWire.AssertBothWays(golden, expected, WorkloadAddress.Parser);
    }

    [Fact]
    public void Address_with_a_service_matches_istio_field_numbers()
    {
        var service = new GoldenWire()
            .Hex("0a 04").Ascii("echo")                             // name = 1: tag 0x0a = 1<<3|2
            .Hex("12 04").Ascii("demo")                             // namespace = 2: tag 0x12 = 2<<3|2
            .Hex("1a 1b").Ascii("echo.demo.svc.cluster.local")      // hostname = 3: tag 0x1a = 3<<3|2, 27 bytes
            .Hex("22 0c")                                           // addresses = 4: tag 0x22 = 4<<3|2, NetworkAddress of 12 bytes
            .Hex("0a 04").Ascii("net1")                             //   NetworkAddress.network = 1
            .Hex("12 04 0a 60 00 0a")                               //   NetworkAddress.address = 2: 10.96.0.10
            .Hex("22 12")                                           // addresses = 4 again: NetworkAddress of 18 bytes, default network
            .Hex("12 10 fd 00 00 00 00 00 00 00 00 00 00 00 00 00 00 0a") // NetworkAddress.address = 2: fd00::a
            .Hex("2a 05 08 50 10 90 3f")                            // ports = 5: tag 0x2a = 5<<3|2, Port { service_port = 1: 80, target_port = 2: 8080 }
            .Hex("2a 06 08 82 47 10 82 47")                         // ports = 5 again: Port { 9090, 9090 }
            .Hex("32 26").Ascii("spiffe://cluster.local/ns/demo/sa/echo") // subject_alt_names = 6: tag 0x32 = 6<<3|2, 38 bytes
            .Hex("3a 2c")                                           // waypoint = 7: tag 0x3a = 7<<3|2, GatewayAddress of 44 bytes
            .Hex("0a 27")                                           //   GatewayAddress.hostname = 1: NamespacedHostname of 39 bytes
            .Hex("0a 04").Ascii("demo")                             //     NamespacedHostname.namespace = 1
            .Hex("12 1f").Ascii("waypoint.demo.svc.cluster.local")  //     NamespacedHostname.hostname = 2: 31 bytes
            .Hex("18 a0 75")                                        //   GatewayAddress.hbone_mtls_port = 3: 15008
            .Hex("42 08")                                           // load_balancing = 8: tag 0x42 = 8<<3|2, 8 bytes
            .Hex("0a 02 04 02")                                     //   routing_preference = 1: packed [NODE = 4, ZONE = 2]
            .Hex("10 02")                                           //   mode = 2: tag 0x10 = 2<<3|0, FAILOVER = 2
            .Hex("18 01")                                           //   health_policy = 3: tag 0x18 = 3<<3|0, ALLOW_ALL = 1
            .Hex("48 03")                                           // ip_families = 9: tag 0x48 = 9<<3|0, DUAL = 3
            .ToArray();
        Assert.Equal(188, service.Length);
        var golden = new GoldenWire()
            .Hex("12 bc 01").Bytes(service)                         // Address.service = 2: tag 0x12 = 2<<3|2, 188 bytes (varint bc 01)
            .ToArray();

        var expected = new WorkloadAddress
        {
            Service = new Service
            {
                Name = "echo",
                Namespace = "demo",
                Hostname = "echo.demo.svc.cluster.local",
                Addresses =
                {
                    new NetworkAddress { Network = "net1", Address = ByteString.CopyFrom(10, 96, 0, 10) },
                    new NetworkAddress { Address = ByteString.CopyFrom(Convert.FromHexString("fd00000000000000000000000000000a")) },
                },
                Ports = { new Port { ServicePort = 80, TargetPort = 8080 }, new Port { ServicePort = 9090, TargetPort = 9090 } },
                SubjectAltNames = { "spiffe://cluster.local/ns/demo/sa/echo" },
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
                IpFamilies = IPFamilies.Dual,
            },
        };
        GoldenWire.AssertBothWays(golden, expected, WorkloadAddress.Parser);
    }

    // The fields below come from the same upstream commits: Workload { repeated Extension extensions = 26;
    // google.protobuf.UInt32Value capacity = 27 }; Service { repeated Extension extensions = 10; bool canonical = 11 };
    // LoadBalancing.Mode PASSTHROUGH = 3; Extension { string name = 1; google.protobuf.Any config = 2 };
    // google.protobuf.Any { type_url = 1; bytes value = 2 }; google.protobuf.UInt32Value { uint32 value = 1 }.
    private static byte[] GoldenExtension() => new GoldenWire()
        .Hex("0a 05").Ascii("ext.a")                                // Extension.name = 1: 5 bytes
        .Hex("12 11")                                               // Extension.config = 2: Any of 17 bytes
        .Hex("0a 0b").Ascii("t.example/x")                          //   Any.type_url = 1: 11 bytes
        .Hex("12 02 08 07")                                         //   Any.value = 2: 2 opaque bytes
        .ToArray();

    private static Extension ExpectedExtension() => new()
    {
        Name = "ext.a",
        Config = new Google.Protobuf.WellKnownTypes.Any { TypeUrl = "t.example/x", Value = ByteString.CopyFrom(0x08, 0x07) },
    };

    [Fact]
    public void Workload_extensions_and_capacity_match_istio_field_numbers()
    {
        var extension = GoldenExtension();
        Assert.Equal(26, extension.Length);
        var workload = new GoldenWire()
            .Hex("a2 01 1c").Ascii("Kubernetes//Pod/demo/echo-v1")  // uid = 20: 28 bytes
            .Hex("d2 01 1a").Bytes(extension)                       // extensions = 26: tag 26<<3|2 = 210 = d2 01, 26 bytes
            .Hex("da 01 02 08 05")                                  // capacity = 27: tag 27<<3|2 = 218 = da 01, UInt32Value { value = 1: 5 }
            .ToArray();
        Assert.Equal(65, workload.Length);
        var golden = new GoldenWire().Hex("0a 41").Bytes(workload).ToArray(); // Address.workload = 1: 65 bytes

        var expected = new WorkloadAddress
        {
            Workload = new Workload
            {
                Uid = "Kubernetes//Pod/demo/echo-v1",
                Extensions = { ExpectedExtension() },
                Capacity = 5,
            },
        };
        GoldenWire.AssertBothWays(golden, expected, WorkloadAddress.Parser);

        // A wrapper keeps presence: capacity 0 is sent (da 01 00) and differs from unset (upstream reads unset as 1).
        var zero = new Workload { Capacity = 0 };
        Assert.Equal("DA0100", Convert.ToHexString(zero.ToByteArray()));
        Assert.Null(new Workload().Capacity);
    }

    [Fact]
    public void Service_extensions_canonical_and_passthrough_match_istio_field_numbers()
    {
        var service = new GoldenWire()
            .Hex("0a 04").Ascii("echo")                             // name = 1
            .Hex("42 02 10 03")                                     // load_balancing = 8: LoadBalancing { mode = 2: PASSTHROUGH = 3 }
            .Hex("52 1a").Bytes(GoldenExtension())                  // extensions = 10: tag 0x52 = 10<<3|2, 26 bytes
            .Hex("58 01")                                           // canonical = 11: tag 0x58 = 11<<3|0, true
            .ToArray();
        Assert.Equal(40, service.Length);
        var golden = new GoldenWire().Hex("12 28").Bytes(service).ToArray(); // Address.service = 2: 40 bytes

        var expected = new WorkloadAddress
        {
            Service = new Service
            {
                Name = "echo",
                LoadBalancing = new LoadBalancing { Mode = LoadBalancing.Types.Mode.Passthrough },
                Extensions = { ExpectedExtension() },
                Canonical = true,
            },
        };
        GoldenWire.AssertBothWays(golden, expected, WorkloadAddress.Parser);
    }

    // Newer fields (sources in workload.proto and authorization.proto): Service { bool ingress_use_waypoint = 12;
    // repeated WeightedWaypoint weighted_waypoints = 13; Visibility visibility = 14 (PUBLIC = 0, NAMESPACE = 1) };
    // WeightedWaypoint { GatewayAddress destination = 1; uint32 weight = 2 }; NetworkAddress { uint32 length = 3 }.
    [Fact]
    public void Service_ingress_waypoint_weighted_waypoints_visibility_and_address_length_match_istio_field_numbers()
    {
        var canary = new GoldenWire()
            .Hex("0a 28")                                           // WeightedWaypoint.destination = 1: GatewayAddress of 40 bytes
            .Hex("0a 23")                                           //   GatewayAddress.hostname = 1: NamespacedHostname of 35 bytes
            .Hex("0a 04").Ascii("demo")                             //     NamespacedHostname.namespace = 1
            .Hex("12 1b").Ascii("wp-b.demo.svc.cluster.local")      //     NamespacedHostname.hostname = 2: 27 bytes
            .Hex("18 a0 75")                                        //   GatewayAddress.hbone_mtls_port = 3: 15008
            .Hex("10 0a")                                           // WeightedWaypoint.weight = 2: tag 0x10 = 2<<3|0, 10
            .ToArray();
        Assert.Equal(44, canary.Length);
        var primary = new GoldenWire()
            .Hex("0a 0b")                                           // WeightedWaypoint.destination = 1: GatewayAddress of 11 bytes
            .Hex("12 06 12 04 0a 00 00 09")                         //   GatewayAddress.address = 2: NetworkAddress { address = 2: 10.0.0.9 }
            .Hex("18 a0 75")                                        //   GatewayAddress.hbone_mtls_port = 3: 15008
            .Hex("10 5a")                                           // WeightedWaypoint.weight = 2: 90
            .ToArray();
        Assert.Equal(15, primary.Length);
        var service = new GoldenWire()
            .Hex("0a 04").Ascii("echo")                             // name = 1
            .Hex("22 0e")                                           // addresses = 4: NetworkAddress of 14 bytes
            .Hex("0a 04").Ascii("net1")                             //   NetworkAddress.network = 1
            .Hex("12 04 0a 60 00 00")                               //   NetworkAddress.address = 2: 10.96.0.0
            .Hex("18 0c")                                           //   NetworkAddress.length = 3: tag 0x18 = 3<<3|0, 12
            .Hex("60 01")                                           // ingress_use_waypoint = 12: tag 0x60 = 12<<3|0, true
            .Hex("6a 2c").Bytes(canary)                             // weighted_waypoints = 13: tag 0x6a = 13<<3|2, 44 bytes
            .Hex("6a 0f").Bytes(primary)                            // weighted_waypoints = 13 again: 15 bytes
            .Hex("70 01")                                           // visibility = 14: tag 0x70 = 14<<3|0, NAMESPACE = 1
            .ToArray();
        Assert.Equal(89, service.Length);
        var golden = new GoldenWire().Hex("12 59").Bytes(service).ToArray(); // Address.service = 2: 89 bytes

        var expected = new WorkloadAddress
        {
            Service = new Service
            {
                Name = "echo",
                Addresses = { new NetworkAddress { Network = "net1", Address = ByteString.CopyFrom(10, 96, 0, 0), Length = 12 } },
                IngressUseWaypoint = true,
                WeightedWaypoints =
                {
                    new WeightedWaypoint
                    {
                        Destination = new GatewayAddress
                        {
                            Hostname = new NamespacedHostname { Namespace = "demo", Hostname = "wp-b.demo.svc.cluster.local" },
                            HboneMtlsPort = 15008,
                        },
                        Weight = 10,
                    },
                    new WeightedWaypoint
                    {
                        Destination = new GatewayAddress
                        {
                            Address = new NetworkAddress { Address = ByteString.CopyFrom(10, 0, 0, 9) },
                            HboneMtlsPort = 15008,
                        },
                        Weight = 90,
                    },
                },
                Visibility = Service.Types.Visibility.Namespace,
            },
        };
        GoldenWire.AssertBothWays(golden, expected, WorkloadAddress.Parser);
    }

    // Match { repeated ServiceAccountMatch service_accounts = 11; not_service_accounts = 12;
    // repeated Extension extensions = 13 }; ServiceAccountMatch { string namespace = 1; string serviceAccount = 2 }.
    [Fact]
    public void Authorization_service_accounts_and_extensions_match_istio_field_numbers()
    {
        var match = new GoldenWire()
            .Hex("5a 0e")                                           // service_accounts = 11: tag 0x5a = 11<<3|2, 14 bytes
            .Hex("0a 04").Ascii("demo")                             //   ServiceAccountMatch.namespace = 1
            .Hex("12 06").Ascii("client")                           //   ServiceAccountMatch.serviceAccount = 2
            .Hex("62 16")                                           // not_service_accounts = 12: tag 0x62 = 12<<3|2, 22 bytes
            .Hex("0a 0b").Ascii("kube-system")                      //   ServiceAccountMatch.namespace = 1: 11 bytes
            .Hex("12 07").Ascii("default")                          //   ServiceAccountMatch.serviceAccount = 2: 7 bytes
            .Hex("6a 1a").Bytes(GoldenExtension())                  // extensions = 13: tag 0x6a = 13<<3|2, 26 bytes
            .ToArray();
        Assert.Equal(68, match.Length);
        var golden = new GoldenWire()
            .Hex("0a 07").Ascii("sa-only")                          // name = 1
            .Hex("2a 48")                                           // rules = 5: Rule of 72 bytes
            .Hex("0a 46")                                           //   Rule.clauses = 1: Clause of 70 bytes
            .Hex("12 44").Bytes(match)                              //     Clause.matches = 2: Match of 68 bytes
            .ToArray();

        var expected = new Authorization
        {
            Name = "sa-only",
            Rules =
            {
                new Rule
                {
                    Clauses =
                    {
                        new Clause
                        {
                            Matches =
                            {
                                new Match
                                {
                                    ServiceAccounts = { new ServiceAccountMatch { Namespace = "demo", ServiceAccount = "client" } },
                                    NotServiceAccounts = { new ServiceAccountMatch { Namespace = "kube-system", ServiceAccount = "default" } },
                                    Extensions =
                                    {
                                        new SecurityExtension
                                        {
                                            Name = "ext.a",
                                            Config = new Google.Protobuf.WellKnownTypes.Any { TypeUrl = "t.example/x", Value = ByteString.CopyFrom(0x08, 0x07) },
                                        },
                                    },
                                },
                            },
                        },
                    },
                },
            },
        };
        GoldenWire.AssertBothWays(golden, expected, Authorization.Parser);
    }

    [Fact]
    public void Authorization_matches_istio_field_numbers()
    {
        var match = new GoldenWire()
            .Hex("0a 06 0a 04").Ascii("demo")                       // namespaces = 1: StringMatch { exact = 1: "demo" }
            .Hex("12 07 12 05").Ascii("kube-")                      // not_namespaces = 2: StringMatch { prefix = 2: "kube-" }
            .Hex("1a 0c 1a 0a").Ascii("/sa/client")                 // principals = 3: StringMatch { suffix = 3: "/sa/client" }
            .Hex("22 02 22 00")                                     // not_principals = 4: StringMatch { presence = 4: Empty }
            .Hex("2a 08 0a 04 0a 00 00 00 10 08")                   // source_ips = 5: Address { address = 1: 10.0.0.0, length = 2: 8 }
            .Hex("32 08 0a 04 0a 00 00 63 10 20")                   // not_source_ips = 6: Address { 10.0.0.99, 32 }
            .Hex("3a 14 0a 10 fd 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 10 40") // destination_ips = 7: Address { fd00::, 64 }
            .Hex("42 08 0a 04 0a 00 00 09 10 20")                   // not_destination_ips = 8: Address { 10.0.0.9, 32 }
            .Hex("4a 03 50 90 3f")                                  // destination_ports = 9: tag 0x4a = 9<<3|2, packed [80, 8080]
            .Hex("52 01 16")                                        // not_destination_ports = 10: tag 0x52 = 10<<3|2, packed [22]
            .ToArray();
        Assert.Equal(95, match.Length);
        var golden = new GoldenWire()
            .Hex("0a 0c").Ascii("allow-client")                     // name = 1: tag 0x0a = 1<<3|2, 12 bytes
            .Hex("12 04").Ascii("demo")                             // namespace = 2: tag 0x12 = 2<<3|2
            .Hex("18 02")                                           // scope = 3: tag 0x18 = 3<<3|0, WORKLOAD_SELECTOR = 2
            .Hex("20 01")                                           // action = 4: tag 0x20 = 4<<3|0, DENY = 1
            .Hex("2a 6b")                                           // rules = 5: tag 0x2a = 5<<3|2, Rule of 107 bytes
            .Hex("0a 61")                                           //   Rule.clauses = 1: Clause of 97 bytes
            .Hex("12 5f").Bytes(match)                              //     Clause.matches = 2: tag 0x12 = 2<<3|2, Match of 95 bytes
            .Hex("0a 06")                                           //   Rule.clauses = 1 again: Clause of 6 bytes
            .Hex("12 04 4a 02 a0 75")                               //     Clause.matches = 2: Match { destination_ports = 9: packed [15008] }
            .ToArray();

        var expected = new Authorization
        {
            Name = "allow-client",
            Namespace = "demo",
            Scope = Scope.WorkloadSelector,
            Action = Ambient.Core.Protos.Security.Action.Deny,
            Rules =
            {
                new Rule
                {
                    Clauses =
                    {
                        new Clause
                        {
                            Matches =
                            {
                                new Match
                                {
                                    Namespaces = { new StringMatch { Exact = "demo" } },
                                    NotNamespaces = { new StringMatch { Prefix = "kube-" } },
                                    Principals = { new StringMatch { Suffix = "/sa/client" } },
                                    NotPrincipals = { new StringMatch { Presence = new Presence() } },
                                    SourceIps = { new AuthzAddress { Address_ = ByteString.CopyFrom(10, 0, 0, 0), Length = 8 } },
                                    NotSourceIps = { new AuthzAddress { Address_ = ByteString.CopyFrom(10, 0, 0, 99), Length = 32 } },
                                    DestinationIps = { new AuthzAddress { Address_ = ByteString.CopyFrom(Convert.FromHexString("fd000000000000000000000000000000")), Length = 64 } },
                                    NotDestinationIps = { new AuthzAddress { Address_ = ByteString.CopyFrom(10, 0, 0, 9), Length = 32 } },
                                    DestinationPorts = { 80, 8080 },
                                    NotDestinationPorts = { 22 },
                                },
                            },
                        },
                        new Clause { Matches = { new Match { DestinationPorts = { 15008 } } } },
                    },
                },
            },
        };
        GoldenWire.AssertBothWays(golden, expected, Authorization.Parser);
    }

    [Fact]
    public void Unpacked_ports_from_an_older_encoder_decode_the_same()
    {
        // Parsers must accept repeated scalars unpacked too (one tag per value): destination_ports = 9 as
        // 9<<3|0 = 0x48 twice.
        var unpacked = new GoldenWire().Hex("48 50").Hex("48 90 3f").ToArray();
        Assert.Equal([80u, 8080u], Match.Parser.ParseFrom(unpacked).DestinationPorts);
    }
}

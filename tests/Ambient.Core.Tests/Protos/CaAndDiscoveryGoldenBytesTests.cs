using Ambient.Core.Protos.Ca;
using Ambient.Core.Protos.Discovery;
using Google.Protobuf.WellKnownTypes;
using RpcStatus = Ambient.Core.Protos.Rpc.Status;

namespace Ambient.Core.Tests.Protos;

/// <summary>
/// The CA and delta-xDS messages against bytes written by hand from the upstream definitions, not from our .proto
/// files (the python interop clients compile ours, so a wrong number on both sides would pass there):
/// <list type="bullet">
/// <item>istio/api <c>security/v1alpha1/ca.proto</c> @ 6673061c8f91dc7d1a3d406327424cf7b0289620:
///   IstioCertificateRequest { string csr = 1; int64 validity_duration = 3; google.protobuf.Struct metadata = 4; },
///   IstioCertificateResponse { repeated string cert_chain = 1; Roots root_cert = 2; }, Roots { repeated string ca_cert = 1; }.</item>
/// <item>envoyproxy/envoy <c>api/envoy/service/discovery/v3/discovery.proto</c> @ df24f69e880ae998c97889856fdbd1f0d3dd1b55
///   (data-plane-api is its mirror): DeltaDiscoveryRequest { node = 1; type_url = 2; resource_names_subscribe = 3;
///   resource_names_unsubscribe = 4; map&lt;string,string&gt; initial_resource_versions = 5; response_nonce = 6;
///   google.rpc.Status error_detail = 7; }, DeltaDiscoveryResponse { system_version_info = 1; repeated Resource
///   resources = 2; type_url = 4; nonce = 5; repeated string removed_resources = 6; }, Resource { version = 1;
///   google.protobuf.Any resource = 2; name = 3; aliases = 4; google.protobuf.Duration ttl = 6; CacheControl
///   cache_control = 7 { bool do_not_cache = 1; } }.</item>
/// <item>envoyproxy/envoy <c>api/envoy/config/core/v3/base.proto</c> @ d65a4a5d0f6b63d76208164752d1d82ba8b3d5f5:
///   Node { string id = 1; string cluster = 2; google.protobuf.Struct metadata = 3; }.</item>
/// <item>Well-known types (protobuf's own): Struct { map&lt;string, Value&gt; fields = 1; }, Value { string_value = 3; },
///   Any { type_url = 1; bytes value = 2; }, Duration { int64 seconds = 1; }; google.rpc.Status { int32 code = 1;
///   string message = 2; }. A map entry is a message { key = 1; value = 2; }.</item>
/// </list>
/// Fields are written in field-number order, as protobuf encoders emit them.
/// </summary>
public sealed class CaAndDiscoveryGoldenBytesTests
{
    private const string WorkloadTypeUrl = "type.googleapis.com/istio.workload.Address"; // 42 bytes

    [Fact]
    public void IstioCertificateRequest_matches_istio_api_field_numbers()
    {
        var golden = new GoldenWire()
            .Hex("0a 07").Ascii("CSR-PEM")                          // csr = 1: tag 0x0a = 1<<3|2, 7 bytes
            .Hex("18 80 a3 05")                                     // validity_duration = 3: tag 0x18 = 3<<3|0, varint 86400
            .Hex("22 42")                                           // metadata = 4: tag 0x22 = 4<<3|2, Struct of 66 bytes
            .Hex("0a 40")                                           //   Struct.fields = 1: tag 0x0a, map entry of 64 bytes
            .Hex("0a 14").Ascii("ImpersonatedIdentity")             //     entry key = 1: tag 0x0a, 20 bytes
            .Hex("12 28")                                           //     entry value = 2: tag 0x12 = 2<<3|2, Value of 40 bytes
            .Hex("1a 26").Ascii("spiffe://cluster.local/ns/demo/sa/echo") // Value.string_value = 3: tag 0x1a = 3<<3|2, 38 bytes
            .ToArray();
        var expected = new IstioCertificateRequest
        {
            Csr = "CSR-PEM",
            ValidityDuration = 86400,
            Metadata = new Struct { Fields = { ["ImpersonatedIdentity"] = Value.ForString("spiffe://cluster.local/ns/demo/sa/echo") } },
        };
        GoldenWire.AssertBothWays(golden, expected, IstioCertificateRequest.Parser);
    }

    [Fact]
    public void A_negative_validity_duration_is_a_plain_int64_varint_as_upstream_declares()
    {
        // int64 (not sint64): -1 is ten bytes of two's complement, not zigzag's single 0x01. The CA must see the
        // negative value that a real Istio client sent in order to reject it.
        var golden = new GoldenWire()
            .Hex("0a 01").Ascii("x")                                // csr = 1: tag 0x0a, 1 byte
            .Hex("18 ff ff ff ff ff ff ff ff ff 01")                // validity_duration = 3: tag 0x18, varint -1 (int64)
            .ToArray();
        GoldenWire.AssertBothWays(golden, new IstioCertificateRequest { Csr = "x", ValidityDuration = -1 }, IstioCertificateRequest.Parser);
    }

    [Fact]
    public void IstioCertificateResponse_matches_istio_api_field_numbers()
    {
        var golden = new GoldenWire()
            .Hex("0a 04").Ascii("LEAF")                             // cert_chain = 1: tag 0x0a = 1<<3|2, 4 bytes (leaf first)
            .Hex("0a 04").Ascii("ROOT")                             // cert_chain = 1 again (root last)
            .ToArray();
        GoldenWire.AssertBothWays(golden, new IstioCertificateResponse { CertChain = { "LEAF", "ROOT" } }, IstioCertificateResponse.Parser);

        // A newer istiod may also send root_cert = 2 (Roots { ca_cert = 1 }), which we do not declare: it must not
        // disturb the chain we read.
        var withRoots = new GoldenWire()
            .Bytes(golden)
            .Hex("12 06")                                           // root_cert = 2: tag 0x12 = 2<<3|2, Roots of 6 bytes
            .Hex("0a 04").Ascii("ROOT")                             //   Roots.ca_cert = 1: tag 0x0a, 4 bytes
            .ToArray();
        Assert.Equal(["LEAF", "ROOT"], IstioCertificateResponse.Parser.ParseFrom(withRoots).CertChain);
    }

    [Fact]
    public void DeltaDiscoveryRequest_matches_envoy_field_numbers()
    {
        var golden = new GoldenWire()
            .Hex("0a 51")                                           // node = 1: tag 0x0a = 1<<3|2, Node of 81 bytes
            .Hex("0a 2a").Ascii("ztunnel~10.0.0.7~p.ns~ns.svc.cluster.local") // Node.id = 1: tag 0x0a, 42 bytes
            .Hex("12 0a").Ascii("Kubernetes")                       //   Node.cluster = 2: tag 0x12 = 2<<3|2, 10 bytes
            .Hex("1a 17")                                           //   Node.metadata = 3: tag 0x1a = 3<<3|2, Struct of 23 bytes
            .Hex("0a 15")                                           //     Struct.fields = 1: map entry of 21 bytes
            .Hex("0a 09").Ascii("NODE_NAME")                        //       key = 1: 9 bytes
            .Hex("12 08")                                           //       value = 2: Value of 8 bytes
            .Hex("1a 06").Ascii("node-2")                           //         Value.string_value = 3: 6 bytes
            .Hex("12 2a").Ascii(WorkloadTypeUrl)                    // type_url = 2: tag 0x12 = 2<<3|2, 42 bytes
            .Hex("1a 01").Ascii("*")                                // resource_names_subscribe = 3: tag 0x1a = 3<<3|2
            .Hex("22 09").Ascii("demo/gone")                        // resource_names_unsubscribe = 4: tag 0x22 = 4<<3|2
            .Hex("2a 22")                                           // initial_resource_versions = 5: tag 0x2a = 5<<3|2, entry of 34 bytes
            .Hex("0a 1c").Ascii("Kubernetes//Pod/demo/echo-v1")     //   key = 1: 28 bytes
            .Hex("12 02").Ascii("v7")                               //   value = 2: 2 bytes
            .Hex("2a 26")                                           // initial_resource_versions = 5: second entry of 38 bytes
            .Hex("0a 20").Ascii("demo/echo.demo.svc.cluster.local") //   key = 1: 32 bytes
            .Hex("12 02").Ascii("v8")                               //   value = 2: 2 bytes
            .Hex("32 04").Ascii("n-41")                             // response_nonce = 6: tag 0x32 = 6<<3|2
            .Hex("3a 0f")                                           // error_detail = 7: tag 0x3a = 7<<3|2, Status of 15 bytes
            .Hex("08 03")                                           //   Status.code = 1: tag 0x08 = 1<<3|0, 3 (INVALID_ARGUMENT)
            .Hex("12 0b").Ascii("bad address")                      //   Status.message = 2: tag 0x12, 11 bytes
            .ToArray();
        var expected = new DeltaDiscoveryRequest
        {
            Node = new Node
            {
                Id = "ztunnel~10.0.0.7~p.ns~ns.svc.cluster.local",
                Cluster = "Kubernetes",
                Metadata = new Struct { Fields = { ["NODE_NAME"] = Value.ForString("node-2") } },
            },
            TypeUrl = WorkloadTypeUrl,
            ResourceNamesSubscribe = { "*" },
            ResourceNamesUnsubscribe = { "demo/gone" },
            InitialResourceVersions = { ["Kubernetes//Pod/demo/echo-v1"] = "v7", ["demo/echo.demo.svc.cluster.local"] = "v8" },
            ResponseNonce = "n-41",
            ErrorDetail = new RpcStatus { Code = 3, Message = "bad address" },
        };
        GoldenWire.AssertBothWays(golden, expected, DeltaDiscoveryRequest.Parser);
    }

    [Fact]
    public void DeltaDiscoveryResponse_and_Resource_match_envoy_field_numbers()
    {
        // The Any's payload: istio.workload.Address { service = 2: Service { name = 1: "s" } }.
        var address = new GoldenWire()
            .Hex("12 03")                                           // Address.service = 2: tag 0x12 = 2<<3|2, 3 bytes
            .Hex("0a 01").Ascii("s")                                //   Service.name = 1: tag 0x0a
            .ToArray();
        var golden = new GoldenWire()
            .Hex("0a 02").Ascii("v9")                               // system_version_info = 1: tag 0x0a = 1<<3|2
            .Hex("12 54")                                           // resources = 2: tag 0x12 = 2<<3|2, Resource of 84 bytes
            .Hex("0a 02").Ascii("v9")                               //   Resource.version = 1: tag 0x0a
            .Hex("12 33")                                           //   Resource.resource = 2: tag 0x12, Any of 51 bytes
            .Hex("0a 2a").Ascii(WorkloadTypeUrl)                    //     Any.type_url = 1: 42 bytes
            .Hex("12 05").Bytes(address)                            //     Any.value = 2: 5 bytes
            .Hex("1a 04").Ascii("ns/s")                             //   Resource.name = 3: tag 0x1a = 3<<3|2
            .Hex("22 0b").Ascii("/10.96.0.10")                      //   Resource.aliases = 4: tag 0x22 = 4<<3|2, 11 bytes
            .Hex("32 02 08 1e")                                     //   Resource.ttl = 6: tag 0x32 = 6<<3|2, Duration { seconds = 1: 30 }
            .Hex("3a 02 08 01")                                     //   Resource.cache_control = 7: tag 0x3a = 7<<3|2, { do_not_cache = 1: true }
            .Hex("22 2a").Ascii(WorkloadTypeUrl)                    // type_url = 4: tag 0x22 = 4<<3|2, 42 bytes
            .Hex("2a 04").Ascii("n-42")                             // nonce = 5: tag 0x2a = 5<<3|2
            .Hex("32 1c").Ascii("Kubernetes//Pod/demo/echo-v1")     // removed_resources = 6: tag 0x32 = 6<<3|2, 28 bytes
            .ToArray();
        var expected = new DeltaDiscoveryResponse
        {
            SystemVersionInfo = "v9",
            Resources =
            {
                new Resource
                {
                    Version = "v9",
                    Resource_ = new Any { TypeUrl = WorkloadTypeUrl, Value = Google.Protobuf.ByteString.CopyFrom(address) },
                    Name = "ns/s",
                    Aliases = { "/10.96.0.10" },
                    Ttl = new Duration { Seconds = 30 },
                    CacheControl = new Resource.Types.CacheControl { DoNotCache = true },
                },
            },
            TypeUrl = WorkloadTypeUrl,
            Nonce = "n-42",
            RemovedResources = { "Kubernetes//Pod/demo/echo-v1" },
        };
        GoldenWire.AssertBothWays(golden, expected, DeltaDiscoveryResponse.Parser);
        var unpacked = DeltaDiscoveryResponse.Parser.ParseFrom(golden).Resources[0].Resource_.Unpack<Ambient.Core.Protos.Workload.Address>();
        Assert.Equal("s", unpacked.Service.Name);
    }

    [Fact]
    public void Node_build_version_matches_the_ztunnel_field_number()
    {
        // istio/ztunnel proto/xds.proto @ 14c91a6f2852fb2fe702445ec0bd4362c5468242 declares its own Node with
        // string build_version = 5 (Envoy v3 reserves 5, once build_version; istiod ignores it as unknown).
        var golden = new GoldenWire()
            .Hex("0a 07").Ascii("ztunnel")                          // Node.id = 1
            .Hex("2a 06").Ascii("1.28.0")                           // Node.build_version = 5: tag 0x2a = 5<<3|2, 6 bytes
            .ToArray();
        GoldenWire.AssertBothWays(golden, new Node { Id = "ztunnel", BuildVersion = "1.28.0" }, Node.Parser);
    }
}

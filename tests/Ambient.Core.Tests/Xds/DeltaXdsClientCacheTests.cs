using System.Net;
using Ambient.Core.Model;
using Ambient.Core.Protos.Discovery;
using Ambient.Core.Protos.Workload;
using Ambient.Core.Xds;
using Google.Protobuf;
using Google.Protobuf.WellKnownTypes;
using Microsoft.Extensions.Logging.Abstractions;
using Authorization = Ambient.Core.Protos.Security.Authorization;
using Resource = Ambient.Core.Protos.Discovery.Resource;

namespace Ambient.Core.Tests.Xds;

/// <summary>The client's apply logic: ACK with the nonce, all-or-nothing NACKs that keep the last good snapshot.</summary>
public sealed class DeltaXdsClientCacheTests
{
    private static Workload Pod(string name, params byte[][] addresses)
    {
        var w = new Workload
        {
            Uid = "Kubernetes//Pod/demo/" + name,
            Name = name,
            Namespace = "demo",
            ServiceAccount = "sa",
            TunnelProtocol = TunnelProtocol.Hbone,
            Node = "node-1",
        };
        foreach (var a in addresses)
        {
            w.Addresses.Add(ByteString.CopyFrom(a));
        }
        return w;
    }

    private static Resource Res(Workload w, string version = "1") => new()
    {
        Name = w.Uid,
        Version = version,
        Resource_ = Any.Pack(new Address { Workload = w }, "type.googleapis.com"),
    };

    private static DeltaDiscoveryResponse Response(string nonce, IEnumerable<Resource> resources, params string[] removed)
    {
        var r = new DeltaDiscoveryResponse { TypeUrl = XdsTypeUrls.Address, Nonce = nonce };
        r.Resources.AddRange(resources);
        r.RemovedResources.AddRange(removed);
        return r;
    }

    [Fact]
    public void Accepted_response_builds_a_snapshot_and_acks_its_nonce()
    {
        var cache = new DeltaXdsClientCache();
        var result = cache.Apply(Response("n1", [Res(Pod("a", [127, 0, 1, 1])), Res(Pod("b", [127, 0, 1, 2]))]));
        Assert.True(result.Accepted);
        Assert.Equal("n1", result.Reply.ResponseNonce);
        Assert.Equal(XdsTypeUrls.Address, result.Reply.TypeUrl);
        Assert.Null(result.Reply.ErrorDetail);
        Assert.Equal(2, result.Snapshot!.Workloads.Length);
        Assert.Same(result.Snapshot, cache.Snapshot);
        Assert.NotNull(cache.Snapshot.FindWorkloadByAddress(IPAddress.Parse("127.0.1.2")));

        var versions = new Dictionary<string, string>();
        cache.CopyVersions(XdsTypeUrls.Address, versions);
        Assert.Equal("1", versions["Kubernetes//Pod/demo/a"]);
        Assert.Equal(2, versions.Count);
    }

    [Fact]
    public void Removed_resources_disappear_and_replacements_update_the_version()
    {
        var cache = new DeltaXdsClientCache();
        cache.Apply(Response("n1", [Res(Pod("a", [127, 0, 1, 1])), Res(Pod("b", [127, 0, 1, 2]))]));
        var result = cache.Apply(Response("n2", [Res(Pod("a", [127, 0, 1, 9]), "2")], "Kubernetes//Pod/demo/b", "never-held"));
        Assert.True(result.Accepted);
        Assert.Single(cache.Snapshot.Workloads);
        Assert.Equal(IPAddress.Parse("127.0.1.9"), cache.Snapshot.Workloads[0].Addresses[0]);
        var versions = new Dictionary<string, string>();
        cache.CopyVersions(XdsTypeUrls.Address, versions);
        Assert.Equal(new Dictionary<string, string> { ["Kubernetes//Pod/demo/a"] = "2" }, versions);
    }

    [Fact]
    public void A_workload_with_a_three_byte_address_is_nacked_with_a_message_and_the_last_good_snapshot_kept()
    {
        var cache = new DeltaXdsClientCache();
        cache.Apply(Response("n1", [Res(Pod("a", [127, 0, 1, 1]))]));
        var good = cache.Snapshot;

        // A good change and a bad resource in one response, plus a removal: none of it may stick.
        var result = cache.Apply(Response("n2", [Res(Pod("c", [127, 0, 1, 3])), Res(Pod("bad", [10, 0, 0]))], "Kubernetes//Pod/demo/a"));
        Assert.False(result.Accepted);
        Assert.Equal("n2", result.Reply.ResponseNonce);
        Assert.Equal(3, result.Reply.ErrorDetail.Code);
        Assert.Contains("Kubernetes//Pod/demo/bad", result.Reply.ErrorDetail.Message, StringComparison.Ordinal);
        Assert.Contains("3 address bytes", result.Reply.ErrorDetail.Message, StringComparison.Ordinal);
        Assert.Null(result.Snapshot);
        Assert.Same(good, cache.Snapshot);

        var versions = new Dictionary<string, string>();
        cache.CopyVersions(XdsTypeUrls.Address, versions);
        Assert.Equal(["Kubernetes//Pod/demo/a"], versions.Keys);

        // The next good response applies on top of the rolled-back state.
        Assert.True(cache.Apply(Response("n3", [Res(Pod("c", [127, 0, 1, 3]))])).Accepted);
        Assert.Equal(2, cache.Snapshot.Workloads.Length);
    }

    [Fact]
    public void Undecodable_bodies_wrong_types_and_empty_addresses_are_nacked_naming_the_resource()
    {
        var cache = new DeltaXdsClientCache();
        var garbage = new Resource { Name = "x", Version = "1", Resource_ = new Any { TypeUrl = XdsTypeUrls.Address, Value = ByteString.CopyFrom(0xFF, 0xFF, 0xFF) } };
        var r1 = cache.Apply(Response("n1", [garbage]));
        Assert.False(r1.Accepted);
        Assert.Contains("resource 'x'", r1.Error, StringComparison.Ordinal);

        var wrongType = new Resource { Name = "y", Resource_ = Any.Pack(new Authorization { Name = "p" }, "type.googleapis.com") };
        var r2 = cache.Apply(Response("n2", [wrongType]));
        Assert.False(r2.Accepted);
        Assert.Contains("istio.security.Authorization", r2.Error, StringComparison.Ordinal);

        var empty = new Resource { Name = "z", Resource_ = Any.Pack(new Address(), "type.googleapis.com") };
        Assert.Contains("neither a workload nor a service", cache.Apply(Response("n3", [empty])).Error, StringComparison.Ordinal);

        var unknownType = new DeltaDiscoveryResponse { TypeUrl = "type.googleapis.com/other", Nonce = "n4" };
        Assert.False(cache.Apply(unknownType).Accepted);

        // Two workloads claiming one uid under different resource names fail the snapshot build: rolled back.
        var dup = Res(Pod("a", [127, 0, 1, 1]));
        dup.Name = "alias-of-a";
        var r5 = cache.Apply(Response("n5", [Res(Pod("a", [127, 0, 1, 1])), dup]));
        Assert.False(r5.Accepted);
        Assert.Contains("duplicate workload uid", r5.Error, StringComparison.Ordinal);
        Assert.Equal(0, cache.Count(XdsTypeUrls.Address));
        Assert.Empty(cache.Snapshot.Workloads);
    }

    [Fact]
    public void Authorizations_are_kept_by_name()
    {
        var cache = new DeltaXdsClientCache();
        var response = new DeltaDiscoveryResponse { TypeUrl = XdsTypeUrls.Authorization, Nonce = "p1" };
        response.Resources.Add(new Resource { Name = "demo/allow", Version = "1", Resource_ = Any.Pack(new Authorization { Name = "allow", Namespace = "demo" }, "type.googleapis.com") });
        var result = cache.Apply(response);
        Assert.True(result.Accepted);
        Assert.Null(result.Snapshot);
        Assert.Equal("allow", Assert.Single(cache.Authorizations).Name);
        var removal = new DeltaDiscoveryResponse { TypeUrl = XdsTypeUrls.Authorization, Nonce = "p2" };
        removal.RemovedResources.Add("demo/allow");
        Assert.True(cache.Apply(removal).Accepted);
        Assert.Empty(cache.Authorizations);
    }
}

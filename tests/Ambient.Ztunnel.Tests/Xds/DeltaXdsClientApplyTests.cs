using Ambient.Core.Protos.Discovery;
using Ambient.Core.Protos.Workload;
using Ambient.Core.Xds;
using Ambient.TestCommon;
using Ambient.Dataplane.Xds;
using Google.Protobuf;
using Google.Protobuf.WellKnownTypes;
using Microsoft.Extensions.Logging.Abstractions;
using Resource = Ambient.Core.Protos.Discovery.Resource;

namespace Ambient.Ztunnel.Tests.Xds;

/// <summary>The client's side of applying a response (the cache itself is tested in Ambient.Core.Tests): publish, stats, backoff.</summary>
public sealed class DeltaXdsClientApplyTests
{
    private static DeltaDiscoveryResponse Response(string nonce, string name, params byte[] address)
    {
        var workload = new Workload
        {
            Uid = "Kubernetes//Pod/demo/" + name, Name = name, Namespace = "demo", ServiceAccount = "sa",
            TunnelProtocol = TunnelProtocol.Hbone, Node = "node-1",
        };
        workload.Addresses.Add(ByteString.CopyFrom(address));
        var response = new DeltaDiscoveryResponse { TypeUrl = XdsTypeUrls.Address, Nonce = nonce };
        response.Resources.Add(new Resource
        {
            Name = workload.Uid, Version = "1", Resource_ = Any.Pack(new Address { Workload = workload }, "type.googleapis.com"),
        });
        return response;
    }

    [Fact]
    public async Task The_client_publishes_accepted_snapshots_and_counts_nacks_without_publishing()
    {
        using var root = TestCertificates.CreateRoot();
        await using var client = new DeltaXdsClient(new DeltaXdsClientOptions
        {
            Address = new Uri("https://127.0.0.1:1"),
            Roots = [root],
            Token = () => "t",
            NodeName = "node-1",
        }, NullLogger.Instance);
        var published = 0;
        client.SnapshotChanged += _ => published++;
        var ack = client.Apply(Response("n1", "a", 127, 0, 1, 1), firstAfterConnect: true);
        Assert.Null(ack.ErrorDetail);
        var good = client.Current;
        var nack = client.Apply(Response("n2", "bad", 1, 2, 3), firstAfterConnect: false);
        Assert.Equal(3, nack.ErrorDetail.Code);
        Assert.Same(good, client.Current);
        Assert.Equal(1, published);
        Assert.Equal(1, client.Stats.Nacks);
        Assert.Equal(2, client.Stats.Responses);
        Assert.Equal(1, client.Stats.FirstResponseResources[XdsTypeUrls.Address]);
        Assert.Equal("ztunnel~127.0.0.1~ztunnel.istio-system~istio-system.svc.cluster.local", new DeltaXdsClientOptions
        {
            Address = new Uri("https://127.0.0.1:1"), Roots = [], Token = () => "", NodeName = "n",
        }.NodeId);

        // Backoff doubles from the initial value, is jittered to [50%, 100%], and stops at the cap.
        for (var failures = 1; failures <= 10; failures++)
        {
            var expected = Math.Min(500 * Math.Pow(2, failures - 1), 15000);
            var delay = client.Backoff(failures).TotalMilliseconds;
            Assert.InRange(delay, expected / 2, expected);
        }
    }
}

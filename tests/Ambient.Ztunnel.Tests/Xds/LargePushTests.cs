using Ambient.TestCommon;
using System.Diagnostics;
using Ambient.Core.Model;
using Ambient.Core.Protos.Workload;
using Ambient.Core.Xds;
using Ambient.Ztunnel.Tests.State;
using Google.Protobuf;

namespace Ambient.Ztunnel.Tests.Xds;

/// <summary>
/// Receive limits fit real meshes: a mesh of 50,000 workloads goes to a connecting ztunnel in one Address response
/// of ~10 MiB, past gRPC's customary 4 MiB; the ztunnel accepts up to 200 MiB as Istio's does.
/// </summary>
public sealed class LargePushTests
{
    private const int Workloads = 50_000;

    [Fact]
    public async Task An_initial_push_of_50000_workloads_arrives_and_is_applied()
    {
        await using var istiod = await IstiodTestHost.StartAsync(TestMeshes.Demo());
        var addresses = new List<Address>(Workloads);
        for (var i = 0; i < Workloads; i++)
        {
            var name = "w-" + i.ToString(System.Globalization.CultureInfo.InvariantCulture);
            var workload = new Workload
            {
                Uid = "Kubernetes//Pod/big/" + name, Name = name, Namespace = "big", ServiceAccount = "sa-" + (i % 100),
                Node = "node-" + (i % 500), TunnelProtocol = TunnelProtocol.Hbone, ClusterId = "Kubernetes",
                WorkloadName = "app-" + (i % 1000), CanonicalName = "app-" + (i % 1000), CanonicalRevision = "v1",
            };
            workload.Addresses.Add(ByteString.CopyFrom([10, (byte)(i >> 16), (byte)(i >> 8), (byte)i]));
            addresses.Add(new Address { Workload = workload });
        }
        var generation = istiod.Host.Mesh.Discovery.Publish(MeshSnapshot.FromProtos(addresses));
        var pushBytes = 0L;
        foreach (var r in generation.ResourcesFor(XdsTypeUrls.Address)!.Resources)
        {
            pushBytes += r.CalculateSize();
        }
        Assert.True(pushBytes > 8L * 1024 * 1024, $"the push is only {pushBytes} bytes: it would not test the limit");

        var log = new ListLogger();
        await using var client = istiod.CreateXdsClient("node-1", log);
        var watch = Stopwatch.StartNew();
        client.Start();
        try
        {
            await client.WaitForSyncAsync(TestContext.Current.CancellationToken).WaitAsync(TimeSpan.FromSeconds(60), TestContext.Current.CancellationToken);
        }
        catch (TimeoutException)
        {
            Assert.Fail($"no sync after 60 s ({pushBytes} bytes pushed); last error: {client.Stats.LastError}");
        }
        watch.Stop();

        var snapshot = client.Current;
        Assert.Equal(Workloads, snapshot.Workloads.Length);
        Assert.Equal("node-7", snapshot.FindWorkloadByUid("Kubernetes//Pod/big/w-49507")!.Node);
        Assert.Equal(Workloads, client.Stats.FirstResponseResources[XdsTypeUrls.Address]);
        Assert.Equal(0, client.Stats.Nacks);
        Assert.Equal(1, client.Stats.Connects);
        Assert.True(watch.Elapsed < TimeSpan.FromSeconds(20), $"the push took {watch.Elapsed.TotalSeconds:F1} s to arrive and apply");
    }
}

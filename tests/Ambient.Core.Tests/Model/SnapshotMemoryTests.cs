using Ambient.Core.Model;
using Ambient.Core.Xds;

namespace Ambient.Core.Tests.Model;

/// <summary>GC.GetTotalMemory sees every thread's allocations: run alone, after the parallel tests.</summary>
[CollectionDefinition(nameof(MemoryMeasurementCollection), DisableParallelization = true)]
public sealed class MemoryMeasurementCollection;

[Collection(nameof(MemoryMeasurementCollection))]
public class SnapshotMemoryTests
{
    private const int Pods = 10_000;

    [Fact]
    public void Snapshot_plus_address_resources_retain_under_3_KB_per_workload()
    {
        var config = SyntheticConfig.Generate(Pods);
        var before = GC.GetTotalMemory(forceFullCollection: true);

        var snapshot = MeshBuilder.Build(config);
        var set = XdsResourceSet.ForAddresses(snapshot);

        var after = GC.GetTotalMemory(forceFullCollection: true);
        GC.KeepAlive(config);
        Assert.Equal(Pods, snapshot.Workloads.Length);
        Assert.Equal(Pods + Pods / 10, set.Count);
        var perWorkload = (after - before) / (double)Pods;
        TestContext.Current.TestOutputHelper?.WriteLine($"retained {after - before:N0} bytes = {perWorkload:F0} bytes per workload");
        Assert.InRange(perWorkload, 100, 3 * 1024);
        GC.KeepAlive(snapshot);
        GC.KeepAlive(set);
    }
}

using System.Diagnostics;
using Ambient.Core.Config;
using Ambient.Core.Model;
using Ambient.Core.Xds;
using BenchmarkDotNet.Attributes;

namespace Ambient.Bench.Model;

/// <summary>
/// istiod's config-to-push path at 10,000 pods / 100 namespaces / 1,000 services. Goal: full rebuild + diff
/// under 50 ms, snapshot + address resources under 3 KB per workload (printed by <see cref="SnapshotProbe"/>
/// during setup).
/// Run: dotnet run -c Release --project bench/Ambient.Bench -- --filter '*SnapshotBenchmarks*' --job short
/// </summary>
[MemoryDiagnoser]
public class SnapshotBenchmarks
{
    private List<Resource> _config = [];
    private List<Resource> _changed = [];
    private MeshSnapshot _snapshot = MeshSnapshot.Empty;
    private XdsResourceSet _set = XdsResourceSet.Empty(XdsTypeUrls.Address);

    [GlobalSetup]
    public void Setup()
    {
        _config = SyntheticMesh.Generate();
        _changed = SyntheticMesh.WithOnePodChanged(_config, "v2");
        _snapshot = MeshBuilder.Build(_config);
        _set = XdsResourceSet.ForAddresses(_snapshot);
        Console.WriteLine(SnapshotProbe.Report(_config));
    }

    [Benchmark(Description = "MeshBuilder.Build")]
    public int Build() => MeshBuilder.Build(_config).Workloads.Length;

    [Benchmark(Description = "XdsResourceSet.ForAddresses")]
    public int BuildResourceSet() => XdsResourceSet.ForAddresses(_snapshot).Count;

    [Benchmark(Description = "Rebuild + resource set + Diff (one pod changed)")]
    public int RebuildAndDiff()
    {
        var next = XdsResourceSet.ForAddresses(MeshBuilder.Build(_changed), _set);
        var delta = XdsResourceSet.Diff(_set, next);
        return delta.Resources.Length;
    }
}

/// <summary>
/// A measurement without BenchmarkDotNet: bytes the snapshot + address resource set retain per workload
/// (GC.GetTotalMemory around building them) and a few stopwatch timings of the full rebuild + diff.
/// </summary>
internal static class SnapshotProbe
{
    public static string Report(List<Resource> config)
    {
        var before = GC.GetTotalMemory(forceFullCollection: true);
        var snapshot = MeshBuilder.Build(config);
        var set = XdsResourceSet.ForAddresses(snapshot);
        var after = GC.GetTotalMemory(forceFullCollection: true);
        var workloads = snapshot.Workloads.Length;
        GC.KeepAlive(snapshot);

        var changed = SyntheticMesh.WithOnePodChanged(config, "v9");
        var best = double.MaxValue;
        var changes = 0;
        for (var i = 0; i < 5; i++)
        {
            var sw = Stopwatch.StartNew();
            var next = XdsResourceSet.ForAddresses(MeshBuilder.Build(changed), set);
            changes = XdsResourceSet.Diff(set, next).Resources.Length;
            best = Math.Min(best, sw.Elapsed.TotalMilliseconds);
        }
        GC.KeepAlive(set);
        return $"// SnapshotProbe: {workloads:N0} workloads, {set.Count:N0} address resources, retained {after - before:N0} bytes = "
            + $"{(after - before) / (double)workloads:F0} bytes/workload; rebuild + diff best of 5: {best:F1} ms ({changes} changed)";
    }
}

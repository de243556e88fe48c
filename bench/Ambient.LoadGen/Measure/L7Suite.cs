using System.Text;
using Ambient.LoadGen.Client;

namespace Ambient.LoadGen.Measure;

/// <summary>What one setup measured at L7, every run kept (the report takes medians and spreads).</summary>
internal sealed record L7Result(
    string Name,
    string Target,
    List<double> MaxRequestsPerSecond,
    List<LatencyResult> Latency,
    Dictionary<string, List<double>> CpuSecondsPer100kAtRate,
    Dictionary<string, List<double>> CpuSecondsPer100kAtMax,
    List<ProcessResult> Processes);

internal sealed record L7Settings(
    int Runs,
    string Path,
    string Host,
    int Rate,
    int Connections,
    TimeSpan LatencyWarmup,
    TimeSpan LatencyDuration,
    int MaxConnections,
    TimeSpan MaxWarmup,
    TimeSpan MaxDuration);

/// <summary>
/// The L7 comparison: every setup gets the same keep-alive <c>GET</c> (same Host, same path, 1 KiB answer), first
/// open loop at a fixed rate (latency from the intended send time, see <see cref="OpenLoopLatency"/>), then closed
/// loop at the most the path gives. Interleaved and rotated per run like <see cref="Suite"/>, for the same reason:
/// the host is shared and its load drifts. CPU is read from /proc per proxy process around each measurement.
/// </summary>
internal static class L7Suite
{
    public static byte[] Request(string path, string host) =>
        Encoding.ASCII.GetBytes($"GET {path} HTTP/1.1\r\nHost: {host}\r\nUser-Agent: ambient-loadgen\r\n\r\n");

    public static async Task<List<L7Result>> RunAsync(IReadOnlyList<Setup> setups, L7Settings s, TextWriter log, CancellationToken ct)
    {
        var request = Request(s.Path, s.Host);
        var results = new List<L7Result>(setups.Count);
        foreach (var setup in setups)
        {
            log.WriteLine($"[{setup.Name}] warm-up through {setup.Target}");
            await OpenLoopLatency.RunAsync(setup.Target, request, s.Rate, s.Connections, TimeSpan.FromMilliseconds(500), TimeSpan.FromSeconds(1), ct).ConfigureAwait(false);
            await ClosedLoop.RunAsync(setup.Target, request, s.MaxConnections, TimeSpan.Zero, TimeSpan.FromSeconds(1), ct).ConfigureAwait(false);
            results.Add(new L7Result(setup.Name, setup.Target.ToString(), [], [], [], [], []));
        }
        for (var r = 0; r < s.Runs; r++)
        {
            for (var k = 0; k < setups.Count; k++)
            {
                var i = Suite.InRunOrder(k, r, setups.Count);
                var cpu0 = Cpu(setups[i]);
                var lat = await OpenLoopLatency.RunAsync(setups[i].Target, request, s.Rate, s.Connections, s.LatencyWarmup, s.LatencyDuration, ct).ConfigureAwait(false);
                results[i].Latency.Add(lat);
                // Every request sent counts, warm-up included: the CPU window covers them all.
                AddCpuPer100k(setups[i], cpu0, (s.LatencyWarmup + s.LatencyDuration).TotalSeconds * s.Rate, results[i].CpuSecondsPer100kAtRate);
                log.WriteLine($"[{setups[i].Name}] latency run {r + 1}: p50 {lat.P50Ms:F3} ms, p90 {lat.P90Ms:F3} ms, p99 {lat.P99Ms:F3} ms, max {lat.MaxMs:F3} ms, {lat.AchievedRps:F0} req/s, send lag {lat.MeanSendLagUs:F0} us");
            }
            for (var k = 0; k < setups.Count; k++)
            {
                var i = Suite.InRunOrder(k, r, setups.Count);
                var cpu0 = Cpu(setups[i]);
                var max = await ClosedLoop.RunAsync(setups[i].Target, request, s.MaxConnections, s.MaxWarmup, s.MaxDuration, ct).ConfigureAwait(false);
                results[i].MaxRequestsPerSecond.Add(max.RequestsPerSecond);
                AddCpuPer100k(setups[i], cpu0, max.RequestsIncludingWarmup, results[i].CpuSecondsPer100kAtMax);
                log.WriteLine($"[{setups[i].Name}] closed loop run {r + 1}: {max.RequestsPerSecond:F0} req/s over {s.MaxConnections} connections");
            }
        }
        for (var i = 0; i < setups.Count; i++)
        {
            foreach (var (name, pid) in setups[i].Processes)
            {
                results[i].Processes.Add(new ProcessResult(name, pid, ProcessStats.StatusMiB(pid, "VmHWM"), ProcessStats.StatusMiB(pid, "VmRSS"), ProcessStats.CpuSeconds(pid)));
            }
        }
        return results;
    }

    private static double[] Cpu(Setup setup)
    {
        var cpu = new double[setup.Processes.Count];
        for (var p = 0; p < cpu.Length; p++)
        {
            cpu[p] = ProcessStats.CpuSeconds(setup.Processes[p].Pid);
        }
        return cpu;
    }

    /// <summary>Per process and for the whole path ("all"): CPU seconds spent since <paramref name="before"/> per 100k requests.</summary>
    private static void AddCpuPer100k(Setup setup, double[] before, double requests, Dictionary<string, List<double>> into)
    {
        if (setup.Processes.Count == 0 || requests <= 0)
        {
            return;
        }
        double total = 0;
        for (var p = 0; p < before.Length; p++)
        {
            var used = ProcessStats.CpuSeconds(setup.Processes[p].Pid) - before[p];
            total += used;
            Add(into, setup.Processes[p].Name, used / requests * 100_000);
        }
        Add(into, "all", total / requests * 100_000);
    }

    private static void Add(Dictionary<string, List<double>> into, string key, double value)
    {
        if (!into.TryGetValue(key, out var list))
        {
            into[key] = list = [];
        }
        list.Add(value);
    }
}

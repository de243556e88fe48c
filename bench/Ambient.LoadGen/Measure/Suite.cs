using Ambient.LoadGen.Client;

namespace Ambient.LoadGen.Measure;

/// <summary>What one setup measured, every run kept (the report takes medians and spreads).</summary>
internal sealed record SuiteResult(
    string Name,
    string Target,
    int Runs,
    List<double> ThroughputGbps,
    List<LatencyResult> Latency,
    List<double> ConnectionsPerSecond,
    List<long> ConnectionErrors,
    List<double> CpuSecondsPer100kRequests,
    List<double> CpuSecondsPer100kConnections,
    List<ProcessResult> Processes);

internal sealed record ProcessResult(string Name, int Pid, double PeakRssMiB, double RssMiB, double CpuSecondsTotal);

internal sealed record SuiteSettings(
    int Runs,
    TimeSpan ThroughputWarmup,
    TimeSpan ThroughputDuration,
    int Rate,
    int Connections,
    int BodyBytes,
    TimeSpan LatencyWarmup,
    TimeSpan LatencyDuration,
    int ConnectWorkers,
    TimeSpan ConnectWarmup,
    TimeSpan ConnectDuration);

/// <summary>One setup's measurements in a fixed order: warm-up, throughput x runs, latency x runs, new connections x runs.</summary>
internal static class Suite
{
    public static async Task<SuiteResult> RunAsync(string name, Target target, SuiteSettings s, IReadOnlyList<(string Name, int Pid)> processes,
        TextWriter log, CancellationToken ct)
    {
        var pids = new List<int>(processes.Count);
        foreach (var p in processes)
        {
            pids.Add(p.Pid);
        }
        log.WriteLine($"[{name}] warm-up through {target}");
        await Throughput.RunGbpsAsync(target, TimeSpan.FromMilliseconds(200), TimeSpan.FromMilliseconds(500), ct).ConfigureAwait(false);
        await OpenLoopLatency.RunAsync(target, s.Rate, s.Connections, s.BodyBytes, TimeSpan.Zero + TimeSpan.FromMilliseconds(500), TimeSpan.FromSeconds(1), ct).ConfigureAwait(false);
        await ConnectionRate.RunAsync(target, s.ConnectWorkers, TimeSpan.Zero, TimeSpan.FromSeconds(1), ct).ConfigureAwait(false);

        var result = new SuiteResult(name, target.ToString(), s.Runs, [], [], [], [], [], [], []);
        for (var r = 0; r < s.Runs; r++)
        {
            var gbps = await Throughput.RunGbpsAsync(target, s.ThroughputWarmup, s.ThroughputDuration, ct).ConfigureAwait(false);
            result.ThroughputGbps.Add(gbps);
            log.WriteLine($"[{name}] throughput run {r + 1}: {gbps:F2} Gbps");
        }
        for (var r = 0; r < s.Runs; r++)
        {
            var cpu0 = ProcessStats.TotalCpu(pids);
            var lat = await OpenLoopLatency.RunAsync(target, s.Rate, s.Connections, s.BodyBytes, s.LatencyWarmup, s.LatencyDuration, ct).ConfigureAwait(false);
            var cpu = ProcessStats.TotalCpu(pids) - cpu0;
            var sent = (s.LatencyWarmup + s.LatencyDuration).TotalSeconds * s.Rate;
            result.Latency.Add(lat);
            if (pids.Count > 0)
            {
                result.CpuSecondsPer100kRequests.Add(cpu / sent * 100_000);
            }
            log.WriteLine($"[{name}] latency run {r + 1}: p50 {lat.P50Ms:F3} ms, p90 {lat.P90Ms:F3} ms, p99 {lat.P99Ms:F3} ms, max {lat.MaxMs:F3} ms, {lat.AchievedRps:F0} req/s, send lag {lat.MeanSendLagUs:F0} us");
        }
        for (var r = 0; r < s.Runs; r++)
        {
            var cpu0 = ProcessStats.TotalCpu(pids);
            var (perSecond, _, all, errors) = await ConnectionRate.RunAsync(target, s.ConnectWorkers, s.ConnectWarmup, s.ConnectDuration, ct).ConfigureAwait(false);
            var cpu = ProcessStats.TotalCpu(pids) - cpu0;
            result.ConnectionsPerSecond.Add(perSecond);
            result.ConnectionErrors.Add(errors);
            if (pids.Count > 0 && all > 0)
            {
                result.CpuSecondsPer100kConnections.Add(cpu / all * 100_000);
            }
            log.WriteLine($"[{name}] new connections run {r + 1}: {perSecond:F0}/s ({errors} errors)");
        }
        foreach (var (pname, pid) in processes)
        {
            result.Processes.Add(new ProcessResult(pname, pid, ProcessStats.StatusMiB(pid, "VmHWM"), ProcessStats.StatusMiB(pid, "VmRSS"), ProcessStats.CpuSeconds(pid)));
        }
        return result;
    }
}

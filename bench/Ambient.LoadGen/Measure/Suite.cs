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

/// <summary>The host's load average (1, 5, 15 min) as one phase's run began: the host is shared, so each run says how busy it was.</summary>
internal sealed record LoadSample(string Phase, int Run, string LoadAverage)
{
    public static LoadSample Now(string phase, int run)
    {
        string load;
        try
        {
            var parts = File.ReadAllText("/proc/loadavg").Split(' ');
            load = parts.Length >= 3 ? $"{parts[0]} {parts[1]} {parts[2]}" : "unknown";
        }
        catch (IOException)
        {
            load = "unknown";
        }
        return new LoadSample(phase, run, load);
    }
}

internal sealed record ProcessResult(string Name, int Pid, double PeakRssMiB, double RssMiB, double CpuSecondsTotal);

/// <summary>One way of reaching the echo server, and the proxy processes on that path (none for direct).</summary>
internal sealed record Setup(string Name, Target Target, IReadOnlyList<(string Name, int Pid)> Processes);

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

/// <summary>
/// All setups measured in one process, interleaved: warm-up of each, then for every run one throughput measurement
/// of each setup in turn, then the latency runs the same way, then new connections. The host is shared, so its load
/// drifts; interleaving spreads that drift over the setups instead of charging it to whichever ran last, and the
/// order rotates each run (<see cref="InRunOrder"/>) so no setup always runs right after the same other one.
/// </summary>
internal static class Suite
{
    /// <summary>The k-th setup measured in run <paramref name="run"/>: the order rotates by one each run, so no setup
    /// always follows the same one (whatever a phase leaves behind on the host is spread over all of them).</summary>
    internal static int InRunOrder(int k, int run, int count) => (k + run) % count;

    public static async Task<List<SuiteResult>> RunAsync(IReadOnlyList<Setup> setups, SuiteSettings s, TextWriter log, CancellationToken ct, List<LoadSample>? loads = null)
    {
        void Load(string phase, int run)
        {
            var sample = LoadSample.Now(phase, run + 1);
            loads?.Add(sample);
            log.WriteLine($"{phase} run {run + 1}: load average {sample.LoadAverage}");
        }

        var results = new List<SuiteResult>(setups.Count);
        foreach (var setup in setups)
        {
            log.WriteLine($"[{setup.Name}] warm-up through {setup.Target}");
            await Throughput.RunGbpsAsync(setup.Target, TimeSpan.FromMilliseconds(200), TimeSpan.FromMilliseconds(500), ct).ConfigureAwait(false);
            await OpenLoopLatency.RunAsync(setup.Target, s.Rate, s.Connections, s.BodyBytes, TimeSpan.FromMilliseconds(500), TimeSpan.FromSeconds(1), ct).ConfigureAwait(false);
            await ConnectionRate.RunAsync(setup.Target, s.ConnectWorkers, TimeSpan.Zero, TimeSpan.FromSeconds(1), ct).ConfigureAwait(false);
            results.Add(new SuiteResult(setup.Name, setup.Target.ToString(), s.Runs, [], [], [], [], [], [], []));
        }
        for (var r = 0; r < s.Runs; r++)
        {
            Load("throughput", r);
            for (var k = 0; k < setups.Count; k++)
            {
                var i = InRunOrder(k, r, setups.Count);
                var gbps = await Throughput.RunGbpsAsync(setups[i].Target, s.ThroughputWarmup, s.ThroughputDuration, ct).ConfigureAwait(false);
                results[i].ThroughputGbps.Add(gbps);
                log.WriteLine($"[{setups[i].Name}] throughput run {r + 1}: {gbps:F2} Gbps");
            }
        }
        LogPeakRss(setups, "warm-up and throughput", log);
        for (var r = 0; r < s.Runs; r++)
        {
            Load("latency", r);
            for (var k = 0; k < setups.Count; k++)
            {
                var i = InRunOrder(k, r, setups.Count);
                var pids = Pids(setups[i]);
                var cpu0 = ProcessStats.TotalCpu(pids);
                var lat = await OpenLoopLatency.RunAsync(setups[i].Target, s.Rate, s.Connections, s.BodyBytes, s.LatencyWarmup, s.LatencyDuration, ct).ConfigureAwait(false);
                var cpu = ProcessStats.TotalCpu(pids) - cpu0;
                results[i].Latency.Add(lat);
                if (pids.Count > 0)
                {
                    // Every request sent counts, warm-up included: the CPU window covers them all.
                    results[i].CpuSecondsPer100kRequests.Add(cpu / ((s.LatencyWarmup + s.LatencyDuration).TotalSeconds * s.Rate) * 100_000);
                }
                log.WriteLine($"[{setups[i].Name}] latency run {r + 1}: p50 {lat.P50Ms:F3} ms, p90 {lat.P90Ms:F3} ms, p99 {lat.P99Ms:F3} ms, max {lat.MaxMs:F3} ms, {lat.AchievedRps:F0} req/s, send lag {lat.MeanSendLagUs:F0} us");
            }
        }
        LogPeakRss(setups, "latency", log);
        for (var r = 0; r < s.Runs; r++)
        {
            Load("new connections", r);
            for (var k = 0; k < setups.Count; k++)
            {
                var i = InRunOrder(k, r, setups.Count);
                var pids = Pids(setups[i]);
                var cpu0 = ProcessStats.TotalCpu(pids);
                var (perSecond, _, all, errors) = await ConnectionRate.RunAsync(setups[i].Target, s.ConnectWorkers, s.ConnectWarmup, s.ConnectDuration, ct).ConfigureAwait(false);
                var cpu = ProcessStats.TotalCpu(pids) - cpu0;
                results[i].ConnectionsPerSecond.Add(perSecond);
                results[i].ConnectionErrors.Add(errors);
                if (pids.Count > 0 && all > 0)
                {
                    results[i].CpuSecondsPer100kConnections.Add(cpu / all * 100_000);
                }
                log.WriteLine($"[{setups[i].Name}] new connections run {r + 1}: {perSecond:F0}/s ({errors} errors)");
            }
        }
        LogPeakRss(setups, "new connections", log);
        for (var i = 0; i < setups.Count; i++)
        {
            foreach (var (name, pid) in setups[i].Processes)
            {
                results[i].Processes.Add(new ProcessResult(name, pid, ProcessStats.StatusMiB(pid, "VmHWM"), ProcessStats.StatusMiB(pid, "VmRSS"), ProcessStats.CpuSeconds(pid)));
            }
        }
        return results;
    }

    /// <summary>Peak RSS so far after each phase, so a footprint regression points at the traffic shape that caused it.</summary>
    private static void LogPeakRss(IReadOnlyList<Setup> setups, string phase, TextWriter log)
    {
        foreach (var setup in setups)
        {
            foreach (var (name, pid) in setup.Processes)
            {
                log.WriteLine($"[{setup.Name}] {name} after {phase}: peak RSS {ProcessStats.StatusMiB(pid, "VmHWM"):F1} MiB, RSS now {ProcessStats.StatusMiB(pid, "VmRSS"):F1} MiB");
            }
        }
    }

    private static List<int> Pids(Setup setup)
    {
        var pids = new List<int>(setup.Processes.Count);
        foreach (var p in setup.Processes)
        {
            pids.Add(p.Pid);
        }
        return pids;
    }
}

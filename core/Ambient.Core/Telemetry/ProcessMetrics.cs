using System.Diagnostics;
using System.Globalization;
using System.Text;

namespace Ambient.Core.Telemetry;

/// <summary>
/// The standard Prometheus process metrics (the names every client library and Istio's and Linkerd's proxies export,
/// so existing dashboards and alerts on proxy CPU and memory work unchanged), plus the managed heap, which is the
/// part of the footprint the code controls. Read at scrape time; nothing runs between scrapes.
/// </summary>
internal static class ProcessMetrics
{
    private static readonly double StartTimeSeconds = ReadStartTimeSeconds();

    public static void WritePrometheus(StringBuilder sb)
    {
        var gc = GC.GetGCMemoryInfo();
        OneSample(sb, "process_cpu_seconds_total", "counter", "Total user and system CPU time spent in seconds.", Environment.CpuUsage.TotalTime.TotalSeconds);
        OneSample(sb, "process_resident_memory_bytes", "gauge", "Resident memory size in bytes.", Environment.WorkingSet);
        OneSample(sb, "process_start_time_seconds", "gauge", "Start time of the process since unix epoch in seconds.", StartTimeSeconds);
        OneSample(sb, "process_open_fds", "gauge", "Number of open file descriptors.", CountEntries("/proc/self/fd"));
        OneSample(sb, "process_num_threads", "gauge", "Number of OS threads in the process.", CountEntries("/proc/self/task"));
        OneSample(sb, "dotnet_total_memory_bytes", "gauge", "Bytes of live managed objects, as of the last collection.", GC.GetTotalMemory(forceFullCollection: false));
        OneSample(sb, "dotnet_gc_committed_bytes", "gauge", "Bytes of memory the garbage collector has committed.", gc.TotalCommittedBytes);
        PrometheusWriter.Family(sb, "dotnet_collection_count_total", "counter", "Garbage collections per generation.");
        for (var generation = 0; generation <= GC.MaxGeneration; generation++)
        {
            sb.Append("dotnet_collection_count_total{generation=\"").Append(generation).Append("\"} ")
                .Append(GC.CollectionCount(generation)).Append('\n');
        }
    }

    private static void OneSample(StringBuilder sb, string name, string type, string help, double value) =>
        PrometheusWriter.Family(sb, name, type, help)
            .Append(name).Append(' ').Append(value.ToString("R", CultureInfo.InvariantCulture)).Append('\n');

    private static double ReadStartTimeSeconds()
    {
        using var self = Process.GetCurrentProcess();
        return (self.StartTime.ToUniversalTime() - DateTime.UnixEpoch).TotalSeconds;
    }

    // /proc is Linux's; elsewhere these read 0 rather than failing a scrape.
    private static int CountEntries(string directory)
    {
        try
        {
            var count = 0;
            foreach (var _ in Directory.EnumerateFileSystemEntries(directory))
                count++;
            return count;
        }
        catch (IOException) { return 0; }
        catch (UnauthorizedAccessException) { return 0; }
    }
}

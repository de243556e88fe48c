using System.Diagnostics;
using System.Runtime;
using System.Runtime.InteropServices;
using Microsoft.Extensions.Logging;

namespace Ambient.Core.Memory;

/// <summary>
/// Gives memory back to the OS once a burst of load is over. Measured with bench/run.sh memory:
/// <list type="bullet">
/// <item>ztunnel (level = open inbound connections): each idle connection cost ~50 KiB, most of it OpenSSL's state
///   (freed into glibc's heaps, which keep the pages) and managed objects that, on an idle proxy, no
///   allocation-triggered GC ever collects; 2,000 connections closed left RSS at 3.7x its value before them.</item>
/// <item>istiod-lite (level = workloads + services published): a 10 MiB config file removed left RSS at 2.3-2.7x:
///   the file's text, YAML tree and snapshot sit in gen2 and the large object heap, which nothing compacts.</item>
/// </list>
/// So: once the level has fallen by at least <see cref="MinimumDrop"/> from its peak and to at most half of it, and
/// has not fallen further for <see cref="QuietPeriod"/>, one full GC runs that compacts the large object heap and
/// decommits what it freed (aggressive mode), and glibc returns its free pages (<c>malloc_trim</c>). Churn at a
/// steady level never triggers it; a drain from thousands triggers it once, milliseconds on heaps this small.
/// </summary>
internal sealed partial class MemoryTrimmer : IDisposable
{
    private readonly ILogger _logger;
    private readonly string _what;
    private readonly Action _release;
    private readonly ITimer _timer;
    private readonly Lock _lock = new();
    private int _level;
    private int _peak;
    private int _trims;

    /// <param name="what">What the level counts, for the log line ("connections", "resources").</param>
    /// <param name="release">What runs once a burst is over; by default <see cref="ReleaseMemory"/> (tests observe it).</param>
    public MemoryTrimmer(ILogger logger, string what, int minimumDrop, TimeSpan quietPeriod, TimeProvider? time = null, Action? release = null)
    {
        ArgumentNullException.ThrowIfNull(logger);
        ArgumentOutOfRangeException.ThrowIfLessThan(minimumDrop, 1);
        ArgumentOutOfRangeException.ThrowIfLessThanOrEqual(quietPeriod, TimeSpan.Zero);
        _logger = logger;
        _what = what;
        _release = release ?? ReleaseMemory;
        MinimumDrop = minimumDrop;
        QuietPeriod = quietPeriod;
        _timer = (time ?? TimeProvider.System).CreateTimer(static s => ((MemoryTrimmer)s!).OnQuiet(), this,
            Timeout.InfiniteTimeSpan, Timeout.InfiniteTimeSpan);
    }

    public int MinimumDrop { get; }

    public TimeSpan QuietPeriod { get; }

    /// <summary>How many times memory was released.</summary>
    public int Trims => Volatile.Read(ref _trims);

    /// <summary>One more unit of load (a connection opened).</summary>
    public void Opened() => Change(+1);

    /// <summary>One unit of load less (a connection closed).</summary>
    public void Closed() => Change(-1);

    /// <summary>The load is now <paramref name="level"/> (e.g. resources in the published snapshot).</summary>
    public void SetLevel(int level)
    {
        lock (_lock)
        {
            Apply(level);
        }
    }

    private void Change(int delta)
    {
        lock (_lock)
        {
            Apply(_level + delta);
        }
    }

    private void Apply(int level)
    {
        var fell = level < _level;
        _level = level;
        _peak = Math.Max(_peak, level);
        if (fell && BurstOver())
        {
            // Re-armed by every fall: the release waits until the level stops falling.
            _timer.Change(QuietPeriod, Timeout.InfiniteTimeSpan);
        }
    }

    private bool BurstOver() => _peak - _level >= MinimumDrop && _level <= _peak / 2;

    private void OnQuiet()
    {
        int peak, level;
        lock (_lock)
        {
            if (!BurstOver())
            {
                return; // the load came back meanwhile
            }
            peak = _peak;
            level = _level;
            _peak = _level;
        }
        var before = Environment.WorkingSet;
        var clock = Stopwatch.StartNew();
        try
        {
            _release();
        }
        catch (Exception ex)
        {
            Log.ReleaseFailed(_logger, _what, ex);
            return;
        }
        Interlocked.Increment(ref _trims);
        Log.Released(_logger, peak, level, _what, clock.Elapsed.TotalMilliseconds, before / (1024.0 * 1024), Environment.WorkingSet / (1024.0 * 1024));
    }

    /// <summary>A full GC that compacts the large object heap too and decommits what it freed, then glibc's free pages back to the OS.</summary>
    public static void ReleaseMemory()
    {
        GCSettings.LargeObjectHeapCompactionMode = GCLargeObjectHeapCompactionMode.CompactOnce;
        GC.Collect(GC.MaxGeneration, GCCollectionMode.Aggressive, blocking: true, compacting: true);
        NativeHeap.Trim();
    }

    public void Dispose() => _timer.Dispose();

    /// <summary>glibc's <c>malloc_trim(0)</c>: returns free pages inside its heaps (not only at their top) to the OS.</summary>
    private static partial class NativeHeap
    {
        private static volatile bool s_unavailable = !OperatingSystem.IsLinux();

        public static void Trim()
        {
            if (s_unavailable)
            {
                return;
            }
            try
            {
                _ = MallocTrim(0);
            }
            catch (Exception ex) when (ex is EntryPointNotFoundException or DllNotFoundException)
            {
                s_unavailable = true; // not glibc (e.g. musl): the managed part is all we can do
            }
        }

        [LibraryImport("libc", EntryPoint = "malloc_trim")]
        private static partial int MallocTrim(nuint pad);
    }

    private static partial class Log
    {
        [LoggerMessage(1, LogLevel.Information, "load fell from {Peak} to {Level} {What}: memory returned to the OS in {Milliseconds:F1} ms (RSS {BeforeMiB:F1} -> {AfterMiB:F1} MiB)")]
        public static partial void Released(ILogger logger, int peak, int level, string what, double milliseconds, double beforeMiB, double afterMiB);

        [LoggerMessage(2, LogLevel.Warning, "returning memory to the OS after a burst of {What} failed")]
        public static partial void ReleaseFailed(ILogger logger, string what, Exception exception);
    }
}

using System.Diagnostics;
using System.Runtime.InteropServices;

namespace Ambient.Ztunnel.Memory;

/// <summary>
/// Gives memory back to the OS once a burst of connections is over. Each connection costs the node proxy some
/// 50 KiB, most of it outside anything a pool keeps: OpenSSL's per-connection state (freed into glibc's heaps, which
/// keep the pages) and managed objects that, on an idle proxy, no allocation-triggered GC ever collects. After 2,000
/// idle connections closed, RSS stayed at 3.7x its value before them (bench/run.sh memory).
/// <para>So: once the live count has fallen by at least <see cref="MinimumDrop"/> from its peak and to at most half
/// of it, and no connection has closed for <see cref="QuietPeriod"/>, one compacting, decommitting (aggressive)
/// full GC runs and glibc is asked to return its free pages (<c>malloc_trim</c>). Connection churn at a steady level
/// never triggers it; a proxy draining from thousands of connections triggers it once, a few milliseconds of
/// work on a heap this small.</para>
/// </summary>
internal sealed partial class ConnectionMemoryTrimmer : IDisposable
{
    public const int DefaultMinimumDrop = 256;
    public static readonly TimeSpan DefaultQuietPeriod = TimeSpan.FromSeconds(2);

    private readonly ILogger _logger;
    private readonly Action _release;
    private readonly ITimer _timer;
    private readonly Lock _lock = new();
    private int _live;
    private int _peak;
    private int _trims;

    /// <param name="release">What runs once a burst is over; by default <see cref="ReleaseMemory"/> (tests observe it).</param>
    public ConnectionMemoryTrimmer(ILogger logger, TimeProvider? time = null, Action? release = null,
        int minimumDrop = DefaultMinimumDrop, TimeSpan? quietPeriod = null)
    {
        ArgumentNullException.ThrowIfNull(logger);
        ArgumentOutOfRangeException.ThrowIfLessThan(minimumDrop, 1);
        _logger = logger;
        _release = release ?? ReleaseMemory;
        MinimumDrop = minimumDrop;
        QuietPeriod = quietPeriod ?? DefaultQuietPeriod;
        _timer = (time ?? TimeProvider.System).CreateTimer(static s => ((ConnectionMemoryTrimmer)s!).OnQuiet(), this,
            Timeout.InfiniteTimeSpan, Timeout.InfiniteTimeSpan);
    }

    public int MinimumDrop { get; }

    public TimeSpan QuietPeriod { get; }

    /// <summary>How many times memory was released (config_dump and tests).</summary>
    public int Trims => Volatile.Read(ref _trims);

    public void Opened()
    {
        lock (_lock)
        {
            _live++;
            _peak = Math.Max(_peak, _live);
        }
    }

    public void Closed()
    {
        lock (_lock)
        {
            _live--;
            if (BurstOver())
            {
                // Re-armed by every close: the release waits for the burst of closes to end.
                _timer.Change(QuietPeriod, Timeout.InfiniteTimeSpan);
            }
        }
    }

    private bool BurstOver() => _peak - _live >= MinimumDrop && _live <= _peak / 2;

    private void OnQuiet()
    {
        int peak, live;
        lock (_lock)
        {
            if (!BurstOver())
            {
                return; // connections came back meanwhile
            }
            peak = _peak;
            live = _live;
            _peak = _live;
        }
        var before = Environment.WorkingSet;
        var clock = Stopwatch.StartNew();
        try
        {
            _release();
        }
        catch (Exception ex)
        {
            Log.ReleaseFailed(_logger, ex);
            return;
        }
        Interlocked.Increment(ref _trims);
        Log.Released(_logger, peak - live, peak, clock.Elapsed.TotalMilliseconds, before / (1024.0 * 1024), Environment.WorkingSet / (1024.0 * 1024));
    }

    /// <summary>A full, compacting GC that also decommits what it freed, then glibc's free pages back to the OS.</summary>
    public static void ReleaseMemory()
    {
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
                s_unavailable = true; // not glibc (e.g. musl): the managed part above is all we can do
            }
        }

        [LibraryImport("libc", EntryPoint = "malloc_trim")]
        private static partial int MallocTrim(nuint pad);
    }

    private static partial class Log
    {
        [LoggerMessage(1, LogLevel.Information, "{Closed} connections closed since the peak of {Peak}: memory returned to the OS in {Milliseconds:F1} ms (RSS {BeforeMiB:F1} -> {AfterMiB:F1} MiB)")]
        public static partial void Released(ILogger logger, int closed, int peak, double milliseconds, double beforeMiB, double afterMiB);

        [LoggerMessage(2, LogLevel.Warning, "returning memory to the OS after a burst of connections failed")]
        public static partial void ReleaseFailed(ILogger logger, Exception exception);
    }
}

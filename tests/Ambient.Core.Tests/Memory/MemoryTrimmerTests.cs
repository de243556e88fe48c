using Ambient.Core.Memory;
using Ambient.TestCommon;
using Microsoft.Extensions.Logging.Abstractions;

namespace Ambient.Core.Tests.Memory;

/// <summary>
/// Memory goes back to the OS once a burst of load is over (2,000 idle HBONE connections left the AOT ztunnel at
/// 3.7x its RSS before them; a removed 10 MiB config file left istiod-lite at 2.3x), and only then: steady churn
/// never pays for a full GC. A manual clock makes "not yet" a deterministic check.
/// </summary>
public sealed class MemoryTrimmerTests
{
    private static readonly TimeSpan Quiet = TimeSpan.FromSeconds(2);

    private sealed class Harness
    {
        public ManualTimeProvider Time { get; } = new();
        public int Releases;
        public MemoryTrimmer Trimmer { get; }

        public Harness(int minimumDrop = 10) =>
            Trimmer = new MemoryTrimmer(NullLogger.Instance, "connections", minimumDrop, Quiet, Time, () => Releases++);

        public void Open(int n)
        {
            for (var i = 0; i < n; i++)
            {
                Trimmer.Opened();
            }
        }

        public void Close(int n)
        {
            for (var i = 0; i < n; i++)
            {
                Trimmer.Closed();
            }
        }
    }

    [Fact]
    public void Releases_once_when_a_burst_has_closed_and_the_closes_have_stopped()
    {
        var h = new Harness();
        h.Open(20);
        h.Close(20);
        h.Time.Advance(Quiet - TimeSpan.FromMilliseconds(1));
        Assert.Equal(0, h.Releases);
        h.Time.Advance(TimeSpan.FromMilliseconds(1));
        Assert.Equal(1, h.Releases);
        Assert.Equal(1, h.Trimmer.Trims);
        h.Time.Advance(TimeSpan.FromMinutes(10));
        Assert.Equal(1, h.Releases);
    }

    [Fact]
    public void Every_close_restarts_the_quiet_period()
    {
        var h = new Harness();
        h.Open(40);
        h.Close(20); // down by 20 (>= 10) to half the peak: a burst is over
        h.Time.Advance(Quiet - TimeSpan.FromMilliseconds(500));
        h.Close(5);
        h.Time.Advance(Quiet - TimeSpan.FromMilliseconds(1));
        Assert.Equal(0, h.Releases);
        h.Time.Advance(TimeSpan.FromMilliseconds(1));
        Assert.Equal(1, h.Releases);
    }

    [Fact]
    public void Steady_churn_at_any_level_never_releases()
    {
        var h = new Harness();
        h.Open(30);
        for (var i = 0; i < 1000; i++)
        {
            h.Close(1);
            h.Open(1);
            h.Time.Advance(TimeSpan.FromMilliseconds(10));
        }
        // A small dip (fewer than the minimum drop) is churn too.
        h.Close(9);
        h.Time.Advance(TimeSpan.FromMinutes(1));
        Assert.Equal(0, h.Releases);
    }

    [Fact]
    public void Connections_coming_back_before_the_quiet_period_ends_cancel_the_release()
    {
        var h = new Harness();
        h.Open(20);
        h.Close(20);
        h.Open(15); // above half the peak again
        h.Time.Advance(TimeSpan.FromMinutes(1));
        Assert.Equal(0, h.Releases);
    }

    [Fact]
    public void The_next_burst_is_measured_from_the_level_after_the_release()
    {
        var h = new Harness();
        h.Open(100);
        h.Close(95);
        h.Time.Advance(Quiet);
        Assert.Equal(1, h.Releases);
        // 5 left; a burst of 12 more and back down to 5 is a drop of 12 from a peak of 17: released again.
        h.Open(12);
        h.Close(12);
        h.Time.Advance(Quiet);
        Assert.Equal(2, h.Releases);
    }

    [Fact]
    public void A_level_that_falls_by_half_releases_once_it_stops_falling()
    {
        var h = new Harness(minimumDrop: 1000);
        h.Trimmer.SetLevel(3);
        h.Trimmer.SetLevel(35_643); // a 10 MiB file of resources published
        h.Time.Advance(TimeSpan.FromMinutes(1));
        Assert.Equal(0, h.Releases);
        h.Trimmer.SetLevel(20_000); // part of it removed: down by more than 1000, but not to half
        h.Time.Advance(TimeSpan.FromMinutes(1));
        Assert.Equal(0, h.Releases);
        h.Trimmer.SetLevel(3); // the file removed
        h.Time.Advance(Quiet);
        Assert.Equal(1, h.Releases);
    }

    [Fact]
    public void A_failing_release_is_logged_not_thrown_and_not_counted()
    {
        var time = new ManualTimeProvider();
        using var trimmer = new MemoryTrimmer(NullLogger.Instance, "connections", 1, Quiet, time, () => throw new InvalidOperationException("boom"));
        trimmer.SetLevel(10);
        trimmer.SetLevel(0);
        time.Advance(Quiet);
        Assert.Equal(0, trimmer.Trims);
    }

    [Fact]
    public void The_default_release_runs_on_this_platform()
    {
        // A full aggressive GC with large object heap compaction and malloc_trim (nothing native without glibc).
        MemoryTrimmer.ReleaseMemory();
    }
}

using System.Diagnostics;
using Ambient.LoadGen.Measure;

namespace Ambient.LoadGen.Memory;

/// <summary>
/// Samples one process's resident set (VmRSS of /proc/PID/status) every <see cref="Interval"/> on its own task, so a
/// short peak between the phase boundaries is not missed. Figures in MiB.
/// </summary>
internal sealed class RssSampler : IAsyncDisposable
{
    public static readonly TimeSpan Interval = TimeSpan.FromMilliseconds(100);

    private readonly int _pid;
    private readonly Lock _lock = new();
    private readonly CancellationTokenSource _stop = new();
    private readonly Task _loop;
    private readonly Stopwatch _clock = Stopwatch.StartNew();
    private readonly List<(double Seconds, double Mib)> _samples = [];
    private int _windowStart;

    public RssSampler(int pid)
    {
        _pid = pid;
        Sample();
        _loop = Task.Run(LoopAsync);
    }

    public double Now() => ProcessStats.StatusMiB(_pid, "VmRSS");

    /// <summary>Starts a new window for <see cref="WindowPeak"/>.</summary>
    public void StartWindow()
    {
        lock (_lock)
        {
            _windowStart = _samples.Count;
        }
        Sample();
    }

    /// <summary>The largest sample since <see cref="StartWindow"/>.</summary>
    public double WindowPeak()
    {
        Sample();
        lock (_lock)
        {
            var peak = 0.0;
            for (var i = _windowStart; i < _samples.Count; i++)
            {
                peak = Math.Max(peak, _samples[i].Mib);
            }
            return peak;
        }
    }

    /// <summary>The median of samples taken over <paramref name="duration"/> from now: a steady figure, not one tick's.</summary>
    public async Task<double> SteadyAsync(TimeSpan duration, CancellationToken ct)
    {
        var values = new List<double>();
        var end = _clock.Elapsed + duration;
        while (_clock.Elapsed < end)
        {
            values.Add(Now());
            await Task.Delay(Interval, ct).ConfigureAwait(false);
        }
        values.Sort();
        return values[values.Count / 2];
    }

    private void Sample()
    {
        var value = Now();
        lock (_lock)
        {
            _samples.Add((_clock.Elapsed.TotalSeconds, value));
        }
    }

    private async Task LoopAsync()
    {
        while (!_stop.IsCancellationRequested)
        {
            try
            {
                Sample();
                await Task.Delay(Interval, _stop.Token).ConfigureAwait(false);
            }
            catch (OperationCanceledException)
            {
                return;
            }
            catch (IOException)
            {
                return; // the process exited
            }
        }
    }

    public async ValueTask DisposeAsync()
    {
        await _stop.CancelAsync().ConfigureAwait(false);
        await _loop.ConfigureAwait(false);
        _stop.Dispose();
    }
}

namespace Ambient.TestCommon;

/// <summary>
/// A clock that moves only when the test says so, for code that takes a <see cref="TimeProvider"/>: timers fire
/// synchronously inside <see cref="Advance"/>, in due order, and a test can wait (on an event, not a sleep) until the
/// code under test has armed a timer. So "renews at half-life" or "rescans every 500 ms" is checked in logical time,
/// whatever the load on the machine: a timer due at T has not fired at T - 1 tick, and has fired at T.
/// </summary>
public sealed class ManualTimeProvider : TimeProvider
{
    private readonly Lock _lock = new();
    private readonly List<ManualTimer> _timers = [];
    private readonly List<(Func<TimeSpan, bool> Match, TaskCompletionSource<TimeSpan> Armed)> _waiters = [];
    private DateTimeOffset _now;
    private long _elapsedTicks;

    /// <param name="start">The first "now"; default the real time rounded down to a whole second (X.509 times have
    /// second precision, so certificates issued against this clock compare exactly).</param>
    public ManualTimeProvider(DateTimeOffset? start = null)
    {
        var now = start ?? DateTimeOffset.UtcNow;
        _now = new DateTimeOffset(now.Ticks - now.Ticks % TimeSpan.TicksPerSecond, TimeSpan.Zero);
    }

    public override DateTimeOffset GetUtcNow()
    {
        lock (_lock) return _now;
    }

    public override long TimestampFrequency => TimeSpan.TicksPerSecond;

    public override long GetTimestamp()
    {
        lock (_lock) return _elapsedTicks;
    }

    /// <summary>How far the clock has been moved since it was made.</summary>
    public TimeSpan Elapsed => TimeSpan.FromTicks(GetTimestamp());

    /// <summary>The remaining due times of the armed timers, soonest first.</summary>
    public IReadOnlyList<TimeSpan> PendingTimers
    {
        get
        {
            lock (_lock)
            {
                var list = new List<TimeSpan>();
                foreach (var t in _timers)
                {
                    if (t.DueAt is { } due) list.Add(TimeSpan.FromTicks(due - _elapsedTicks));
                }
                list.Sort();
                return list;
            }
        }
    }

    public override ITimer CreateTimer(TimerCallback callback, object? state, TimeSpan dueTime, TimeSpan period)
    {
        var timer = new ManualTimer(this, callback, state);
        lock (_lock) _timers.Add(timer);
        timer.Change(dueTime, period);
        return timer;
    }

    /// <summary>
    /// Completes with the due time of a timer armed (now or later) with a due time <paramref name="match"/> accepts;
    /// fails the test after <paramref name="timeout"/> of real time, naming the timers that are armed.
    /// </summary>
    public async Task<TimeSpan> WaitForTimerAsync(Func<TimeSpan, bool> match, TimeSpan timeout, string what)
    {
        var armed = new TaskCompletionSource<TimeSpan>(TaskCreationOptions.RunContinuationsAsynchronously);
        lock (_lock)
        {
            foreach (var t in _timers)
            {
                if (t.DueAt is { } due && match(TimeSpan.FromTicks(due - _elapsedTicks)))
                {
                    return TimeSpan.FromTicks(due - _elapsedTicks);
                }
            }
            _waiters.Add((match, armed));
        }
        try
        {
            return await armed.Task.WaitAsync(timeout);
        }
        catch (TimeoutException)
        {
            lock (_lock) _waiters.RemoveAll(w => w.Armed == armed);
            throw new TimeoutException($"no timer for {what} was armed within {timeout.TotalSeconds:0} s; armed: [{string.Join(", ", PendingTimers)}]");
        }
    }

    /// <summary>Moves the clock forward, firing every timer that falls due on the way at its own due time.</summary>
    public void Advance(TimeSpan by)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(by, TimeSpan.Zero);
        long target;
        lock (_lock) target = _elapsedTicks + by.Ticks;
        while (true)
        {
            ManualTimer? next = null;
            lock (_lock)
            {
                foreach (var t in _timers)
                {
                    if (t.DueAt is { } due && due <= target && (next is null || due < next.DueAt)) next = t;
                }
                if (next is null)
                {
                    _now += TimeSpan.FromTicks(target - _elapsedTicks);
                    _elapsedTicks = target;
                    return;
                }
                _now += TimeSpan.FromTicks(next.DueAt!.Value - _elapsedTicks);
                _elapsedTicks = next.DueAt!.Value;
                next.DueAt = next.Period is { } period ? _elapsedTicks + Math.Max(period.Ticks, 1) : null;
            }
            // Outside the lock: the callback (a Task.Delay or a cancellation) may read the clock or arm a timer.
            next.Fire();
        }
    }

    private void Arm(ManualTimer timer, TimeSpan dueTime, TimeSpan period)
    {
        List<TaskCompletionSource<TimeSpan>>? matched = null;
        lock (_lock)
        {
            if (dueTime == Timeout.InfiniteTimeSpan)
            {
                timer.DueAt = null;
                return;
            }
            timer.DueAt = _elapsedTicks + dueTime.Ticks;
            timer.Period = period == Timeout.InfiniteTimeSpan || period == TimeSpan.Zero ? null : period;
            for (var i = _waiters.Count - 1; i >= 0; i--)
            {
                if (_waiters[i].Match(dueTime))
                {
                    (matched ??= []).Add(_waiters[i].Armed);
                    _waiters.RemoveAt(i);
                }
            }
        }
        if (matched is not null)
        {
            foreach (var tcs in matched) tcs.TrySetResult(dueTime);
        }
    }

    private void Remove(ManualTimer timer)
    {
        lock (_lock) _timers.Remove(timer);
    }

    private sealed class ManualTimer(ManualTimeProvider owner, TimerCallback callback, object? state) : ITimer
    {
        // Guarded by the owner's lock.
        public long? DueAt { get; set; }

        public TimeSpan? Period { get; set; }

        public bool Change(TimeSpan dueTime, TimeSpan period)
        {
            owner.Arm(this, dueTime, period);
            return true;
        }

        public void Fire() => callback(state);

        public void Dispose() => owner.Remove(this);

        public ValueTask DisposeAsync()
        {
            Dispose();
            return ValueTask.CompletedTask;
        }
    }
}

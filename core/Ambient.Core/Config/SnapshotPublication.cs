namespace Ambient.Core.Config;

/// <summary>
/// The publishing half every <see cref="IConfigSource"/> shares: the current snapshot, callers waiting for a
/// generation (<see cref="IConfigSource.WaitForGenerationAsync"/>), and raising <c>Changed</c> so that one failing
/// handler neither stops the source nor starves the others.
/// </summary>
internal sealed class SnapshotPublication
{
    private readonly Lock _lock = new();
    private readonly List<(long Generation, TaskCompletionSource<ConfigSnapshot> Tcs)> _waiters = [];
    private readonly string _owner;
    private volatile ConfigSnapshot _current = ConfigSnapshot.Empty;
    private bool _closed;

    /// <param name="owner">The source's name, for the ObjectDisposedException of waits that outlive it.</param>
    public SnapshotPublication(string owner) => _owner = owner;

    public ConfigSnapshot Current => _current;

    /// <summary>Completes when <see cref="Current"/> reaches <paramref name="generation"/> (at once if it has).</summary>
    public Task<ConfigSnapshot> WaitAsync(long generation, CancellationToken ct)
    {
        var current = _current;
        if (current.Generation >= generation) return Task.FromResult(current);
        var tcs = new TaskCompletionSource<ConfigSnapshot>(TaskCreationOptions.RunContinuationsAsynchronously);
        lock (_lock)
        {
            current = _current;
            if (current.Generation >= generation) return Task.FromResult(current);
            if (_closed) return Task.FromException<ConfigSnapshot>(new ObjectDisposedException(_owner));
            _waiters.Add((generation, tcs));
        }
        if (ct.CanBeCanceled)
        {
            var registration = ct.Register(() =>
            {
                lock (_lock) _waiters.RemoveAll(w => w.Tcs == tcs);
                tcs.TrySetCanceled(ct);
            });
            _ = tcs.Task.ContinueWith(static (_, r) => ((CancellationTokenRegistration)r!).Dispose(), registration, TaskScheduler.Default);
        }
        return tcs.Task;
    }

    /// <summary>Makes <paramref name="next"/> current and completes the waits it satisfies.</summary>
    public void Publish(ConfigSnapshot next)
    {
        List<TaskCompletionSource<ConfigSnapshot>>? ready = null;
        lock (_lock)
        {
            _current = next;
            for (var i = _waiters.Count - 1; i >= 0; i--)
            {
                if (_waiters[i].Generation <= next.Generation)
                {
                    (ready ??= []).Add(_waiters[i].Tcs);
                    _waiters.RemoveAt(i);
                }
            }
        }
        if (ready is not null)
        {
            foreach (var tcs in ready) tcs.TrySetResult(next);
        }
    }

    /// <summary>Calls each handler with <paramref name="snapshot"/>; one that throws is reported to <paramref name="failed"/>.</summary>
    public static void Raise(Action<ConfigSnapshot>? handlers, ConfigSnapshot snapshot, Action<ConfigSnapshot, Exception> failed)
    {
        if (handlers is null) return;
        foreach (var d in handlers.GetInvocationList())
        {
            try
            {
                ((Action<ConfigSnapshot>)d)(snapshot);
            }
            catch (Exception ex)
            {
                // A subscriber's bug must not stop the source or starve the other subscribers.
                failed(snapshot, ex);
            }
        }
    }

    /// <summary>Fails every pending wait (the source is disposed); later waits fail at once.</summary>
    public void Close()
    {
        lock (_lock)
        {
            _closed = true;
            foreach (var (_, tcs) in _waiters) tcs.TrySetException(new ObjectDisposedException(_owner));
            _waiters.Clear();
        }
    }
}

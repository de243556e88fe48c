using System.Threading.Tasks.Sources;

namespace Ambient.Hbone;

/// <summary>
/// A reusable, allocation-free "something changed, look again" signal with one waiter (a stream's writer waiting for
/// flow-control window). Sticky: a <see cref="Set"/> with nobody waiting completes the next wait at once, so a window
/// update racing with the writer's check is never lost. Waiters re-check their condition after waking.
/// </summary>
internal sealed class AsyncSignal : IValueTaskSource
{
    private readonly object _lock = new();
    private ManualResetValueTaskSourceCore<bool> _core = new() { RunContinuationsAsynchronously = true };
    private CancellationTokenRegistration _registration;
    private bool _signaled;
    private bool _waiting;

    public ValueTask WaitAsync(CancellationToken cancellationToken)
    {
        lock (_lock)
        {
            if (_signaled)
            {
                _signaled = false;
                return default;
            }
            if (_waiting)
            {
                throw new InvalidOperationException("concurrent writes on one HBONE stream are not supported");
            }
            cancellationToken.ThrowIfCancellationRequested();
            _core.Reset();
            _waiting = true;
            short version = _core.Version;
            if (cancellationToken.CanBeCanceled)
            {
                _registration = cancellationToken.UnsafeRegister(static (state, token) => ((AsyncSignal)state!).Cancel(token), this);
            }
            return new ValueTask(this, version);
        }
    }

    public void Set()
    {
        lock (_lock)
        {
            if (!_waiting)
            {
                _signaled = true;
                return;
            }
            _waiting = false;
            // Unregister, not Dispose: Dispose would wait for a running callback that needs this lock.
            _registration.Unregister();
            _registration = default;
            _core.SetResult(true);
        }
    }

    private void Cancel(CancellationToken token)
    {
        lock (_lock)
        {
            if (!_waiting)
            {
                return;
            }
            _waiting = false;
            _registration = default;
            _core.SetException(new OperationCanceledException(token));
        }
    }

    void IValueTaskSource.GetResult(short token) => _core.GetResult(token);

    ValueTaskSourceStatus IValueTaskSource.GetStatus(short token) => _core.GetStatus(token);

    void IValueTaskSource.OnCompleted(Action<object?> continuation, object? state, short token, ValueTaskSourceOnCompletedFlags flags) =>
        _core.OnCompleted(continuation, state, token, flags);
}

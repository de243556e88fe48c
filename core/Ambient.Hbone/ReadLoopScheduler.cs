using System.IO.Pipelines;

namespace Ambient.Hbone;

/// <summary>
/// The reader scheduler of an <see cref="HboneStream"/>'s receive pipe. When the connection's read loop delivers
/// DATA it wakes the tunnel's reader (a relay writing to a local socket) on its own thread, after it has let go of
/// the stream's lock, so the reader runs until its next await as a tokio task would: no thread-pool hop, no context
/// switch per DATA frame. Every other wake-up (completion on dispose, failure, END_STREAM) goes to the thread pool as
/// before, because those callers may hold locks the reader's continuation would take in another order.
/// </summary>
internal sealed class ReadLoopScheduler : PipeScheduler
{
    public static readonly ReadLoopScheduler Instance = new();

    [ThreadStatic] private static bool t_deferring;
    [ThreadStatic] private static Action<object?>? t_action;
    [ThreadStatic] private static object? t_state;

    private ReadLoopScheduler()
    {
    }

    public override void Schedule(Action<object?> action, object? state)
    {
        if (t_deferring && t_action is null)
        {
            t_action = action;
            t_state = state;
            return;
        }
        ThreadPool.Schedule(action, state);
    }

    /// <summary>From here until <see cref="RunDeferred"/>, a reader woken on this thread is held, not queued.</summary>
    public static void BeginDeferring() => t_deferring = true;

    /// <summary>Stops holding and runs the reader woken meanwhile, if any. Call with no locks held.</summary>
    public static void RunDeferred()
    {
        t_deferring = false;
        var action = t_action;
        var state = t_state;
        t_action = null;
        t_state = null;
        action?.Invoke(state);
    }
}

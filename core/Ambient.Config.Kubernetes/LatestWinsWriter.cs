using Microsoft.Extensions.Logging;

namespace Ambient.Config.Kubernetes;

/// <summary>
/// Writes what the mesh wants into the API in the background, one input at a time and only the latest: inputs that
/// arrive while a write is under way replace each other, so a burst of pushes costs one pass. A pass that could not
/// write everything (the API server refused or was away) is repeated after <see cref="RetryDelay"/>, unless a newer
/// input came meanwhile.
/// </summary>
internal abstract partial class LatestWinsWriter<T> : IDisposable where T : class
{
    private static readonly TimeSpan RetryDelay = TimeSpan.FromSeconds(2);

    private readonly ILogger _logger;
    private readonly SemaphoreSlim _signal = new(0, 1);
    private readonly CancellationTokenSource _stop = new();
    private readonly Task _loop;
    private T? _pending;
    private TaskCompletionSource _idle = Completed();

    protected LatestWinsWriter(ILogger logger)
    {
        _logger = logger;
        // Waits for the first Update, which comes only once the derived constructor has run.
        _loop = Task.Run(() => RunAsync(_stop.Token));
    }

    /// <summary>Completes once the latest <see cref="Update"/> has been written (for tests).</summary>
    public Task Idle => Volatile.Read(ref _idle).Task;

    /// <summary>Takes a new input; written in the background, the latest one wins.</summary>
    public void Update(T input)
    {
        Interlocked.Exchange(ref _pending, input);
        var idle = Volatile.Read(ref _idle);
        if (idle.Task.IsCompleted) Interlocked.CompareExchange(ref _idle, new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously), idle);
        try { _signal.Release(); }
        catch (SemaphoreFullException) { }
    }

    /// <summary>Writes what <paramref name="input"/> asks for; false when something could not be written (tried again later).</summary>
    protected abstract Task<bool> WriteAsync(T input, CancellationToken ct);

    private async Task RunAsync(CancellationToken ct)
    {
        while (!ct.IsCancellationRequested)
        {
            try
            {
                await _signal.WaitAsync(ct).ConfigureAwait(false);
                while (Interlocked.Exchange(ref _pending, null) is { } input)
                {
                    if (!await WriteAsync(input, ct).ConfigureAwait(false) && Volatile.Read(ref _pending) is null)
                    {
                        await Task.Delay(RetryDelay, ct).ConfigureAwait(false);
                        Interlocked.CompareExchange(ref _pending, input, null);
                    }
                }
                Volatile.Read(ref _idle).TrySetResult();
            }
            catch (OperationCanceledException) when (ct.IsCancellationRequested)
            {
                break;
            }
            catch (Exception e)
            {
                Log.Failed(_logger, GetType().Name, e);
            }
        }
    }

    private static TaskCompletionSource Completed()
    {
        var tcs = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        tcs.SetResult();
        return tcs;
    }

    public void Dispose()
    {
        _stop.Cancel();
        try { _loop.Wait(TimeSpan.FromSeconds(5)); }
        catch (AggregateException) { }
        GC.SuppressFinalize(this);
    }

    private static partial class Log
    {
        [LoggerMessage(1, LogLevel.Error, "{Writer} failed")]
        public static partial void Failed(ILogger logger, string writer, Exception exception);
    }
}

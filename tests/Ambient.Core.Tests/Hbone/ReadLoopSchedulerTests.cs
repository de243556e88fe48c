using System.Buffers;
using System.IO.Pipelines;
using Ambient.Hbone;

namespace Ambient.Core.Tests.Hbone;

/// <summary>The receive pipe's reader runs on the read loop's thread only after the loop let go of its locks.</summary>
public sealed class ReadLoopSchedulerTests
{
    private static Pipe NewPipe() => new(new PipeOptions(readerScheduler: ReadLoopScheduler.Instance, writerScheduler: PipeScheduler.Inline,
        pauseWriterThreshold: 0, resumeWriterThreshold: 0, useSynchronizationContext: false));

    [Fact]
    public async Task A_reader_woken_while_deferring_runs_on_this_thread_at_RunDeferred_and_not_before()
    {
        var pipe = NewPipe();
        int? readerThread = null;
        var lockHeldWhenReaderRan = true;
        var gate = new object();
        async Task ReadOnceAsync()
        {
            var result = await pipe.Reader.ReadAsync();
            readerThread = Environment.CurrentManagedThreadId;
            lockHeldWhenReaderRan = Monitor.IsEntered(gate);
            pipe.Reader.AdvanceTo(result.Buffer.End);
        }
        var reading = ParkReader(ReadOnceAsync);

        ReadLoopScheduler.BeginDeferring();
        lock (gate)
        {
            pipe.Writer.Write(new byte[] { 1, 2, 3 });
            _ = pipe.Writer.FlushAsync();
            Assert.Null(readerThread); // held, not run under the lock
        }
        ReadLoopScheduler.RunDeferred();

        Assert.Equal(Environment.CurrentManagedThreadId, readerThread);
        Assert.False(lockHeldWhenReaderRan);
        await reading;
    }

    [Fact]
    public async Task A_reader_woken_outside_the_read_loop_goes_to_the_thread_pool()
    {
        var pipe = NewPipe();
        var self = 0;
        var insideComplete = false;
        var ranInline = new TaskCompletionSource<bool>(TaskCreationOptions.RunContinuationsAsynchronously);
        async Task ReadOnceAsync()
        {
            await pipe.Reader.ReadAsync();
            ranInline.TrySetResult(Volatile.Read(ref insideComplete) && Environment.CurrentManagedThreadId == Volatile.Read(ref self));
        }
        _ = ParkReader(ReadOnceAsync);

        // e.g. a dispose on another thread, maybe holding locks: it must not run the reader inside its call
        Volatile.Write(ref self, Environment.CurrentManagedThreadId);
        Volatile.Write(ref insideComplete, true);
        pipe.Writer.Complete();
        Volatile.Write(ref insideComplete, false);
        Assert.False(await ranInline.Task.WaitAsync(TimeSpan.FromSeconds(10)));
    }

    // The reader must be parked on ReadAsync before the write, or there is nothing to schedule (and the first test
    // would then fail: the reader would run on its own thread). An async method runs synchronously up to its first
    // await of an unfinished ReadAsync, where it registers its continuation with the pipe: once the call returns an
    // unfinished task, the reader is parked - no waiting, whatever the machine's load.
    private static Task ParkReader(Func<Task> reader)
    {
        var task = reader();
        Assert.False(task.IsCompleted, "the reader did not park: ReadAsync completed at once");
        return task;
    }
}

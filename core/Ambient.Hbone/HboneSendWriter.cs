using System.Buffers;
using System.IO.Pipelines;
using System.Runtime.CompilerServices;
using System.Runtime.ExceptionServices;
using Ambient.Hbone.Http2;

namespace Ambient.Hbone;

/// <summary>
/// An <see cref="HboneStream"/>'s sending side as a <see cref="PipeWriter"/>, for a producer that writes in place
/// (Kestrel's connection output): bytes gather in one pooled buffer and each flush frames them as DATA onto the
/// connection, so a response up to a frame's size goes out as one DATA frame and one send (a
/// <c>PipeWriter.Create(stream)</c> sends one frame, and flushes once, per 4 KiB segment it buffered).
/// <para>Flow control and stream failure are <see cref="HboneStream.WriteAsync(ReadOnlyMemory{byte}, CancellationToken)"/>'s:
/// a flush waits for send window and throws the stream's fate. Like any pipe writer it has one writer and takes no
/// writes while a flush is pending (Kestrel's output producer guarantees both).</para>
/// <para>No byte it accepted is lost. A canceled flush (<see cref="CancelPendingFlush"/> or the caller's token) stops
/// between DATA frames and keeps what it did not send for the next flush or the completion. <see cref="Complete"/>
/// sends what is still buffered, in the background when it has to wait, and after a flush in progress;
/// <see cref="CompleteAsync"/>, also after a synchronous Complete, returns once that is done. A clean completion does
/// not end the stream: the owner sends END_STREAM (<see cref="HboneStream.CompleteWritesAsync"/>) after CompleteAsync.
/// A completion with an exception sends the buffered bytes and then resets the stream, so the peer can tell a failed
/// answer from a whole one.</para>
/// </summary>
internal sealed class HboneSendWriter(HboneStream stream) : PipeWriter
{
    private const int MinimumBufferSize = 4096;

    // Guards the state a Complete or CancelPendingFlush on another thread shares with a flush in progress.
    private readonly object _sync = new();

    // _buffer[_sent.._written] is accepted and not sent yet. While _flushing, the flush owns the buffer.
    private byte[]? _buffer;
    private int _sent;
    private int _written;
    private bool _flushing;
    private bool _cancelNextFlush;
    private CancellationTokenSource? _flushCancellation;

    private bool _completed;
    // What completing still does (send the rest, reset after an error); CompleteAsync waits for it.
    private Task _completion = Task.CompletedTask;
    // Completed during a flush: the flush starts the completion when it lets go of the buffer.
    private TaskCompletionSource? _completionAfterFlush;
    private Exception? _completionError;

    public override Memory<byte> GetMemory(int sizeHint = 0) => EnsureCapacity(sizeHint).AsMemory(_written);

    public override Span<byte> GetSpan(int sizeHint = 0) => EnsureCapacity(sizeHint).AsSpan(_written);

    public override void Advance(int bytes)
    {
        if ((uint)bytes > (uint)((_buffer?.Length ?? 0) - _written))
        {
            throw new ArgumentOutOfRangeException(nameof(bytes), "advanced past the memory GetMemory/GetSpan returned");
        }
        _written += bytes;
    }

    public override bool CanGetUnflushedBytes => true;

    public override long UnflushedBytes => _written - _sent;

    [AsyncMethodBuilder(typeof(PoolingAsyncValueTaskMethodBuilder<>))]
    public override async ValueTask<FlushResult> FlushAsync(CancellationToken cancellationToken = default)
    {
        CancellationTokenSource cancellation;
        lock (_sync)
        {
            ObjectDisposedException.ThrowIf(_completed, this);
            if (_flushing)
            {
                throw new InvalidOperationException("a flush of this HBONE stream writer is already in progress");
            }
            if (_cancelNextFlush)
            {
                // CancelPendingFlush with no flush pending cancels the next one (the PipeWriter contract); the bytes stay.
                _cancelNextFlush = false;
                return new FlushResult(isCanceled: true, isCompleted: false);
            }
            cancellationToken.ThrowIfCancellationRequested();
            if (_sent == _written)
            {
                return default;
            }
            _flushing = true;
            cancellation = _flushCancellation ??= new CancellationTokenSource();
        }

        long sentBefore = stream.DataBytesSent;
        bool canceled = false;
        Exception? failure = null;
        using (cancellationToken.CanBeCanceled
            ? cancellationToken.UnsafeRegister(static c => ((CancellationTokenSource)c!).Cancel(), cancellation)
            : default)
        {
            try
            {
                await stream.WriteAsync(_buffer.AsMemory(_sent, _written - _sent), cancellation.Token).ConfigureAwait(false);
            }
            catch (OperationCanceledException) when (cancellation.IsCancellationRequested)
            {
                canceled = true;
            }
            catch (Exception ex)
            {
                failure = ex;
            }
        }

        TaskCompletionSource? completion;
        lock (_sync)
        {
            // A canceled write stops between DATA frames: what went out is counted, the rest stays for later.
            _sent += (int)(stream.DataBytesSent - sentBefore);
            _flushing = false;
            if (cancellation.IsCancellationRequested)
            {
                // Spent; the next flush gets a fresh one. Not disposed: a CancelPendingFlush may still hold it.
                _flushCancellation = null;
            }
            completion = _completionAfterFlush;
            _completionAfterFlush = null;
            if (completion is null && _sent == _written)
            {
                // All sent: give the buffer back, so an idle keep-alive tunnel pins none.
                ReleaseBufferLocked();
            }
        }
        if (completion is not null)
        {
            // Completed while this flush held the buffer: send what is left now, after what this flush sent.
            _ = CompleteInBackgroundAsync(completion, _completionError);
        }
        if (failure is not null)
        {
            ExceptionDispatchInfo.Throw(failure);
        }
        if (canceled)
        {
            cancellationToken.ThrowIfCancellationRequested();
            return new FlushResult(isCanceled: true, isCompleted: false);
        }
        return default;
    }

    /// <summary>Cancels the flush in progress, or else the next one; either keeps the bytes it did not send.</summary>
    public override void CancelPendingFlush()
    {
        CancellationTokenSource? flushing;
        lock (_sync)
        {
            if (!_flushing)
            {
                _cancelNextFlush = true;
                return;
            }
            flushing = _flushCancellation;
        }
        // Outside the lock: cancellation may run the flush's continuation, which takes it.
        flushing?.Cancel();
    }

    public override ValueTask CompleteAsync(Exception? exception = null)
    {
        Complete(exception);
        Task completion;
        lock (_sync)
        {
            completion = _completion;
        }
        return completion.IsCompletedSuccessfully ? default : new ValueTask(completion);
    }

    /// <summary>Sends what is still buffered (after a flush in progress) without waiting for it: Kestrel completes its
    /// output synchronously, even with an answer it wrote but never flushed. <see cref="CompleteAsync"/> waits.</summary>
    public override void Complete(Exception? exception = null)
    {
        TaskCompletionSource completion;
        lock (_sync)
        {
            if (_completed)
            {
                return;
            }
            _completed = true;
            if (!_flushing && _sent == _written && exception is null)
            {
                ReleaseBufferLocked();
                return;
            }
            completion = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
            _completion = completion.Task;
            if (_flushing)
            {
                _completionError = exception;
                _completionAfterFlush = completion;
                return;
            }
        }
        _ = CompleteInBackgroundAsync(completion, exception);
    }

    private async Task CompleteInBackgroundAsync(TaskCompletionSource completion, Exception? error)
    {
        try
        {
            try
            {
                if (_sent < _written)
                {
                    // Not cancelable: only the stream's death stops it.
                    await stream.WriteAsync(_buffer.AsMemory(_sent, _written - _sent), CancellationToken.None).ConfigureAwait(false);
                }
            }
            finally
            {
                lock (_sync)
                {
                    ReleaseBufferLocked();
                }
                if (error is not null)
                {
                    await stream.ResetAsync(Http2ErrorCode.CANCEL, "the writer was completed with an error: " + error.Message).ConfigureAwait(false);
                }
            }
            completion.TrySetResult();
        }
        catch (Exception ex)
        {
            completion.TrySetException(ex);
            _ = completion.Task.Exception; // observed: the owner may not wait (CompleteAsync rethrows it if it does)
        }
    }

    private void ReleaseBufferLocked()
    {
        _sent = 0;
        _written = 0;
        if (_buffer is { } buffer)
        {
            _buffer = null;
            ArrayPool<byte>.Shared.Return(buffer);
        }
    }

    private byte[] EnsureCapacity(int sizeHint)
    {
        ObjectDisposedException.ThrowIf(_completed, this);
        if (_flushing)
        {
            throw new InvalidOperationException("an HBONE stream writer takes no writes while a flush is in progress");
        }
        int pending = _written - _sent;
        int needed = _written + Math.Max(sizeHint, 1);
        if (_buffer is { } buffer && buffer.Length >= needed)
        {
            return buffer;
        }
        // Grow (rare: a response bigger than the buffer between two flushes); keep what is not sent yet, at the start.
        byte[] larger = ArrayPool<byte>.Shared.Rent(Math.Max(pending + Math.Max(sizeHint, 1), Math.Max(MinimumBufferSize, (_buffer?.Length ?? 0) * 2)));
        if (_buffer is { } old)
        {
            old.AsSpan(_sent, pending).CopyTo(larger);
            ArrayPool<byte>.Shared.Return(old);
        }
        _buffer = larger;
        _sent = 0;
        _written = pending;
        return larger;
    }
}

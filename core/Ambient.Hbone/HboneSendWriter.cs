using System.Buffers;
using System.IO.Pipelines;
using System.Runtime.CompilerServices;

namespace Ambient.Hbone;

/// <summary>
/// An <see cref="HboneStream"/>'s sending side as a <see cref="PipeWriter"/>, for a producer that writes in place
/// (Kestrel's connection output): bytes gather in one pooled buffer and each flush frames them as DATA onto the
/// connection, so a response up to a frame's size goes out as one DATA frame and one send (a
/// <c>PipeWriter.Create(stream)</c> sends one frame, and flushes once, per 4 KiB segment it buffered).
/// <para>Flow control and stream failure are <see cref="HboneStream.WriteAsync(ReadOnlyMemory{byte}, CancellationToken)"/>'s:
/// a flush waits for send window and throws the stream's fate. Like any pipe writer it has one writer and takes no
/// writes while a flush is pending (Kestrel's output producer guarantees both). Completing it does not end the stream:
/// that is <see cref="HboneStream.CompleteWritesAsync"/>'s job, for the owner who knows a clean end from an abort.</para>
/// </summary>
internal sealed class HboneSendWriter(HboneStream stream) : PipeWriter
{
    private const int MinimumBufferSize = 4096;

    private byte[]? _buffer;
    private int _buffered;
    private bool _completed;
    private CancellationTokenSource? _flushCancellation;

    public override Memory<byte> GetMemory(int sizeHint = 0) => EnsureCapacity(sizeHint).AsMemory(_buffered);

    public override Span<byte> GetSpan(int sizeHint = 0) => EnsureCapacity(sizeHint).AsSpan(_buffered);

    public override void Advance(int bytes)
    {
        if ((uint)bytes > (uint)((_buffer?.Length ?? 0) - _buffered))
        {
            throw new ArgumentOutOfRangeException(nameof(bytes), "advanced past the memory GetMemory/GetSpan returned");
        }
        _buffered += bytes;
    }

    public override bool CanGetUnflushedBytes => true;

    public override long UnflushedBytes => _buffered;

    [AsyncMethodBuilder(typeof(PoolingAsyncValueTaskMethodBuilder<>))]
    public override async ValueTask<FlushResult> FlushAsync(CancellationToken cancellationToken = default)
    {
        ObjectDisposedException.ThrowIf(_completed, this);
        if (_buffered == 0)
        {
            return default;
        }
        CancellationTokenSource cancellation = _flushCancellation ??= new CancellationTokenSource();
        using CancellationTokenRegistration link = cancellationToken.CanBeCanceled
            ? cancellationToken.UnsafeRegister(static c => ((CancellationTokenSource)c!).Cancel(), cancellation)
            : default;
        try
        {
            await stream.WriteAsync(_buffer.AsMemory(0, _buffered), cancellation.Token).ConfigureAwait(false);
        }
        catch (OperationCanceledException) when (cancellation.IsCancellationRequested && !cancellationToken.IsCancellationRequested)
        {
            // CancelPendingFlush: the caller sees a canceled flush, not an exception. Part of the bytes may have gone
            // out already, so they are dropped rather than sent twice; a canceled flush leaves the stream's content
            // undefined either way (Kestrel cancels only connections it is tearing down).
            _flushCancellation = null;
            cancellation.Dispose();
            ReleaseBuffer();
            return new FlushResult(isCanceled: true, isCompleted: false);
        }
        // Sent: give the buffer back, so an idle keep-alive tunnel pins none.
        ReleaseBuffer();
        return default;
    }

    /// <summary>Cancels a flush in progress (one not yet started is not affected).</summary>
    public override void CancelPendingFlush() => _flushCancellation?.Cancel();

    public override async ValueTask CompleteAsync(Exception? exception = null)
    {
        if (_completed)
        {
            return;
        }
        try
        {
            if (exception is null && _buffered > 0)
            {
                await FlushAsync().ConfigureAwait(false);
            }
        }
        finally
        {
            Complete(exception);
        }
    }

    public override void Complete(Exception? exception = null)
    {
        if (_completed)
        {
            return;
        }
        _completed = true;
        _flushCancellation?.Dispose();
        ReleaseBuffer();
    }

    private void ReleaseBuffer()
    {
        _buffered = 0;
        if (_buffer is { } buffer)
        {
            _buffer = null;
            ArrayPool<byte>.Shared.Return(buffer);
        }
    }

    private byte[] EnsureCapacity(int sizeHint)
    {
        ObjectDisposedException.ThrowIf(_completed, this);
        int needed = _buffered + Math.Max(sizeHint, 1);
        if (_buffer is { } buffer && buffer.Length >= needed)
        {
            return buffer;
        }
        // Grow (rare: a response bigger than the buffer between two flushes); keep what is already written.
        byte[] larger = ArrayPool<byte>.Shared.Rent(Math.Max(needed, Math.Max(MinimumBufferSize, (_buffer?.Length ?? 0) * 2)));
        if (_buffer is { } old)
        {
            old.AsSpan(0, _buffered).CopyTo(larger);
            ArrayPool<byte>.Shared.Return(old);
        }
        _buffer = larger;
        return larger;
    }
}

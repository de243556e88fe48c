using System.Buffers;
using System.IO.Pipelines;
using System.Runtime.CompilerServices;

namespace Ambient.Hbone;

/// <summary>
/// An <see cref="HboneStream"/>'s receive pipe as a <see cref="PipeReader"/>, for a consumer that parses in place
/// (Kestrel's connection input): no copy into a second buffer and no extra async layer as with
/// <c>PipeReader.Create(stream)</c>. Bytes are credited back to the peer (WINDOW_UPDATE) when
/// <see cref="AdvanceTo(SequencePosition, SequencePosition)"/> consumes them, never when they are only examined or
/// merely arrived; END_STREAM completes reads; a reset or a dead connection surfaces as the stream's
/// <see cref="HboneException"/>.
/// <para>Completing this reader does not complete the stream's pipe: the stream still owns it, and disposing the
/// stream gives back the connection window of whatever was left unread.</para>
/// </summary>
internal sealed class HboneReceiveReader(HboneStream stream, PipeReader receive) : PipeReader
{
    // The buffer of the last read, to count the bytes an AdvanceTo consumes.
    private ReadOnlySequence<byte> _lastBuffer;
    private bool _completed;

    [AsyncMethodBuilder(typeof(PoolingAsyncValueTaskMethodBuilder<>))]
    public override async ValueTask<ReadResult> ReadAsync(CancellationToken cancellationToken = default)
    {
        ObjectDisposedException.ThrowIf(_completed, this);
        ReadResult result = await receive.ReadAsync(cancellationToken).ConfigureAwait(false);
        _lastBuffer = result.Buffer;
        return result;
    }

    public override bool TryRead(out ReadResult result)
    {
        ObjectDisposedException.ThrowIf(_completed, this);
        if (!receive.TryRead(out result))
        {
            return false;
        }
        _lastBuffer = result.Buffer;
        return true;
    }

    public override void AdvanceTo(SequencePosition consumed) => AdvanceTo(consumed, consumed);

    public override void AdvanceTo(SequencePosition consumed, SequencePosition examined)
    {
        // Counted before the pipe may recycle the consumed segments. Without a read to advance, the pipe itself says so.
        int count = _lastBuffer.IsEmpty ? 0 : (int)(_lastBuffer.Length - _lastBuffer.Slice(consumed).Length);
        receive.AdvanceTo(consumed, examined);
        _lastBuffer = default;
        if (count > 0)
        {
            stream.OnConsumed(count);
        }
    }

    public override void CancelPendingRead() => receive.CancelPendingRead();

    public override void Complete(Exception? exception = null)
    {
        _completed = true;
        _lastBuffer = default;
    }
}

using System.Buffers;

namespace Ambient.Hbone.Http2;

/// <summary>
/// Joins a HEADERS fragment and its CONTINUATION fragments into one contiguous block for <see cref="HPackDecoder"/>.
/// Only needed when a block spans frames (rare: HBONE responses are a few bytes); the pooled array is reused.
/// The limit bounds memory an attacker can pin with an endless CONTINUATION chain.
/// </summary>
internal sealed class Http2HeaderBlockBuffer(int maxBlockSize) : IDisposable
{
    private byte[] _buffer = [];
    private int _length;

    public int Length => _length;

    public ReadOnlySpan<byte> Block => _buffer.AsSpan(0, _length);

    public void Append(in ReadOnlySequence<byte> fragment)
    {
        long newLength = _length + fragment.Length;
        if (newLength > maxBlockSize)
        {
            throw new Http2ConnectionException(Http2ErrorCode.ENHANCE_YOUR_CALM,
                $"header block of more than {maxBlockSize} bytes (HEADERS + CONTINUATION)");
        }
        if (newLength > _buffer.Length)
        {
            byte[] bigger = ArrayPool<byte>.Shared.Rent((int)Math.Max(newLength, 1024));
            _buffer.AsSpan(0, _length).CopyTo(bigger);
            ReturnBuffer();
            _buffer = bigger;
        }
        fragment.CopyTo(_buffer.AsSpan(_length));
        _length = (int)newLength;
    }

    public void Reset() => _length = 0;

    public void Dispose()
    {
        ReturnBuffer();
        _buffer = [];
        _length = 0;
    }

    private void ReturnBuffer()
    {
        if (_buffer.Length > 0)
        {
            ArrayPool<byte>.Shared.Return(_buffer);
        }
    }
}

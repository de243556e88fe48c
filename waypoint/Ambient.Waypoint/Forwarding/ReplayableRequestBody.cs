using System.Buffers;

namespace Ambient.Waypoint.Forwarding;

/// <summary>
/// The request body as the forwarder reads it when the request may be sent more than once: for a retry, or for a
/// RequestMirror's copy. As Envoy's router does, the body streams to the backend as it arrives (a retry or a mirror
/// never holds the main request back) while a copy of it is kept in a pooled buffer, up to
/// <see cref="BufferLimitBytes"/>. An attempt after the first reads the kept bytes again, then the rest from the
/// client. A body longer than the limit is no longer kept: the request is sent once (no retry) and its mirrors are
/// dropped, as Envoy gives up on retries and shadows of a request over its buffer limit.
/// <para>
/// Mirrors get the kept body once the main request has read it to the end (Envoy sends a buffered shadow at the end of
/// the request). A request whose body the main path does not read to the end (the backend answered first, no endpoint
/// could be reached) sends no mirror.
/// </para>
/// <para>Reads are sequential, as for any stream; the buffer goes back to the pool when the request ends.</para>
/// </summary>
internal sealed class ReplayableRequestBody : Stream
{
    /// <summary>
    /// Envoy's per-request buffer limit for retries and shadows: the listener's per-connection buffer limit, 1 MiB by
    /// default (and in Istio's waypoint).
    /// </summary>
    public const int BufferLimitBytes = 1024 * 1024;

    private const int InitialCapacity = 16 * 1024;

    private readonly Stream _inner;
    private readonly int _limit;
    private readonly Lock _gate = new();
    private byte[]? _buffer;
    private int _kept;
    private int _position;
    private bool _ended;
    private bool _overflowed;
    private bool _disposed;
    private TaskCompletionSource<byte[]?>? _whole;

    public ReplayableRequestBody(Stream inner, long? contentLength, int limit = BufferLimitBytes)
    {
        _inner = inner;
        _limit = limit;
        // A declared length over the limit is known to overflow: keep nothing from the start.
        _overflowed = contentLength > limit;
        _buffer = _overflowed ? null : ArrayPool<byte>.Shared.Rent((int)Math.Clamp(contentLength ?? InitialCapacity, 1, Math.Min(limit, InitialCapacity * 4)));
    }

    /// <summary>False once the body has outgrown the limit: what was sent cannot be sent again.</summary>
    public bool CanReplay
    {
        get
        {
            lock (_gate)
            {
                return !_overflowed && !_disposed;
            }
        }
    }

    /// <summary>The next read starts again from the first byte (for another attempt).</summary>
    public void Rewind()
    {
        lock (_gate)
        {
            if (_overflowed)
            {
                throw new InvalidOperationException("the request body outgrew the retry buffer and cannot be sent again");
            }
            _position = 0;
        }
    }

    /// <summary>
    /// The whole body, a copy of its own, once the main request has read it to the end; null when it never will be
    /// (over the limit, or the request ended first).
    /// </summary>
    public Task<byte[]?> WholeBodyAsync()
    {
        lock (_gate)
        {
            if (_overflowed || _disposed)
            {
                return Task.FromResult<byte[]?>(null);
            }
            if (_ended)
            {
                return Task.FromResult<byte[]?>(_buffer.AsSpan(0, _kept).ToArray());
            }
            _whole ??= new TaskCompletionSource<byte[]?>(TaskCreationOptions.RunContinuationsAsynchronously);
            return _whole.Task;
        }
    }

    public override async ValueTask<int> ReadAsync(Memory<byte> destination, CancellationToken cancellationToken = default)
    {
        if (TryReadKept(destination.Span, out var kept))
        {
            return kept;
        }
        var read = await _inner.ReadAsync(destination, cancellationToken).ConfigureAwait(false);
        Keep(destination.Span[..read]);
        return read;
    }

    public override Task<int> ReadAsync(byte[] buffer, int offset, int count, CancellationToken cancellationToken) =>
        ReadAsync(buffer.AsMemory(offset, count), cancellationToken).AsTask();

    public override int Read(Span<byte> destination)
    {
        if (TryReadKept(destination, out var kept))
        {
            return kept;
        }
        var read = _inner.Read(destination);
        Keep(destination[..read]);
        return read;
    }

    public override int Read(byte[] buffer, int offset, int count) => Read(buffer.AsSpan(offset, count));

    /// <summary>True with the count when the read is answered without the client: from the kept bytes (another
    /// attempt), or 0 at the end of the body or for an empty destination.</summary>
    private bool TryReadKept(Span<byte> destination, out int count)
    {
        count = 0;
        if (destination.IsEmpty)
        {
            return true;
        }
        lock (_gate)
        {
            ObjectDisposedException.ThrowIf(_disposed, this);
            if (_position < _kept)
            {
                count = Math.Min(destination.Length, _kept - _position);
                _buffer.AsSpan(_position, count).CopyTo(destination);
                _position += count;
                return true;
            }
            return _ended;
        }
    }

    private void Keep(ReadOnlySpan<byte> read)
    {
        TaskCompletionSource<byte[]?>? whole = null;
        byte[]? wholeBody = null;
        lock (_gate)
        {
            if (_disposed)
            {
                return;
            }
            if (read.IsEmpty)
            {
                _ended = true;
                if (_whole is not null && !_overflowed)
                {
                    whole = _whole;
                    wholeBody = _buffer.AsSpan(0, _kept).ToArray();
                }
            }
            else if (!_overflowed)
            {
                if (_kept + read.Length > _limit)
                {
                    Overflow();
                    whole = _whole;
                }
                else
                {
                    EnsureCapacity(_kept + read.Length);
                    read.CopyTo(_buffer.AsSpan(_kept));
                    _kept += read.Length;
                    _position = _kept;
                }
            }
        }
        whole?.TrySetResult(wholeBody);
    }

    private void EnsureCapacity(int needed)
    {
        if (_buffer!.Length >= needed)
        {
            return;
        }
        var grown = ArrayPool<byte>.Shared.Rent(Math.Min(_limit, Math.Max(needed, _buffer.Length * 2)));
        _buffer.AsSpan(0, _kept).CopyTo(grown);
        ArrayPool<byte>.Shared.Return(_buffer);
        _buffer = grown;
    }

    /// <summary>Past the limit: keep nothing more, give the buffer back; what follows streams through.</summary>
    private void Overflow()
    {
        _overflowed = true;
        if (_buffer is not null)
        {
            ArrayPool<byte>.Shared.Return(_buffer);
            _buffer = null;
        }
        _kept = 0;
        _position = 0;
    }

    protected override void Dispose(bool disposing)
    {
        TaskCompletionSource<byte[]?>? whole;
        lock (_gate)
        {
            if (_disposed)
            {
                return;
            }
            _disposed = true;
            whole = _whole;
            if (_buffer is not null)
            {
                ArrayPool<byte>.Shared.Return(_buffer);
                _buffer = null;
            }
        }
        whole?.TrySetResult(null);
        base.Dispose(disposing);
    }

    public override bool CanRead => true;
    public override bool CanSeek => false;
    public override bool CanWrite => false;
    public override long Length => throw new NotSupportedException();
    public override long Position { get => throw new NotSupportedException(); set => throw new NotSupportedException(); }
    public override void Flush() { }
    public override long Seek(long offset, SeekOrigin origin) => throw new NotSupportedException();
    public override void SetLength(long value) => throw new NotSupportedException();
    public override void Write(byte[] buffer, int offset, int count) => throw new NotSupportedException();
}

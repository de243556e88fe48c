using System.Runtime.CompilerServices;

namespace Ambient.Ztunnel.Telemetry;

/// <summary>
/// Counts the bytes through an upstream stream, so per-connection metrics cost two field additions per read/write and
/// nothing else, and notes whether the upstream itself failed (which side broke a relay decides its response flag).
/// Bytes a front door writes before the relay starts (SOCKS5 data sent behind the request) are counted too.
/// </summary>
internal sealed class MeteredStream(Stream inner) : Stream
{
    private long _written;
    private long _read;
    private int _faulted;
    private int _disposed;

    /// <summary>Bytes written into the stream (towards the destination).</summary>
    public long BytesWritten => Volatile.Read(ref _written);

    /// <summary>Bytes read from the stream (from the destination).</summary>
    public long BytesRead => Volatile.Read(ref _read);

    /// <summary>True once a read or write of the upstream failed by itself (not by cancellation or our own dispose).</summary>
    public bool Faulted => Volatile.Read(ref _faulted) != 0;

    public override bool CanRead => true;
    public override bool CanWrite => true;
    public override bool CanSeek => false;
    public override long Length => throw new NotSupportedException();
    public override long Position { get => throw new NotSupportedException(); set => throw new NotSupportedException(); }

    [AsyncMethodBuilder(typeof(PoolingAsyncValueTaskMethodBuilder<>))]
    public override async ValueTask<int> ReadAsync(Memory<byte> buffer, CancellationToken cancellationToken = default)
    {
        try
        {
            var n = await inner.ReadAsync(buffer, cancellationToken).ConfigureAwait(false);
            _read += n;
            return n;
        }
        catch (Exception e) when (NoteFault(e, cancellationToken))
        {
            throw;
        }
    }

    [AsyncMethodBuilder(typeof(PoolingAsyncValueTaskMethodBuilder))]
    public override async ValueTask WriteAsync(ReadOnlyMemory<byte> buffer, CancellationToken cancellationToken = default)
    {
        try
        {
            await inner.WriteAsync(buffer, cancellationToken).ConfigureAwait(false);
            _written += buffer.Length;
        }
        catch (Exception e) when (NoteFault(e, cancellationToken))
        {
            throw;
        }
    }

    // An exception filter that never catches: it only records that the upstream broke on its own.
    private bool NoteFault(Exception e, CancellationToken cancellationToken)
    {
        if (!cancellationToken.IsCancellationRequested && e is not OperationCanceledException && Volatile.Read(ref _disposed) == 0)
        {
            Volatile.Write(ref _faulted, 1);
        }
        return false;
    }

    public override Task<int> ReadAsync(byte[] buffer, int offset, int count, CancellationToken cancellationToken) =>
        ReadAsync(buffer.AsMemory(offset, count), cancellationToken).AsTask();

    public override Task WriteAsync(byte[] buffer, int offset, int count, CancellationToken cancellationToken) =>
        WriteAsync(buffer.AsMemory(offset, count), cancellationToken).AsTask();

    public override int Read(byte[] buffer, int offset, int count)
    {
        var n = inner.Read(buffer, offset, count);
        _read += n;
        return n;
    }

    public override void Write(byte[] buffer, int offset, int count)
    {
        inner.Write(buffer, offset, count);
        _written += count;
    }

    public override void Flush() => inner.Flush();
    public override Task FlushAsync(CancellationToken cancellationToken) => inner.FlushAsync(cancellationToken);
    public override long Seek(long offset, SeekOrigin origin) => throw new NotSupportedException();
    public override void SetLength(long value) => throw new NotSupportedException();

    protected override void Dispose(bool disposing)
    {
        if (disposing && Interlocked.Exchange(ref _disposed, 1) == 0)
        {
            inner.Dispose();
        }
        base.Dispose(disposing);
    }

    public override async ValueTask DisposeAsync()
    {
        if (Interlocked.Exchange(ref _disposed, 1) == 0)
        {
            await inner.DisposeAsync().ConfigureAwait(false);
        }
        GC.SuppressFinalize(this);
    }
}

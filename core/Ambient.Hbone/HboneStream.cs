using System.Buffers;
using System.IO.Pipelines;
using System.Runtime.CompilerServices;
using Ambient.Hbone.Http2;

namespace Ambient.Hbone;

/// <summary>
/// One HBONE tunnel: an HTTP/2 CONNECT stream after its 200, as a duplex <see cref="Stream"/>. Reads return 0 at the
/// peer's END_STREAM; <see cref="CompleteWritesAsync"/> half-closes; disposing before both sides ended sends
/// RST_STREAM(CANCEL). One reader and one writer may run concurrently; two concurrent reads (or writes) may not.
/// <para>Receive path: the connection's read loop copies DATA payloads into a per-stream <see cref="Pipe"/> (pooled
/// segments, never pauses: our advertised window bounds what it can hold); reads drain it and hand the consumed byte
/// count back so WINDOW_UPDATEs follow consumption, not arrival.</para>
/// </summary>
internal sealed class HboneStream : Stream
{
    // Big enough that a 16 KiB TLS record lands in one segment, small enough that an idle tunnel pins little.
    private const int ReceiveSegmentSize = 16 * 1024;

    private readonly Http2Connection _connection;
    private readonly Pipe _receive;
    private readonly object _sync = new();
    private readonly TaskCompletionSource<int> _response = new(TaskCreationOptions.RunContinuationsAsynchronously);

    // Canceled when the stream dies; created on first use (only the server's handler asks).
    private CancellationTokenSource? _aborted;

    // Under _sync. On a server stream _responseReceived means "the request arrived" (always true).
    private bool _localEnded;
    private bool _remoteEnded;
    private bool _responseReceived;
    // Server role: the peer opened this stream (a finished answer then ends it with NO_ERROR, not CANCEL).
    private readonly bool _accepted;
    private bool _terminated;
    private bool _released;
    private bool _disposed;
    private Exception? _failure;
    // The peer answered in full and reset with NO_ERROR: writes throw this, reads go on (RFC 9113 section 8.1).
    private HboneSendStoppedException? _sendStopped;

    // Receive flow control: _recvWindow is what the peer may still send; _pendingUpdate is consumed but not yet
    // returned with WINDOW_UPDATE; _unread is buffered but not yet read (credited back to the connection on dispose).
    private int _recvWindow;
    private int _pendingUpdate;
    private int _unread;

    /// <param name="accepted">Server role: the peer opened this stream with its request, so DATA may follow at once.</param>
    internal HboneStream(Http2Connection connection, string authority, long initialSendWindow, int receiveWindow, bool accepted = false)
    {
        _connection = connection;
        _responseReceived = accepted;
        _accepted = accepted;
        Authority = authority;
        SendWindow = initialSendWindow;
        _recvWindow = receiveWindow;
        _receive = new Pipe(new PipeOptions(
            pool: MemoryPool<byte>.Shared,
            // A reader woken by arriving DATA runs on the read loop's thread (ReadLoopScheduler): readers must await,
            // never block, or they stall every tunnel on the connection.
            readerScheduler: ReadLoopScheduler.Instance,
            writerScheduler: PipeScheduler.Inline,
            // 0 = FlushAsync never waits: the read loop must not stall on one slow tunnel. Flow control bounds the buffer.
            pauseWriterThreshold: 0,
            resumeWriterThreshold: 0,
            minimumSegmentSize: ReceiveSegmentSize,
            useSynchronizationContext: false));
    }

    public int StreamId { get; internal set; }

    public string Authority { get; }

    /// <summary>Send window; guarded by the connection's flow lock.</summary>
    internal long SendWindow;

    /// <summary>DATA payload bytes written onto the connection; guarded by the connection's write lock. A canceled write
    /// stops only between frames, so <see cref="HboneSendWriter"/> learns from it how much of a flush went out.</summary>
    internal long DataBytesSent;

    /// <summary>Queued on the connection's list of writers waiting for connection window; guarded by the flow lock.</summary>
    internal bool WaitingForConnectionWindow;

    /// <summary>Server role: our answer (:status) went out. A stream the client resets before that is a premature reset.</summary>
    internal volatile bool Answered;

    /// <summary>Wakes this stream's writer when a window grows or the stream dies.</summary>
    internal AsyncSignal SendSignal { get; } = new();

    internal Task<int> ResponseTask => _response.Task;

    internal bool RemoteEnded
    {
        get { lock (_sync) { return _remoteEnded; } }
    }

    public override bool CanRead => true;

    public override bool CanWrite => true;

    public override bool CanSeek => false;

    public override long Length => throw new NotSupportedException();

    public override long Position { get => throw new NotSupportedException(); set => throw new NotSupportedException(); }

    [AsyncMethodBuilder(typeof(PoolingAsyncValueTaskMethodBuilder<>))]
    public override async ValueTask<int> ReadAsync(Memory<byte> buffer, CancellationToken cancellationToken = default)
    {
        PipeReader reader = _receive.Reader;
        ReadResult result = await reader.ReadAsync(cancellationToken).ConfigureAwait(false);
        ReadOnlySequence<byte> data = result.Buffer;
        if (data.IsEmpty)
        {
            reader.AdvanceTo(data.End);
            // A zero-length read has no data to wait for here; a canceled read is surfaced as such.
            return result.IsCanceled ? throw new OperationCanceledException(cancellationToken) : 0;
        }
        int count = (int)Math.Min(data.Length, buffer.Length);
        if (count == 0)
        {
            reader.AdvanceTo(data.Start);
            return 0;
        }
        data.Slice(0, count).CopyTo(buffer.Span);
        reader.AdvanceTo(data.GetPosition(count));
        Interlocked.Add(ref _unread, -count);
        await _connection.OnDataConsumedAsync(this, count).ConfigureAwait(false);
        return count;
    }

    public override Task<int> ReadAsync(byte[] buffer, int offset, int count, CancellationToken cancellationToken) =>
        ReadAsync(buffer.AsMemory(offset, count), cancellationToken).AsTask();

    /// <summary>The receive pipe itself, for a consumer that parses in place (Kestrel's connection input) instead of
    /// copying through <see cref="ReadAsync(Memory{byte}, CancellationToken)"/>. Use one or the other, not both.</summary>
    internal PipeReader CreateReceiveReader() => new HboneReceiveReader(this, _receive.Reader);

    /// <summary>A pipe writer that frames its flushes as DATA on this stream (for Kestrel's connection output).</summary>
    internal PipeWriter CreateSendWriter() => new HboneSendWriter(this);

    /// <summary><see cref="HboneReceiveReader"/> consumed <paramref name="count"/> bytes: credit them back to the peer.
    /// AdvanceTo is synchronous, so a WINDOW_UPDATE this triggers goes out in the background (it waits for the
    /// connection's write lock).</summary>
    internal void OnConsumed(int count)
    {
        Interlocked.Add(ref _unread, -count);
        Http2Connection.ObserveInBackground(_connection.OnDataConsumedAsync(this, count));
    }

    public override int Read(byte[] buffer, int offset, int count) => ReadAsync(buffer.AsMemory(offset, count)).AsTask().GetAwaiter().GetResult();

    public override ValueTask WriteAsync(ReadOnlyMemory<byte> buffer, CancellationToken cancellationToken = default) =>
        buffer.IsEmpty ? ThrowIfCannotWriteAsync() : _connection.WriteDataAsync(this, buffer, cancellationToken);

    public override Task WriteAsync(byte[] buffer, int offset, int count, CancellationToken cancellationToken) =>
        WriteAsync(buffer.AsMemory(offset, count), cancellationToken).AsTask();

    public override void Write(byte[] buffer, int offset, int count) => WriteAsync(buffer.AsMemory(offset, count)).AsTask().GetAwaiter().GetResult();

    /// <summary>Each DATA frame is flushed when written; nothing is buffered here.</summary>
    public override void Flush()
    {
    }

    public override Task FlushAsync(CancellationToken cancellationToken) => Task.CompletedTask;

    /// <summary>
    /// Canceled when the stream dies before it ended normally: the peer reset it, or the connection went away. A server
    /// handler passes it to the work it does before the tunnel is up (dialing the workload).
    /// </summary>
    internal CancellationToken Aborted
    {
        get
        {
            lock (_sync)
            {
                if (_terminated)
                {
                    return new CancellationToken(canceled: true);
                }
                _aborted ??= new CancellationTokenSource();
                return _aborted.Token;
            }
        }
    }

    /// <summary>Server role: answers the request with <paramref name="status"/> and an optional text body. With
    /// <paramref name="endStream"/> our side of the stream ends there (an error answer); a 200 leaves it open for the
    /// tunnel's bytes.</summary>
    public ValueTask RespondAsync(int status, string? text = null, bool endStream = false, CancellationToken cancellationToken = default) =>
        _connection.RespondAsync(this, status, text is null ? ReadOnlyMemory<byte>.Empty : System.Text.Encoding.UTF8.GetBytes(text), endStream, cancellationToken);

    /// <summary>Ends the stream abnormally now: our reads and writes fail, the peer gets RST_STREAM <paramref name="code"/>.
    /// Safe while a read or write is pending (unlike disposing); dispose afterwards as usual.</summary>
    internal async Task ResetAsync(Http2ErrorCode code, string reason)
    {
        Fail(new HboneException($"HBONE stream {StreamId} (CONNECT {Authority}) with {_connection.Peer} reset by us: {reason}", errorCode: code));
        try
        {
            await _connection.ResetStreamAsync(this, code).ConfigureAwait(false);
        }
        catch (Exception)
        {
            // The connection is going down; it fails and forgets every stream itself.
        }
    }

    /// <summary>Half-close: sends an empty DATA frame with END_STREAM. Reads continue until the peer ends too.</summary>
    public ValueTask CompleteWritesAsync(CancellationToken cancellationToken = default) => _connection.WriteEndStreamAsync(this, cancellationToken);

    public override long Seek(long offset, SeekOrigin origin) => throw new NotSupportedException();

    public override void SetLength(long value) => throw new NotSupportedException();

    protected override void Dispose(bool disposing)
    {
        if (disposing)
        {
            // Sync dispose must not block on the connection's write lock; the RST goes out in the background.
            _ = DisposeCoreAsync();
        }
        base.Dispose(disposing);
    }

    public override async ValueTask DisposeAsync()
    {
        await DisposeCoreAsync().ConfigureAwait(false);
        GC.SuppressFinalize(this);
    }

    private async Task DisposeCoreAsync()
    {
        bool reset;
        int unread;
        Http2ErrorCode resetCode;
        lock (_sync)
        {
            if (_disposed)
            {
                return;
            }
            _disposed = true;
            reset = !_released;
            // A server that already ended its answer only tells the client to stop sending (RFC 9113 section 8.1).
            resetCode = _localEnded && _accepted ? Http2ErrorCode.NO_ERROR : Http2ErrorCode.CANCEL;
            if (reset)
            {
                _terminated = true;
                _failure ??= new ObjectDisposedException(nameof(HboneStream));
            }
            _receive.Writer.Complete();
            unread = Interlocked.Exchange(ref _unread, 0);
        }
        _receive.Reader.Complete();
        SendSignal.Set();
        _response.TrySetException(new ObjectDisposedException(nameof(HboneStream)));
        _ = _response.Task.Exception; // observed: nobody awaits a disposed stream's response
        try
        {
            if (reset)
            {
                await _connection.ResetStreamAsync(this, resetCode).ConfigureAwait(false);
            }
            await _connection.CreditConnectionWindowAsync(unread).ConfigureAwait(false);
        }
        catch (Exception)
        {
            // The connection is going down; it fails and forgets every stream itself.
        }
    }

    private ValueTask ThrowIfCannotWriteAsync()
    {
        lock (_sync)
        {
            ThrowIfCannotWrite();
        }
        return default;
    }

    /// <summary>Called under the connection's flow lock or ours before a write; throws the stream's fate.</summary>
    internal void ThrowIfCannotWrite()
    {
        lock (_sync)
        {
            ObjectDisposedException.ThrowIf(_disposed, this);
            if (_terminated)
            {
                throw _failure as HboneException ?? new HboneException($"HBONE stream {StreamId} to {_connection.Peer} is closed", inner: _failure);
            }
            if (_sendStopped is not null)
            {
                throw _sendStopped;
            }
            if (_localEnded)
            {
                throw new InvalidOperationException($"HBONE stream {StreamId}: writes were already completed (END_STREAM sent)");
            }
        }
    }

    // ---- Called by the connection (read loop or write path). ----

    /// <summary>Read loop: a DATA payload arrived. Returns false when the stream no longer takes data (disposed or dead),
    /// in which case the caller credits the connection window itself.</summary>
    internal bool TryReceiveData(in ReadOnlySequence<byte> data, int flowControlledLength, bool endStream)
    {
        // The reader this flush wakes runs on this thread once the lock is released (see ReadLoopScheduler).
        ReadLoopScheduler.BeginDeferring();
        try
        {
            return TryReceiveDataLocked(data, flowControlledLength, endStream);
        }
        finally
        {
            ReadLoopScheduler.RunDeferred();
        }
    }

    private bool TryReceiveDataLocked(in ReadOnlySequence<byte> data, int flowControlledLength, bool endStream)
    {
        lock (_sync)
        {
            if (_terminated || _disposed)
            {
                return false;
            }
            if (!_responseReceived)
            {
                throw new Http2StreamException(StreamId, Http2ErrorCode.PROTOCOL_ERROR, "DATA before the response HEADERS");
            }
            if (_remoteEnded)
            {
                throw new Http2StreamException(StreamId, Http2ErrorCode.STREAM_CLOSED, "DATA after END_STREAM");
            }
            if (Interlocked.Add(ref _recvWindow, -flowControlledLength) < 0)
            {
                throw new Http2StreamException(StreamId, Http2ErrorCode.FLOW_CONTROL_ERROR,
                    $"peer sent {flowControlledLength} bytes beyond the stream's receive window");
            }
            PipeWriter writer = _receive.Writer;
            if (!data.IsEmpty)
            {
                foreach (ReadOnlyMemory<byte> segment in data)
                {
                    writer.Write(segment.Span);
                }
                Interlocked.Add(ref _unread, (int)data.Length);
                // Never pauses (pauseWriterThreshold 0), so this completes synchronously; it wakes the reader.
                _ = writer.FlushAsync();
            }
            if (endStream)
            {
                _remoteEnded = true;
                writer.Complete();
            }
        }
        return true;
    }

    /// <summary>Read loop: the final response HEADERS. Returns false if the stream was already gone.</summary>
    internal bool OnResponse(int status, bool endStream)
    {
        lock (_sync)
        {
            if (_terminated || _disposed)
            {
                return false;
            }
            _responseReceived = true;
            if (endStream)
            {
                _remoteEnded = true;
                _receive.Writer.Complete();
            }
        }
        _response.TrySetResult(status);
        return true;
    }

    /// <summary>Read loop: trailers (HEADERS after the response) must end the stream.</summary>
    internal bool IsResponseReceived
    {
        get { lock (_sync) { return _responseReceived; } }
    }

    /// <summary>Reader side consumed <paramref name="count"/> bytes; returns the stream WINDOW_UPDATE increment to send
    /// now (0 = not yet: updates are batched until half the window is consumed).</summary>
    internal int TakeWindowUpdate(int count, int threshold)
    {
        int pending = Interlocked.Add(ref _pendingUpdate, count);
        if (pending < threshold || RemoteEnded)
        {
            return 0;
        }
        pending = Interlocked.Exchange(ref _pendingUpdate, 0);
        Interlocked.Add(ref _recvWindow, pending);
        return pending;
    }

    /// <summary>Write path: END_STREAM went out. Returns true when that closed the stream (both sides ended).</summary>
    internal bool OnLocalEnd()
    {
        lock (_sync)
        {
            _localEnded = true;
            return _remoteEnded && !_terminated;
        }
    }

    /// <summary>Both directions have ended: true once (the caller then releases the stream's slot).</summary>
    internal bool TryMarkReleased(bool requireBothEnded)
    {
        lock (_sync)
        {
            if (_released || (requireBothEnded && !(_localEnded && _remoteEnded)))
            {
                return false;
            }
            _released = true;
            return true;
        }
    }

    internal bool IsRemoteEndedAndLocalEnded
    {
        get { lock (_sync) { return _localEnded && _remoteEnded; } }
    }

    /// <summary>
    /// Read loop: the peer, having ended its side, reset with NO_ERROR. Pending and future writes throw
    /// <paramref name="error"/>; reads go on through what arrived to its end (the receive pipe was already completed
    /// cleanly) and <see cref="Aborted"/> does not fire, so a relay carries the whole answer before it closes.
    /// </summary>
    internal void StopSending(HboneSendStoppedException error)
    {
        lock (_sync)
        {
            if (_terminated || _disposed)
            {
                return;
            }
            _sendStopped = error;
        }
        SendSignal.Set();
    }

    /// <summary>Kills the stream: pending and future reads and writes throw <paramref name="error"/>. Idempotent.</summary>
    internal void Fail(HboneException error)
    {
        CancellationTokenSource? aborted = null;
        lock (_sync)
        {
            if (!_terminated)
            {
                _terminated = true;
                _failure = error;
                aborted = _aborted;
                if (!_disposed)
                {
                    _receive.Writer.Complete(error);
                }
            }
        }
        // Outside the lock: cancellation callbacks run inline.
        aborted?.Cancel();
        SendSignal.Set();
        _response.TrySetException(error);
        _ = _response.Task.Exception;
    }

    public override string ToString() => $"HBONE stream {StreamId} CONNECT {Authority} via {_connection.Peer}";
}

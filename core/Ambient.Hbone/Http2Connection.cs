using System.Buffers;
using System.IO.Pipelines;
using Ambient.Hbone.Http2;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;

namespace Ambient.Hbone;

/// <summary>
/// Our HTTP/2 connection for plain CONNECT tunnels (HBONE), over an already authenticated duplex stream, in either
/// role: the client opens tunnels (HttpClient cannot send a CONNECT without :scheme/:path), the server
/// (<see cref="CreateServer"/>, the HBONE server) accepts them. Both share framing, HPACK, flow control, keepalive
/// and shutdown; what differs is a <see cref="Role"/> collaborator chosen at construction (Http2Connection.Roles.cs,
/// the server's in Http2Connection.Server.cs).
/// <para>Threads: one read loop owns frame parsing, the HPACK decoder and the per-stream receive pipes. Every frame
/// write happens under <see cref="_writeLock"/> (one frame, or one HEADERS block, then flush), which also guards the
/// HPACK encoder and stream-id allocation because both must reach the wire in order. Flow control is
/// <see cref="Http2FlowControl"/> (its lock before the stream table's); stream bookkeeping under
/// <see cref="Http2StreamTable"/>; keepalive PINGs are <see cref="Http2KeepAlive"/>. Never take the write lock while
/// holding another lock.</para>
/// </summary>
internal sealed partial class Http2Connection : IAsyncDisposable
{
    private readonly Stream _transport;
    private readonly PipeReader _input;
    private readonly PipeWriter _output;
    private readonly HboneClientOptions _options;
    private readonly ILogger _logger;
    private readonly TimeProvider _time;

    private readonly SemaphoreSlim _writeLock = new(1, 1);
    private readonly HPackEncoder _encoder = new();
    private readonly ArrayBufferWriter<byte> _headerScratch = new(512);
    private int _nextStreamId = 1;

    private readonly Http2StreamTable _streams;
    private readonly Role _role;

    private readonly Http2FlowControl _flow;
    private readonly Http2KeepAlive _keepAlive;
    private volatile int _peerMaxFrameSize = Http2Frame.DefaultMaxFrameSize;

    private readonly CancellationTokenSource _shutdown = new();
    private readonly TaskCompletionSource _closedTcs = new(TaskCreationOptions.RunContinuationsAsynchronously);
    private Task _readLoop = Task.CompletedTask;
    private Task _keepAliveLoop = Task.CompletedTask;
    private int _abortStarted;

    public Http2Connection(Stream transport, HboneClientOptions options, string peer, ILogger? logger = null, TimeProvider? timeProvider = null)
        : this(transport, options, peer, logger, timeProvider, onRequest: null)
    {
    }

    private Http2Connection(Stream transport, HboneClientOptions options, string peer, ILogger? logger, TimeProvider? timeProvider,
        Action<HboneStream, HboneRequest>? onRequest)
    {
        ArgumentNullException.ThrowIfNull(transport);
        ArgumentNullException.ThrowIfNull(options);
        options.Validate();
        _transport = transport;
        _options = options;
        _logger = logger ?? NullLogger.Instance;
        _time = timeProvider ?? TimeProvider.System;
        _role = onRequest is null ? new ClientRole(this) : new ServerRole(this, onRequest);
        Peer = peer;
        _input = PipeReader.Create(transport, new StreamPipeReaderOptions(bufferSize: 64 * 1024, minimumReadSize: 16 * 1024, leaveOpen: true, useZeroByteReads: true));
        _output = PipeWriter.Create(transport, new StreamPipeWriterOptions(minimumBufferSize: 16 * 1024, leaveOpen: true));
        _decoder = new HPackDecoder(HPackDecoder.DefaultHeaderTableSize, options.MaxHeaderListSize);
        _headerBlock = new Http2HeaderBlockBuffer(options.MaxHeaderListSize * 2);
        _flow = new Http2FlowControl(options.ConnectionWindowSize, options.InitialStreamWindowSize);
        _keepAlive = new Http2KeepAlive(options.PingInterval, options.PingTimeout, _time);
        CreatedTimestamp = _time.GetTimestamp();
        _streams = new Http2StreamTable(_time);
    }

    /// <summary>The peer as shown in logs and errors (address, identity).</summary>
    public string Peer { get; }

    public long CreatedTimestamp { get; }

    public int ActiveStreams => _streams.Active;

    /// <summary>min(peer's SETTINGS_MAX_CONCURRENT_STREAMS, our cap).</summary>
    public int MaxConcurrentStreams => Math.Min(_streams.PeerMaxConcurrentStreams, _options.MaxStreamsPerConnection);

    public bool IsGoingAway => _streams.IsGoingAway;

    public bool IsClosed => _streams.IsClosed;

    /// <summary>When a stream last opened or closed (a <see cref="TimeProvider"/> timestamp); idle reaping uses it.</summary>
    public long LastActivityTimestamp => _streams.LastActivityTimestamp;

    /// <summary>Completes when the connection has closed (for any reason).</summary>
    public Task Closed => _closedTcs.Task;

    /// <summary>Why the connection closed, once it has.</summary>
    public Exception? CloseReason => _streams.CloseReason;

    /// <summary>Sends the preface (client role), our SETTINGS and the connection WINDOW_UPDATE, then starts the read
    /// and keepalive loops. A server's read loop first checks the client's preface.</summary>
    public async Task StartAsync(CancellationToken cancellationToken = default)
    {
        await _writeLock.WaitAsync(cancellationToken).ConfigureAwait(false);
        try
        {
            _role.WritePreface(_output, _options);
            if (_options.ConnectionWindowSize > Http2FlowControl.DefaultWindowSize)
            {
                Http2FrameWriter.WriteWindowUpdate(_output, 0, (uint)(_options.ConnectionWindowSize - Http2FlowControl.DefaultWindowSize));
            }
            await _output.FlushAsync(cancellationToken).ConfigureAwait(false);
        }
        finally
        {
            _writeLock.Release();
        }
        _readLoop = Task.Run(ReadLoopAsync, CancellationToken.None);
        _keepAliveLoop = Task.Run(KeepAliveLoopAsync, CancellationToken.None);
    }

    /// <summary>Reserves a stream slot if the connection takes new streams; pair with <see cref="OpenReservedConnectAsync"/>.</summary>
    public bool TryReserveStream() => _streams.TryReserve(MaxConcurrentStreams);

    /// <summary>For idle reaping: atomically stops new streams if there are none (so a racing reservation cannot win).</summary>
    public bool TryBeginIdleClose(TimeSpan idleTimeout) => _streams.TryBeginIdleClose(idleTimeout);

    /// <summary>Opens a CONNECT tunnel to <paramref name="authority"/> (ip:port, IPv6 as [addr]:port).</summary>
    public Task<HboneStream> OpenConnectAsync(string authority, IReadOnlyList<(string Name, string Value)>? extraHeaders, CancellationToken cancellationToken)
    {
        if (!TryReserveStream())
        {
            throw new HboneException(IsGoingAway
                ? $"HBONE connection to {Peer} is closing and takes no new streams"
                : $"HBONE connection to {Peer} is at its limit of {MaxConcurrentStreams} concurrent streams", isRetryable: true);
        }
        return OpenReservedConnectAsync(authority, extraHeaders, cancellationToken);
    }

    /// <summary>Sends the CONNECT on a slot taken with <see cref="TryReserveStream"/>; returns the tunnel after a 200.</summary>
    public async Task<HboneStream> OpenReservedConnectAsync(string authority, IReadOnlyList<(string Name, string Value)>? extraHeaders, CancellationToken cancellationToken)
    {
        ArgumentException.ThrowIfNullOrEmpty(authority);
        HboneStream? stream = null;
        try
        {
            stream = await SendConnectHeadersAsync(authority, extraHeaders, cancellationToken).ConfigureAwait(false);
            int status = await stream.ResponseTask.WaitAsync(cancellationToken).ConfigureAwait(false);
            if (status != 200)
            {
                throw new HboneConnectException(status, authority, Peer);
            }
            return stream;
        }
        catch (Exception) when (stream is not null)
        {
            await stream.DisposeAsync().ConfigureAwait(false);
            throw;
        }
        catch (Exception)
        {
            ReleaseSlot();
            throw;
        }
    }

    private async Task<HboneStream> SendConnectHeadersAsync(string authority, IReadOnlyList<(string Name, string Value)>? extraHeaders, CancellationToken cancellationToken)
    {
        await _writeLock.WaitAsync(cancellationToken).ConfigureAwait(false);
        try
        {
            ThrowIfClosed();
            int streamId = _nextStreamId;
            if (streamId <= 0)
            {
                // Stream ids are exhausted (2^31): this connection can only drain.
                _streams.StopNewStreams();
                throw new HboneException($"HBONE connection to {Peer} ran out of stream ids", isRetryable: true);
            }

            // Validate the whole list before encoding: the encoder inserts into its dynamic table field by field, so a
            // failure half-way through a block would leave our table out of step with the peer's.
            ValidateHeaders(authority, extraHeaders);
            _headerScratch.ResetWrittenCount();
            _encoder.EncodeConnectRequest(_headerScratch, authority);
            if (extraHeaders is not null)
            {
                for (int i = 0; i < extraHeaders.Count; i++)
                {
                    (string name, string value) = extraHeaders[i];
                    EncodeExtraHeader(name, value);
                }
            }

            HboneStream stream;
            // Created and registered under the flow lock so a concurrent SETTINGS_INITIAL_WINDOW_SIZE change either
            // sets the initial window or adjusts it, never neither.
            lock (_flow.Lock)
            {
                stream = new HboneStream(this, authority, _flow.PeerInitialWindowSizeLocked, _options.InitialStreamWindowSize) { StreamId = streamId };
                lock (_streams.Lock)
                {
                    if (!_streams.TryAddReservedLocked(stream))
                    {
                        throw ClosedError();
                    }
                }
            }
            _nextStreamId = streamId + 2;
            Http2FrameWriter.WriteHeaders(_output, streamId, _headerScratch.WrittenSpan, endStream: false, _peerMaxFrameSize);
            await FlushOrAbortAsync().ConfigureAwait(false);
            return stream;
        }
        finally
        {
            _writeLock.Release();
        }
    }

    private void EncodeExtraHeader(string name, string value)
    {
        // traceparent and forwarded (with a source port) differ per request; indexing them would only churn the table.
        HPackIndexing indexing = name is "traceparent" or "forwarded" ? HPackIndexing.WithoutIndexing : HPackIndexing.Incremental;
        Span<byte> nameBytes = stackalloc byte[name.Length];
        for (int i = 0; i < name.Length; i++)
        {
            nameBytes[i] = (byte)name[i];
        }
        _encoder.EncodeHeader(_headerScratch, nameBytes, value.AsSpan(), indexing);
    }

    private static void ValidateHeaders(string authority, IReadOnlyList<(string Name, string Value)>? extraHeaders)
    {
        ValidateValue(":authority", authority);
        if (extraHeaders is null)
        {
            return;
        }
        for (int i = 0; i < extraHeaders.Count; i++)
        {
            (string name, string value) = extraHeaders[i];
            if (string.IsNullOrEmpty(name) || name.Length > 256)
            {
                throw new ArgumentException($"HBONE request header #{i} has an empty or over-long name", nameof(extraHeaders));
            }
            foreach (char c in name)
            {
                if (c is >= 'A' and <= 'Z' || c <= ' ' || c >= '\x7f' || c == ':')
                {
                    throw new ArgumentException($"HBONE request header name '{name}' must be a lowercase token (no pseudo-headers)", nameof(extraHeaders));
                }
            }
            if (name is "connection" or "keep-alive" or "proxy-connection" or "transfer-encoding" or "upgrade" or "te")
            {
                throw new ArgumentException($"HBONE request header '{name}' is connection-specific and forbidden in HTTP/2", nameof(extraHeaders));
            }
            ValidateValue(name, value);
        }
    }

    private static void ValidateValue(string name, string value)
    {
        ArgumentNullException.ThrowIfNull(value);
        foreach (char c in value)
        {
            if (c is '\0' or '\r' or '\n' || c > '\xff')
            {
                throw new ArgumentException($"HBONE request header '{name}' has a NUL, CR, LF or non-Latin-1 character", nameof(value));
            }
        }
    }

    // ---- Write path. ----

    /// <summary>Writes <paramref name="data"/> as DATA frames, each within the peer's max frame size and both send
    /// windows; waits (without allocating) for WINDOW_UPDATE when a window is empty.</summary>
    internal async ValueTask WriteDataAsync(HboneStream stream, ReadOnlyMemory<byte> data, CancellationToken cancellationToken)
    {
        while (!data.IsEmpty)
        {
            int chunk = _flow.TryTakeSendWindow(stream, data.Length, _peerMaxFrameSize);
            if (chunk == 0)
            {
                await stream.SendSignal.WaitAsync(cancellationToken).ConfigureAwait(false);
                continue;
            }

            try
            {
                await _writeLock.WaitAsync(cancellationToken).ConfigureAwait(false);
            }
            catch (OperationCanceledException)
            {
                _flow.ReturnSendWindow(stream, chunk);
                throw;
            }
            try
            {
                ThrowIfClosed();
                stream.ThrowIfCannotWrite();
                Span<byte> span = _output.GetSpan(Http2Frame.HeaderLength + chunk);
                data.Span[..chunk].CopyTo(span[Http2Frame.HeaderLength..]);
                Http2FrameWriter.WriteDataFrameHeader(span, stream.StreamId, chunk, endStream: false);
                _output.Advance(Http2Frame.HeaderLength + chunk);
                stream.DataBytesSent += chunk;
                await FlushOrAbortAsync().ConfigureAwait(false);
            }
            finally
            {
                _writeLock.Release();
            }
            data = data[chunk..];
        }
    }

    /// <summary>Half-close: an empty DATA frame with END_STREAM (no flow control for zero bytes).</summary>
    internal async ValueTask WriteEndStreamAsync(HboneStream stream, CancellationToken cancellationToken)
    {
        await _writeLock.WaitAsync(cancellationToken).ConfigureAwait(false);
        try
        {
            ThrowIfClosed();
            stream.ThrowIfCannotWrite();
            Span<byte> span = _output.GetSpan(Http2Frame.HeaderLength);
            Http2FrameWriter.WriteDataFrameHeader(span, stream.StreamId, 0, endStream: true);
            _output.Advance(Http2Frame.HeaderLength);
            await FlushOrAbortAsync().ConfigureAwait(false);
        }
        finally
        {
            _writeLock.Release();
        }
        if (stream.OnLocalEnd())
        {
            ReleaseStream(stream, requireBothEnded: true);
        }
    }

    /// <summary>Reader consumed <paramref name="count"/> bytes: return window to the peer once half of it is used.</summary>
    internal ValueTask OnDataConsumedAsync(HboneStream stream, int count)
    {
        int streamIncrement = stream.TakeWindowUpdate(count, _flow.StreamUpdateThreshold);
        int connectionIncrement = _flow.TakeConnectionWindowUpdate(count);
        return streamIncrement == 0 && connectionIncrement == 0
            ? default
            : SendWindowUpdatesAsync(stream.StreamId, streamIncrement, connectionIncrement);
    }

    /// <summary>Bytes that will never be read (a disposed stream's buffer, DATA for a dead stream, padding) still used
    /// connection window: give it back.</summary>
    internal ValueTask CreditConnectionWindowAsync(int count)
    {
        int increment = count > 0 ? _flow.TakeConnectionWindowUpdate(count) : 0;
        return increment == 0 ? default : SendWindowUpdatesAsync(0, 0, increment);
    }

    private async ValueTask SendWindowUpdatesAsync(int streamId, int streamIncrement, int connectionIncrement)
    {
        await _writeLock.WaitAsync().ConfigureAwait(false);
        try
        {
            if (IsClosed)
            {
                return;
            }
            if (streamIncrement > 0)
            {
                Http2FrameWriter.WriteWindowUpdate(_output, streamId, (uint)streamIncrement);
            }
            if (connectionIncrement > 0)
            {
                Http2FrameWriter.WriteWindowUpdate(_output, 0, (uint)connectionIncrement);
            }
            await FlushOrAbortAsync().ConfigureAwait(false);
        }
        finally
        {
            _writeLock.Release();
        }
    }

    /// <summary>Sends RST_STREAM (unless the connection is gone) and forgets the stream.</summary>
    internal async ValueTask ResetStreamAsync(HboneStream stream, Http2ErrorCode errorCode)
    {
        if (ReleaseStream(stream, requireBothEnded: false))
        {
            await SendRstStreamAsync(stream.StreamId, errorCode).ConfigureAwait(false);
        }
    }

    /// <summary>Writes RST_STREAM for <paramref name="streamId"/> unless the connection is gone; also for a stream we
    /// never registered (a server's refusal).</summary>
    private async ValueTask SendRstStreamAsync(int streamId, Http2ErrorCode code)
    {
        await _writeLock.WaitAsync().ConfigureAwait(false);
        try
        {
            if (!IsClosed)
            {
                Http2FrameWriter.WriteRstStream(_output, streamId, code);
                await FlushOrAbortAsync().ConfigureAwait(false);
            }
        }
        finally
        {
            _writeLock.Release();
        }
    }

    /// <summary>Removes the stream and frees its slot, once. Closes a going-away connection whose last stream ended.</summary>
    internal bool ReleaseStream(HboneStream stream, bool requireBothEnded)
    {
        if (!stream.TryMarkReleased(requireBothEnded))
        {
            return false;
        }
        _flow.Forget(stream);
        if (_streams.Remove(stream))
        {
            _ = CloseAsync(Http2ErrorCode.NO_ERROR, "GOAWAY was sent and the last stream ended");
        }
        return true;
    }

    private void ReleaseSlot()
    {
        if (_streams.ReleaseSlot())
        {
            _ = CloseAsync(Http2ErrorCode.NO_ERROR, "GOAWAY was sent and the last stream ended");
        }
    }

    /// <summary>Flushes under the write lock; a failed or canceled flush (<paramref name="cancellationToken"/>: a write
    /// given a deadline) leaves a frame half-written, so the connection is aborted without a GOAWAY.</summary>
    private async ValueTask FlushOrAbortAsync(CancellationToken cancellationToken = default)
    {
        try
        {
            await _output.FlushAsync(cancellationToken).ConfigureAwait(false);
        }
        catch (Exception ex) when (ex is IOException or ObjectDisposedException or InvalidOperationException
            || (ex is OperationCanceledException && cancellationToken.IsCancellationRequested))
        {
            var error = ex is OperationCanceledException
                ? new HboneException($"HBONE connection to {Peer} failed: a write did not complete in time (the peer is not reading)", inner: ex)
                : new HboneException($"HBONE connection to {Peer} failed while writing: {ex.Message}", inner: ex);
            Abort(error, goAwayCode: null);
            throw error;
        }
    }

    private void ThrowIfClosed()
    {
        if (_streams.IsClosed)
        {
            throw ClosedError();
        }
    }

    private HboneException ClosedError() =>
        CloseReason as HboneException ?? new HboneException($"HBONE connection to {Peer} is closed", isRetryable: false, inner: CloseReason);
}

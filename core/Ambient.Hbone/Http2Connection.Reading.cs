using System.Buffers;
using System.IO.Pipelines;
using System.Text;
using Ambient.Hbone.Http2;

namespace Ambient.Hbone;

/// <summary>The read loop and frame handlers (RFC 9113 section 6), Kestrel style: ReadAsync, parse every complete frame
/// in the buffer, AdvanceTo(consumed, examined). Only this loop touches the HPACK decoder.</summary>
internal sealed partial class Http2Connection
{
    private readonly HPackDecoder _decoder;
    private readonly Http2HeaderBlockBuffer _headerBlock;
    private Http2ContinuationTracker _continuation;
    private bool _headerBlockEndStream;

    private async Task ReadLoopAsync()
    {
        HboneException? reason = null;
        Http2ErrorCode? goAwayCode = null;
        try
        {
            await _role.ReadPrefaceAsync().ConfigureAwait(false);
            while (true)
            {
                ReadResult result = await _input.ReadAsync(_shutdown.Token).ConfigureAwait(false);
                ReadOnlySequence<byte> buffer = result.Buffer;
                try
                {
                    while (TryReadNextFrame(ref buffer, out Http2Frame frame, out ReadOnlySequence<byte> payload, out Http2StreamException? skipped))
                    {
                        if (skipped is not null)
                        {
                            await ResetForStreamErrorAsync(skipped).ConfigureAwait(false);
                            continue;
                        }
                        await ProcessFrameAsync(frame, payload).ConfigureAwait(false);
                    }
                    if (result.IsCompleted || result.IsCanceled)
                    {
                        reason = buffer.IsEmpty || result.IsCanceled
                            ? new HboneException($"HBONE peer {Peer} closed the connection")
                            : new HboneException($"HBONE peer {Peer} closed the connection in the middle of a frame ({buffer.Length} bytes left)");
                        return;
                    }
                }
                finally
                {
                    _input.AdvanceTo(buffer.Start, buffer.End);
                }
            }
        }
        catch (Http2ConnectionException ex)
        {
            HboneLog.ConnectionError(_logger, Peer, ex.ErrorCode, ex.Message);
            reason = new HboneException($"HBONE connection to {Peer} failed: {ex.Message}", errorCode: ex.ErrorCode, inner: ex);
            goAwayCode = ex.ErrorCode;
        }
        catch (OperationCanceledException) when (_shutdown.IsCancellationRequested)
        {
            // Closed by us; Abort already recorded the reason.
        }
        catch (Exception ex)
        {
            reason = ex as HboneException ?? new HboneException($"HBONE connection to {Peer} failed while reading: {ex.Message}", inner: ex);
        }
        finally
        {
            await _input.CompleteAsync().ConfigureAwait(false);
            Abort(reason ?? new HboneException($"HBONE connection to {Peer} is closed"), goAwayCode);
        }
    }

    private bool TryReadNextFrame(ref ReadOnlySequence<byte> buffer, out Http2Frame frame, out ReadOnlySequence<byte> payload, out Http2StreamException? streamError)
    {
        streamError = null;
        try
        {
            if (!Http2FrameReader.TryReadFrame(ref buffer, (uint)_options.MaxFrameSize, out frame, out payload))
            {
                return false;
            }
            _continuation.OnFrame(frame);
            _role.OnFrameRead(frame);
            return true;
        }
        catch (Http2StreamException ex)
        {
            // The reader validated a complete frame and found a stream-level fault (e.g. a zero WINDOW_UPDATE increment):
            // skip just that frame. A faulty HEADERS cannot be skipped: its block must reach HPACK to keep tables in step.
            frame = PeekFrameHeader(buffer, ex.StreamId);
            int length = frame.PayloadLength;
            _continuation.OnFrame(frame);
            if (frame.Type == Http2FrameType.HEADERS)
            {
                throw new Http2ConnectionException(Http2ErrorCode.PROTOCOL_ERROR, ex.Message);
            }
            buffer = buffer.Slice(Http2Frame.HeaderLength + length);
            payload = default;
            streamError = ex;
            return true;
        }
    }

    private static Http2Frame PeekFrameHeader(in ReadOnlySequence<byte> buffer, int streamId)
    {
        Span<byte> header = stackalloc byte[Http2Frame.HeaderLength];
        Http2FrameReader.Copy(buffer, header);
        int length = (header[0] << 16) | (header[1] << 8) | header[2];
        return new Http2Frame(length, (Http2FrameType)header[3], (Http2Flags)header[4], streamId);
    }

    private ValueTask ProcessFrameAsync(in Http2Frame frame, in ReadOnlySequence<byte> payload)
    {
        try
        {
            switch (frame.Type)
            {
                case Http2FrameType.DATA:
                    return ProcessData(frame, payload);
                case Http2FrameType.HEADERS:
                case Http2FrameType.CONTINUATION:
                    return ProcessHeaders(frame, payload);
                case Http2FrameType.RST_STREAM:
                    ProcessRstStream(frame, payload);
                    return default;
                case Http2FrameType.SETTINGS:
                    return ProcessSettings(frame, payload);
                case Http2FrameType.PING:
                    return ProcessPing(frame, payload);
                case Http2FrameType.GOAWAY:
                    ProcessGoAway(payload);
                    return default;
                case Http2FrameType.WINDOW_UPDATE:
                    ProcessWindowUpdate(frame, payload);
                    return default;
                case Http2FrameType.PUSH_PROMISE:
                    throw new Http2ConnectionException(Http2ErrorCode.PROTOCOL_ERROR, "PUSH_PROMISE received although we sent SETTINGS_ENABLE_PUSH 0");
                default:
                    // PRIORITY is advisory and unknown frame types must be ignored (RFC 9113 sections 5.3.2 and 4.1).
                    return default;
            }
        }
        catch (Http2StreamException ex)
        {
            return ResetForStreamErrorAsync(ex);
        }
    }

    private async ValueTask ResetForStreamErrorAsync(Http2StreamException ex)
    {
        HboneStream? stream = FindStream(ex.StreamId);
        if (stream is null)
        {
            await _role.OnStreamErrorWithoutStreamAsync(ex).ConfigureAwait(false);
            return;
        }
        HboneLog.StreamError(_logger, Peer, ex.StreamId, ex.Message);
        stream.Fail(new HboneException($"HBONE stream {ex.StreamId} (CONNECT {stream.Authority}) to {Peer} failed: {ex.Message}", errorCode: ex.ErrorCode, inner: ex));
        await ResetStreamAsync(stream, ex.ErrorCode).ConfigureAwait(false);
    }

    private HboneStream? FindStream(int streamId)
    {
        return _streams.Find(streamId);
    }

    /// <summary>Frames on a stream id we never opened (ids we have not sent, or even ids: we allow no push) are a
    /// connection error (RFC 9113 section 5.1, "idle" state).</summary>
    private void ThrowIfNeverOpened(in Http2Frame frame)
    {
        if (!_role.WasOpened(frame.StreamId))
        {
            throw new Http2ConnectionException(Http2ErrorCode.PROTOCOL_ERROR, $"{frame.Type} on stream {frame.StreamId}, which was never opened");
        }
    }

    /*
     RFC 9113 section 6.1: DATA carries the tunnel bytes. Flow control counts the whole payload including padding
     (section 6.9.1); the padding is credited back at once since nobody will read it.
    */
    private ValueTask ProcessData(in Http2Frame frame, in ReadOnlySequence<byte> payload)
    {
        ThrowIfNeverOpened(frame);
        if (!_flow.TryConsumeReceiveWindow(frame.PayloadLength))
        {
            throw new Http2ConnectionException(Http2ErrorCode.FLOW_CONTROL_ERROR,
                $"peer sent a {frame.PayloadLength}-byte DATA frame beyond the connection receive window");
        }
        ReadOnlySequence<byte> data = Http2FrameReader.GetDataPayload(frame, payload);
        int padding = frame.PayloadLength - (int)data.Length;
        HboneStream? stream = FindStream(frame.StreamId);
        bool accepted;
        try
        {
            accepted = stream is not null && stream.TryReceiveData(data, frame.PayloadLength, frame.EndStream);
        }
        catch (Http2StreamException)
        {
            ObserveInBackground(CreditConnectionWindowAsync(frame.PayloadLength));
            throw;
        }
        if (!accepted)
        {
            // A stream we reset or disposed: the bytes still count against the connection window.
            return CreditConnectionWindowAsync(frame.PayloadLength);
        }
        if (frame.EndStream && stream!.IsRemoteEndedAndLocalEnded)
        {
            ReleaseStream(stream, requireBothEnded: true);
        }
        // Padding is never read: give it back to the stream window as well as the connection's, or a padding peer
        // would slowly close the stream window for good.
        return padding > 0 ? OnDataConsumedAsync(stream!, padding) : default;
    }

    /*
     RFC 9113 sections 6.2 and 6.10: a header block is HEADERS [+ CONTINUATION...]; END_STREAM rides on HEADERS,
     END_HEADERS on the last frame. Every block is decoded, even for streams we already dropped, so our HPACK table
     stays in step with the peer's encoder.
    */
    private ValueTask ProcessHeaders(in Http2Frame frame, in ReadOnlySequence<byte> payload)
    {
        _role.CheckHeaderStream(frame);
        if (frame.Type == Http2FrameType.HEADERS)
        {
            ReadOnlySequence<byte> fragment = Http2FrameReader.GetHeaderBlockFragment(frame, payload);
            if (frame.EndHeaders && fragment.IsSingleSegment)
            {
                return DecodeHeaderBlock(frame.StreamId, fragment.FirstSpan, frame.EndStream);
            }
            if (frame.EndHeaders)
            {
                // A block split across pipe segments: decode it from one contiguous copy.
                _headerBlock.Reset();
                _headerBlock.Append(fragment);
                try
                {
                    return DecodeHeaderBlock(frame.StreamId, _headerBlock.Block, frame.EndStream);
                }
                finally
                {
                    _headerBlock.Reset();
                }
            }
            _headerBlock.Reset();
            _headerBlock.Append(fragment);
            _headerBlockEndStream = frame.EndStream;
            return default;
        }

        _headerBlock.Append(payload);
        if (frame.EndHeaders)
        {
            try
            {
                return DecodeHeaderBlock(frame.StreamId, _headerBlock.Block, _headerBlockEndStream);
            }
            finally
            {
                _headerBlock.Reset();
            }
        }
        return default;
    }

    private ValueTask DecodeHeaderBlock(int streamId, ReadOnlySpan<byte> block, bool endStream) => _role.OnHeaderBlock(streamId, block, endStream);

    private void OnResponseHeaders(int streamId, in ResponseHeaderHandler headers, bool endStream)
    {
        HboneStream? stream = FindStream(streamId);
        if (stream is null)
        {
            return;
        }
        if (headers.Error is not null)
        {
            throw new Http2StreamException(streamId, Http2ErrorCode.PROTOCOL_ERROR, $"malformed response: {headers.Error}");
        }
        if (!stream.IsResponseReceived)
        {
            if (headers.Status == 0)
            {
                throw new Http2StreamException(streamId, Http2ErrorCode.PROTOCOL_ERROR, "response without :status");
            }
            if (headers.Status < 200)
            {
                // Informational (1xx): the final response follows (RFC 9113 section 8.1).
                if (endStream)
                {
                    throw new Http2StreamException(streamId, Http2ErrorCode.PROTOCOL_ERROR, $"informational {headers.Status} response with END_STREAM");
                }
                return;
            }
            stream.OnResponse(headers.Status, endStream);
        }
        else
        {
            // Trailers: only legal as the last frame of the stream.
            if (!endStream)
            {
                throw new Http2StreamException(streamId, Http2ErrorCode.PROTOCOL_ERROR, "second HEADERS without END_STREAM");
            }
            stream.TryReceiveData(ReadOnlySequence<byte>.Empty, 0, endStream: true);
        }
        if (endStream && stream.IsRemoteEndedAndLocalEnded)
        {
            ReleaseStream(stream, requireBothEnded: true);
        }
    }

    private void ProcessRstStream(in Http2Frame frame, in ReadOnlySequence<byte> payload)
    {
        ThrowIfNeverOpened(frame);
        Http2ErrorCode code = Http2FrameReader.ReadRstStreamErrorCode(payload);
        HboneStream? stream = FindStream(frame.StreamId);
        if (stream is null)
        {
            return;
        }
        HboneLog.StreamResetByPeer(_logger, Peer, frame.StreamId, code);
        _role.OnPeerReset(stream);
        if (code == Http2ErrorCode.NO_ERROR && _role is ClientRole && stream.RemoteEnded)
        {
            // RFC 9113 section 8.1: the server's answer is complete and it only asks us to stop sending. Clients must not
            // discard the answer for it: the tunnel's reader still gets every byte and then the end.
            ReleaseStream(stream, requireBothEnded: false);
            stream.StopSending(new HboneSendStoppedException(
                $"HBONE stream {frame.StreamId} (CONNECT {stream.Authority}): {Peer} answered in full and reset it with NO_ERROR (stop sending)"));
            return;
        }
        // Released first: a handler that sees the failure and disposes must not answer this RST_STREAM with another
        // (RFC 9113 section 5.4.2). REFUSED_STREAM promises the peer did no work, so the CONNECT may be retried
        // elsewhere (section 8.7).
        ReleaseStream(stream, requireBothEnded: false);
        stream.Fail(new HboneException($"HBONE stream {frame.StreamId} (CONNECT {stream.Authority}) was reset by {Peer} with RST_STREAM {code}",
            isRetryable: code == Http2ErrorCode.REFUSED_STREAM, errorCode: code));
    }

    private ValueTask ProcessSettings(in Http2Frame frame, in ReadOnlySequence<byte> payload)
    {
        if (frame.Ack)
        {
            return default;
        }
        uint? headerTableSize = null;
        foreach (Http2Setting setting in Http2FrameReader.ReadSettings(payload))
        {
            switch (setting.Parameter)
            {
                case Http2SettingsParameter.SETTINGS_HEADER_TABLE_SIZE:
                    headerTableSize = setting.Value;
                    break;
                case Http2SettingsParameter.SETTINGS_ENABLE_PUSH when !_role.AcceptsEnablePush(setting.Value):
                    throw new Http2ConnectionException(Http2ErrorCode.PROTOCOL_ERROR, $"SETTINGS_ENABLE_PUSH {setting.Value} (RFC 9113 section 6.5.2)");
                case Http2SettingsParameter.SETTINGS_MAX_CONCURRENT_STREAMS:
                    _streams.PeerMaxConcurrentStreams = (int)Math.Min(setting.Value, int.MaxValue);
                    break;
                case Http2SettingsParameter.SETTINGS_INITIAL_WINDOW_SIZE:
                    ApplyPeerInitialWindowSize(setting.Value);
                    break;
                case Http2SettingsParameter.SETTINGS_MAX_FRAME_SIZE:
                    _peerMaxFrameSize = (int)setting.Value;
                    break;
                default:
                    // MAX_HEADER_LIST_SIZE is advisory and our requests are tiny; unknown settings are ignored.
                    break;
            }
        }
        return SendSettingsAckAsync(headerTableSize);
    }

    /// <summary>Shifts every open stream's send window (see <see cref="Http2FlowControl.ApplyPeerInitialWindowSizeLocked"/>).</summary>
    private void ApplyPeerInitialWindowSize(uint value)
    {
        lock (_flow.Lock)
        {
            lock (_streams.Lock)
            {
                _flow.ApplyPeerInitialWindowSizeLocked(value, _streams.OpenStreamsLocked);
            }
        }
    }

    private async ValueTask SendSettingsAckAsync(uint? headerTableSize)
    {
        await _writeLock.WaitAsync().ConfigureAwait(false);
        try
        {
            if (headerTableSize is uint size)
            {
                // The encoder is write-lock state; the size update it owes goes out at the start of the next block.
                _encoder.SetPeerHeaderTableSize(size);
            }
            if (IsClosed)
            {
                return;
            }
            Http2FrameWriter.WriteSettingsAck(_output);
            await FlushOrAbortAsync().ConfigureAwait(false);
        }
        finally
        {
            _writeLock.Release();
        }
    }

    private ValueTask ProcessPing(in Http2Frame frame, in ReadOnlySequence<byte> payload)
    {
        ulong data = Http2FrameReader.ReadPingData(payload);
        if (frame.Ack)
        {
            _keepAlive.OnPingAck(data);
            return default;
        }
        return SendPingAsync(data, ack: true);
    }

    private void ProcessGoAway(in ReadOnlySequence<byte> payload)
    {
        Http2FrameReader.ReadGoAway(payload, out int lastStreamId, out Http2ErrorCode code);
        HboneLog.GoAwayReceived(_logger, Peer, lastStreamId, code);
        List<HboneStream>? unprocessed = null;
        bool drained;
        lock (_streams.Lock)
        {
            drained = _streams.OnPeerGoAwayLocked();
            foreach (HboneStream stream in _streams.OpenStreamsLocked)
            {
                if (_role.IsUnprocessed(stream, lastStreamId))
                {
                    (unprocessed ??= []).Add(stream);
                }
            }
        }
        if (unprocessed is not null)
        {
            foreach (HboneStream stream in unprocessed)
            {
                stream.Fail(new HboneException(
                    $"HBONE peer {Peer} sent GOAWAY (last stream {lastStreamId}, {code}); stream {stream.StreamId} (CONNECT {stream.Authority}) was not processed and may be retried",
                    isRetryable: true, errorCode: code));
                ReleaseStream(stream, requireBothEnded: false);
            }
        }
        if (drained)
        {
            _ = CloseAsync(Http2ErrorCode.NO_ERROR, $"peer sent GOAWAY ({code}) and no streams were open");
        }
    }

    private void ProcessWindowUpdate(in Http2Frame frame, in ReadOnlySequence<byte> payload)
    {
        uint increment = Http2FrameReader.ReadWindowUpdateIncrement(payload);
        if (frame.StreamId == 0)
        {
            _flow.OnConnectionWindowUpdate(increment);
            return;
        }

        ThrowIfNeverOpened(frame);
        HboneStream? stream = FindStream(frame.StreamId);
        if (stream is not null)
        {
            _flow.OnStreamWindowUpdate(stream, increment);
        }
    }

    /// <summary>Collects <c>:status</c> from a response header block without allocating (errors are constant strings).</summary>
    private struct ResponseHeaderHandler : IHPackHeaderHandler
    {
        public int Status;
        public string? Error;

        public void OnHeader(int staticIndex, ReadOnlySpan<byte> name, ReadOnlySpan<byte> value)
        {
            // Static entries 8..14 are ":status" with the common codes.
            if (staticIndex is >= 8 and <= 14 || (staticIndex == 0 && name.SequenceEqual(":status"u8)))
            {
                if (Status != 0)
                {
                    Error ??= "duplicate :status";
                }
                else if (value.Length == 3 && IsDigit(value[0]) && IsDigit(value[1]) && IsDigit(value[2]) && value[0] != (byte)'0')
                {
                    Status = ((value[0] - '0') * 100) + ((value[1] - '0') * 10) + (value[2] - '0');
                }
                else
                {
                    Error ??= "invalid :status value";
                }
                return;
            }
            if (!name.IsEmpty && name[0] == (byte)':')
            {
                Error ??= "unexpected pseudo-header in a response";
            }
        }

        private static bool IsDigit(byte b) => b is >= (byte)'0' and <= (byte)'9';
    }

    private static string DebugText(string message) => message.Length <= 200 ? message : message[..200];

    private static byte[] DebugBytes(string message) => Encoding.UTF8.GetBytes(DebugText(message));
}

using System.Buffers;
using System.Buffers.Binary;

namespace Ambient.Hbone.Http2;

/// <summary>
/// Stateless HTTP/2 frame parsing over a <see cref="ReadOnlySequence{T}"/> (RFC 9113 section 4 and 6), in the style of
/// Kestrel's read loop: <c>TryReadFrame</c> returns false while the frame is incomplete and the caller calls
/// <c>reader.AdvanceTo(buffer.Start, buffer.End)</c>; on true, <paramref name="buffer"/> has moved past the frame and the
/// payload is a slice of the same memory (no copy, no allocation).
/// Stateful rules (CONTINUATION sequencing) live in <see cref="Http2ContinuationTracker"/>.
/// </summary>
internal static class Http2FrameReader
{
    /*
     RFC 9113 section 4.1, frame layout:
     +-----------------------------------------------+
     |                 Length (24)                   |
     +---------------+---------------+---------------+
     |   Type (8)    |   Flags (8)   |
     +-+-------------+---------------+-------------------------------+
     |R|                 Stream Identifier (31)                      |
     +=+=============================================================+
     |                   Frame Payload (0...)                      ...
     +---------------------------------------------------------------+
    */
    public static bool TryReadFrame(ref ReadOnlySequence<byte> buffer, uint maxFrameSize, out Http2Frame frame, out ReadOnlySequence<byte> payload)
    {
        frame = default;
        payload = default;
        if (buffer.Length < Http2Frame.HeaderLength)
        {
            return false;
        }

        Span<byte> header = stackalloc byte[Http2Frame.HeaderLength];
        Copy(buffer, header);

        int length = (header[0] << 16) | (header[1] << 8) | header[2];
        var type = (Http2FrameType)header[3];
        var flags = (Http2Flags)header[4];
        // The reserved bit must be ignored on receipt (RFC 9113 section 4.1).
        int streamId = (int)(BinaryPrimitives.ReadUInt32BigEndian(header[5..]) & 0x7FFF_FFFF);

        // Checked before the payload has arrived so an oversized frame is refused without buffering it.
        if ((uint)length > maxFrameSize)
        {
            throw new Http2ConnectionException(Http2ErrorCode.FRAME_SIZE_ERROR,
                $"{type} frame length {length} exceeds the maximum frame size {maxFrameSize}");
        }

        if (buffer.Length < Http2Frame.HeaderLength + length)
        {
            return false;
        }

        frame = new Http2Frame(length, type, flags, streamId);
        payload = buffer.Slice(Http2Frame.HeaderLength, length);
        Validate(frame, payload);
        buffer = buffer.Slice(payload.End);
        return true;
    }

    private static void Validate(in Http2Frame frame, in ReadOnlySequence<byte> payload)
    {
        switch (frame.Type)
        {
            case Http2FrameType.DATA:
                RequireStream(frame);
                PaddedContentLength(frame, payload, fixedFieldLength: 0);
                break;
            case Http2FrameType.HEADERS:
                RequireStream(frame);
                PaddedContentLength(frame, payload, fixedFieldLength: frame.HasPriority ? 5 : 0);
                if (frame.HasPriority)
                {
                    CheckPriorityDependency(frame, payload.Slice(frame.Padded ? 1 : 0, 5));
                }
                break;
            case Http2FrameType.PRIORITY:
                RequireStream(frame);
                if (frame.PayloadLength != 5)
                {
                    throw new Http2StreamException(frame.StreamId, Http2ErrorCode.FRAME_SIZE_ERROR,
                        $"PRIORITY frame length must be 5, got {frame.PayloadLength}");
                }
                CheckPriorityDependency(frame, payload);
                break;
            case Http2FrameType.RST_STREAM:
                RequireStream(frame);
                RequireLength(frame, 4);
                break;
            case Http2FrameType.SETTINGS:
                RequireConnection(frame);
                if (frame.Ack && frame.PayloadLength != 0)
                {
                    throw new Http2ConnectionException(Http2ErrorCode.FRAME_SIZE_ERROR,
                        $"SETTINGS ACK must have an empty payload, got {frame.PayloadLength} bytes");
                }
                if (frame.PayloadLength % 6 != 0)
                {
                    throw new Http2ConnectionException(Http2ErrorCode.FRAME_SIZE_ERROR,
                        $"SETTINGS frame length {frame.PayloadLength} is not a multiple of 6");
                }
                break;
            case Http2FrameType.PUSH_PROMISE:
                RequireStream(frame);
                PaddedContentLength(frame, payload, fixedFieldLength: 4);
                break;
            case Http2FrameType.PING:
                RequireConnection(frame);
                RequireLength(frame, 8);
                break;
            case Http2FrameType.GOAWAY:
                RequireConnection(frame);
                if (frame.PayloadLength < 8)
                {
                    throw new Http2ConnectionException(Http2ErrorCode.FRAME_SIZE_ERROR,
                        $"GOAWAY frame length must be at least 8, got {frame.PayloadLength}");
                }
                break;
            case Http2FrameType.WINDOW_UPDATE:
                RequireLength(frame, 4);
                if (ReadWindowUpdateIncrement(payload) == 0)
                {
                    const string message = "WINDOW_UPDATE increment must not be 0";
                    if (frame.StreamId == 0)
                    {
                        throw new Http2ConnectionException(Http2ErrorCode.PROTOCOL_ERROR, message);
                    }
                    throw new Http2StreamException(frame.StreamId, Http2ErrorCode.PROTOCOL_ERROR, message);
                }
                break;
            case Http2FrameType.CONTINUATION:
                RequireStream(frame);
                break;
            default:
                // Unknown frame types must be ignored (RFC 9113 section 4.1); the caller skips them.
                break;
        }
    }

    /*
     RFC 9113 section 6.1 (DATA) / 6.2 (HEADERS):
     +---------------+-----------------------------------------------+
     |Pad Length? (8)|  HEADERS only, if PRIORITY flag:               |
     +---------------+  |E| Stream Dependency (31) | Weight (8)       |
     |                   Data / Field Block Fragment (*)           ...
     +---------------------------------------------------------------+
     |                           Padding (*)                       ...
     +---------------------------------------------------------------+
    */

    /// <summary>The DATA payload without the pad-length byte and padding. Flow control still counts the whole frame length.</summary>
    public static ReadOnlySequence<byte> GetDataPayload(in Http2Frame frame, in ReadOnlySequence<byte> payload)
    {
        if (!frame.Padded)
        {
            return payload;
        }
        int padLength = ReadByte(payload);
        return payload.Slice(1, frame.PayloadLength - 1 - padLength);
    }

    /// <summary>The header block fragment of a HEADERS frame without padding and priority fields.</summary>
    public static ReadOnlySequence<byte> GetHeaderBlockFragment(in Http2Frame frame, in ReadOnlySequence<byte> payload)
    {
        if (frame.Type != Http2FrameType.HEADERS)
        {
            // CONTINUATION has neither padding nor priority.
            return payload;
        }
        int start = 0;
        int padLength = 0;
        if (frame.Padded)
        {
            padLength = ReadByte(payload);
            start = 1;
        }
        if (frame.HasPriority)
        {
            start += 5;
        }
        return payload.Slice(start, frame.PayloadLength - start - padLength);
    }

    /*
     RFC 9113 section 6.5.1, SETTINGS payload: zero or more of
     +-------------------------------+
     |       Identifier (16)         |
     +-------------------------------+-------------------------------+
     |                        Value (32)                             |
     +---------------------------------------------------------------+
    */
    /// <summary>Enumerates (and validates) SETTINGS entries without allocating: <c>foreach (var s in ReadSettings(p))</c>.</summary>
    public static Http2SettingsEnumerator ReadSettings(in ReadOnlySequence<byte> payload) => new(payload);

    /*
     RFC 9113 section 6.9, WINDOW_UPDATE payload:
     +-+-------------------------------------------------------------+
     |R|              Window Size Increment (31)                     |
     +-+-------------------------------------------------------------+
    */
    public static uint ReadWindowUpdateIncrement(in ReadOnlySequence<byte> payload) => ReadUInt32(payload) & 0x7FFF_FFFF;

    /*
     RFC 9113 section 6.4, RST_STREAM payload:
     +---------------------------------------------------------------+
     |                        Error Code (32)                        |
     +---------------------------------------------------------------+
    */
    public static Http2ErrorCode ReadRstStreamErrorCode(in ReadOnlySequence<byte> payload) => (Http2ErrorCode)ReadUInt32(payload);

    /*
     RFC 9113 section 6.8, GOAWAY payload:
     +-+-------------------------------------------------------------+
     |R|                  Last-Stream-ID (31)                        |
     +-+-------------------------------------------------------------+
     |                      Error Code (32)                          |
     +---------------------------------------------------------------+
     |                  Additional Debug Data (*)                    |
     +---------------------------------------------------------------+
    */
    /// <summary>Parses GOAWAY; returns the additional debug data (a slice, possibly empty).</summary>
    public static ReadOnlySequence<byte> ReadGoAway(in ReadOnlySequence<byte> payload, out int lastStreamId, out Http2ErrorCode errorCode)
    {
        Span<byte> fixedPart = stackalloc byte[8];
        Copy(payload, fixedPart);
        lastStreamId = (int)(BinaryPrimitives.ReadUInt32BigEndian(fixedPart) & 0x7FFF_FFFF);
        errorCode = (Http2ErrorCode)BinaryPrimitives.ReadUInt32BigEndian(fixedPart[4..]);
        return payload.Slice(8);
    }

    /*
     RFC 9113 section 6.7, PING payload:
     +---------------------------------------------------------------+
     |                      Opaque Data (64)                         |
     +---------------------------------------------------------------+
    */
    public static ulong ReadPingData(in ReadOnlySequence<byte> payload)
    {
        Span<byte> data = stackalloc byte[8];
        Copy(payload, data);
        return BinaryPrimitives.ReadUInt64BigEndian(data);
    }

    private static void RequireStream(in Http2Frame frame)
    {
        if (frame.StreamId == 0)
        {
            throw new Http2ConnectionException(Http2ErrorCode.PROTOCOL_ERROR, $"{frame.Type} frame must not be sent on stream 0");
        }
    }

    private static void RequireConnection(in Http2Frame frame)
    {
        if (frame.StreamId != 0)
        {
            throw new Http2ConnectionException(Http2ErrorCode.PROTOCOL_ERROR,
                $"{frame.Type} frame must be sent on stream 0, got stream {frame.StreamId}");
        }
    }

    private static void RequireLength(in Http2Frame frame, int expected)
    {
        if (frame.PayloadLength != expected)
        {
            throw new Http2ConnectionException(Http2ErrorCode.FRAME_SIZE_ERROR,
                $"{frame.Type} frame length must be {expected}, got {frame.PayloadLength}");
        }
    }

    private static void PaddedContentLength(in Http2Frame frame, in ReadOnlySequence<byte> payload, int fixedFieldLength)
    {
        int overhead = fixedFieldLength + (frame.Padded ? 1 : 0);
        if (frame.PayloadLength < overhead)
        {
            throw new Http2ConnectionException(Http2ErrorCode.FRAME_SIZE_ERROR,
                $"{frame.Type} frame length {frame.PayloadLength} is too short for its flags (needs {overhead} bytes)");
        }
        if (frame.Padded)
        {
            int padLength = ReadByte(payload);
            if (padLength > frame.PayloadLength - overhead)
            {
                throw new Http2ConnectionException(Http2ErrorCode.PROTOCOL_ERROR,
                    $"{frame.Type} padding length {padLength} exceeds the frame payload ({frame.PayloadLength} bytes)");
            }
        }
    }

    private static void CheckPriorityDependency(in Http2Frame frame, in ReadOnlySequence<byte> priority)
    {
        int dependency = (int)(ReadUInt32(priority) & 0x7FFF_FFFF);
        if (dependency == frame.StreamId)
        {
            throw new Http2StreamException(frame.StreamId, Http2ErrorCode.PROTOCOL_ERROR, "stream cannot depend on itself");
        }
    }

    private static byte ReadByte(in ReadOnlySequence<byte> payload)
    {
        Span<byte> b = stackalloc byte[1];
        Copy(payload, b);
        return b[0];
    }

    private static uint ReadUInt32(in ReadOnlySequence<byte> payload)
    {
        Span<byte> b = stackalloc byte[4];
        Copy(payload, b);
        return BinaryPrimitives.ReadUInt32BigEndian(b);
    }

    internal static void Copy(in ReadOnlySequence<byte> source, Span<byte> destination)
    {
        ReadOnlySpan<byte> first = source.FirstSpan;
        if (first.Length >= destination.Length)
        {
            first[..destination.Length].CopyTo(destination);
        }
        else
        {
            source.Slice(0, destination.Length).CopyTo(destination);
        }
    }
}

/// <summary>Allocation-free enumerator over a SETTINGS payload; validates each value per RFC 9113 section 6.5.2.</summary>
internal struct Http2SettingsEnumerator
{
    private ReadOnlySequence<byte> _remaining;

    public Http2SettingsEnumerator(in ReadOnlySequence<byte> payload)
    {
        _remaining = payload;
        Current = default;
    }

    public Http2Setting Current { get; private set; }

    public readonly Http2SettingsEnumerator GetEnumerator() => this;

    public bool MoveNext()
    {
        if (_remaining.Length < 6)
        {
            return false;
        }
        Span<byte> entry = stackalloc byte[6];
        Http2FrameReader.Copy(_remaining, entry);
        _remaining = _remaining.Slice(6);
        var parameter = (Http2SettingsParameter)BinaryPrimitives.ReadUInt16BigEndian(entry);
        uint value = BinaryPrimitives.ReadUInt32BigEndian(entry[2..]);
        switch (parameter)
        {
            case Http2SettingsParameter.SETTINGS_ENABLE_PUSH when value > 1:
                throw new Http2ConnectionException(Http2ErrorCode.PROTOCOL_ERROR, $"SETTINGS_ENABLE_PUSH must be 0 or 1, got {value}");
            case Http2SettingsParameter.SETTINGS_INITIAL_WINDOW_SIZE when value > Http2Frame.MaxWindowSize:
                throw new Http2ConnectionException(Http2ErrorCode.FLOW_CONTROL_ERROR,
                    $"SETTINGS_INITIAL_WINDOW_SIZE {value} exceeds 2^31-1");
            case Http2SettingsParameter.SETTINGS_MAX_FRAME_SIZE when value < Http2Frame.DefaultMaxFrameSize || value > Http2Frame.MaxAllowedFrameSize:
                throw new Http2ConnectionException(Http2ErrorCode.PROTOCOL_ERROR,
                    $"SETTINGS_MAX_FRAME_SIZE {value} is outside 16384..16777215");
        }
        Current = new Http2Setting(parameter, value);
        return true;
    }
}

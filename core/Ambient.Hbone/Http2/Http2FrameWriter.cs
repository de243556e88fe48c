using System.Buffers;
using System.Buffers.Binary;

namespace Ambient.Hbone.Http2;

/// <summary>
/// Writes HTTP/2 frames into an <see cref="IBufferWriter{T}"/> (a PipeWriter in production) without allocating.
/// Not thread-safe by itself: the connection serialises writers (frames of one header block must not interleave).
/// </summary>
internal static class Http2FrameWriter
{
    /// <summary>Writes the 9-byte frame header (layout in <see cref="Http2FrameReader.TryReadFrame"/>).</summary>
    public static void WriteFrameHeader(Span<byte> destination, int payloadLength, Http2FrameType type, Http2Flags flags, int streamId)
    {
        if ((uint)payloadLength > Http2Frame.MaxAllowedFrameSize)
        {
            throw new ArgumentOutOfRangeException(nameof(payloadLength), payloadLength, "frame payload must be at most 2^24-1 bytes");
        }
        destination[0] = (byte)(payloadLength >> 16);
        destination[1] = (byte)(payloadLength >> 8);
        destination[2] = (byte)payloadLength;
        destination[3] = (byte)type;
        destination[4] = (byte)flags;
        BinaryPrimitives.WriteUInt32BigEndian(destination[5..], (uint)streamId & 0x7FFF_FFFF);
    }

    /// <summary>
    /// Zero-copy DATA: the caller reserves <c>9 + n</c> bytes (<c>GetSpan</c>), fills the payload at offset 9, then calls
    /// this to put the header in front and <c>Advance(9 + n)</c>. The caller keeps n within the peer's max frame size.
    /// </summary>
    public static void WriteDataFrameHeader(Span<byte> destination, int streamId, int payloadLength, bool endStream) =>
        WriteFrameHeader(destination, payloadLength, Http2FrameType.DATA, endStream ? Http2Flags.END_STREAM : Http2Flags.NONE, streamId);

    public static void WritePreface(IBufferWriter<byte> output) => output.Write(Http2Frame.ClientPreface);

    public static void WriteSettings(IBufferWriter<byte> output, ReadOnlySpan<Http2Setting> settings)
    {
        int length = settings.Length * 6;
        Span<byte> span = output.GetSpan(Http2Frame.HeaderLength + length);
        WriteFrameHeader(span, length, Http2FrameType.SETTINGS, Http2Flags.NONE, 0);
        Span<byte> body = span[Http2Frame.HeaderLength..];
        foreach (var setting in settings)
        {
            BinaryPrimitives.WriteUInt16BigEndian(body, (ushort)setting.Parameter);
            BinaryPrimitives.WriteUInt32BigEndian(body[2..], setting.Value);
            body = body[6..];
        }
        output.Advance(Http2Frame.HeaderLength + length);
    }

    public static void WriteSettingsAck(IBufferWriter<byte> output)
    {
        Span<byte> span = output.GetSpan(Http2Frame.HeaderLength);
        WriteFrameHeader(span, 0, Http2FrameType.SETTINGS, Http2Flags.ACK, 0);
        output.Advance(Http2Frame.HeaderLength);
    }

    public static void WriteWindowUpdate(IBufferWriter<byte> output, int streamId, uint increment)
    {
        if (increment == 0 || increment > Http2Frame.MaxWindowSize)
        {
            throw new ArgumentOutOfRangeException(nameof(increment), increment, "WINDOW_UPDATE increment must be 1..2^31-1");
        }
        Span<byte> span = output.GetSpan(Http2Frame.HeaderLength + 4);
        WriteFrameHeader(span, 4, Http2FrameType.WINDOW_UPDATE, Http2Flags.NONE, streamId);
        BinaryPrimitives.WriteUInt32BigEndian(span[Http2Frame.HeaderLength..], increment);
        output.Advance(Http2Frame.HeaderLength + 4);
    }

    public static void WritePing(IBufferWriter<byte> output, ulong opaqueData, bool ack)
    {
        Span<byte> span = output.GetSpan(Http2Frame.HeaderLength + 8);
        WriteFrameHeader(span, 8, Http2FrameType.PING, ack ? Http2Flags.ACK : Http2Flags.NONE, 0);
        BinaryPrimitives.WriteUInt64BigEndian(span[Http2Frame.HeaderLength..], opaqueData);
        output.Advance(Http2Frame.HeaderLength + 8);
    }

    public static void WriteRstStream(IBufferWriter<byte> output, int streamId, Http2ErrorCode errorCode)
    {
        RequireStreamId(streamId);
        Span<byte> span = output.GetSpan(Http2Frame.HeaderLength + 4);
        WriteFrameHeader(span, 4, Http2FrameType.RST_STREAM, Http2Flags.NONE, streamId);
        BinaryPrimitives.WriteUInt32BigEndian(span[Http2Frame.HeaderLength..], (uint)errorCode);
        output.Advance(Http2Frame.HeaderLength + 4);
    }

    public static void WriteGoAway(IBufferWriter<byte> output, int lastStreamId, Http2ErrorCode errorCode, ReadOnlySpan<byte> debugData = default)
    {
        int length = 8 + debugData.Length;
        Span<byte> span = output.GetSpan(Http2Frame.HeaderLength + length);
        WriteFrameHeader(span, length, Http2FrameType.GOAWAY, Http2Flags.NONE, 0);
        BinaryPrimitives.WriteUInt32BigEndian(span[9..], (uint)lastStreamId & 0x7FFF_FFFF);
        BinaryPrimitives.WriteUInt32BigEndian(span[13..], (uint)errorCode);
        debugData.CopyTo(span[17..]);
        output.Advance(Http2Frame.HeaderLength + length);
    }

    /// <summary>
    /// Writes an encoded header block as one HEADERS frame, or HEADERS followed by CONTINUATION frames when the block is
    /// larger than <paramref name="maxFrameSize"/> (the peer's SETTINGS_MAX_FRAME_SIZE). END_STREAM goes on HEADERS
    /// (RFC 9113 section 8.1: it belongs to the header block's first frame); END_HEADERS on the last frame.
    /// </summary>
    public static void WriteHeaders(IBufferWriter<byte> output, int streamId, ReadOnlySpan<byte> headerBlock, bool endStream, int maxFrameSize)
    {
        RequireStreamId(streamId);
        RequireFrameSize(maxFrameSize);
        var type = Http2FrameType.HEADERS;
        var flags = endStream ? Http2Flags.END_STREAM : Http2Flags.NONE;
        do
        {
            int chunk = Math.Min(headerBlock.Length, maxFrameSize);
            var frameFlags = flags | (chunk == headerBlock.Length ? Http2Flags.END_HEADERS : Http2Flags.NONE);
            Span<byte> span = output.GetSpan(Http2Frame.HeaderLength + chunk);
            WriteFrameHeader(span, chunk, type, frameFlags, streamId);
            headerBlock[..chunk].CopyTo(span[Http2Frame.HeaderLength..]);
            output.Advance(Http2Frame.HeaderLength + chunk);
            headerBlock = headerBlock[chunk..];
            type = Http2FrameType.CONTINUATION;
            flags = Http2Flags.NONE;
        }
        while (!headerBlock.IsEmpty);
    }

    /// <summary>
    /// Copies <paramref name="data"/> into DATA frames of at most <paramref name="maxFrameSize"/> bytes; END_STREAM on the
    /// last one. Empty data with <paramref name="endStream"/> writes one empty DATA frame (a half-close).
    /// Flow control is the caller's job: pass only what the windows allow.
    /// </summary>
    public static void WriteData(IBufferWriter<byte> output, int streamId, ReadOnlySpan<byte> data, bool endStream, int maxFrameSize)
    {
        RequireStreamId(streamId);
        RequireFrameSize(maxFrameSize);
        do
        {
            int chunk = Math.Min(data.Length, maxFrameSize);
            bool last = chunk == data.Length;
            Span<byte> span = output.GetSpan(Http2Frame.HeaderLength + chunk);
            WriteDataFrameHeader(span, streamId, chunk, endStream && last);
            data[..chunk].CopyTo(span[Http2Frame.HeaderLength..]);
            output.Advance(Http2Frame.HeaderLength + chunk);
            data = data[chunk..];
        }
        while (!data.IsEmpty);
    }

    private static void RequireStreamId(int streamId)
    {
        if (streamId <= 0)
        {
            throw new ArgumentOutOfRangeException(nameof(streamId), streamId, "stream frames need a stream id > 0");
        }
    }

    private static void RequireFrameSize(int maxFrameSize)
    {
        if (maxFrameSize < Http2Frame.DefaultMaxFrameSize || maxFrameSize > Http2Frame.MaxAllowedFrameSize)
        {
            throw new ArgumentOutOfRangeException(nameof(maxFrameSize), maxFrameSize, "max frame size must be 16384..16777215");
        }
    }
}

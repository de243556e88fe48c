using System.Buffers;
using Ambient.Hbone.Http2;

namespace Ambient.Core.Tests.Http2;

public class Http2FrameReaderTests
{
    private const uint MaxFrame = 16_384;

    private static byte[] Frame(int length, Http2FrameType type, Http2Flags flags, int streamId, params byte[] payload)
    {
        var bytes = new byte[9 + payload.Length];
        Http2FrameWriter.WriteFrameHeader(bytes, length, type, flags, streamId);
        payload.CopyTo(bytes, 9);
        return bytes;
    }

    private static byte[] Frame(Http2FrameType type, Http2Flags flags, int streamId, params byte[] payload) =>
        Frame(payload.Length, type, flags, streamId, payload);

    private static (Http2Frame Frame, byte[] Payload) ReadOne(byte[] bytes)
    {
        var buffer = new ReadOnlySequence<byte>(bytes);
        Assert.True(Http2FrameReader.TryReadFrame(ref buffer, MaxFrame, out var frame, out var payload));
        Assert.True(buffer.IsEmpty);
        return (frame, payload.ToArray());
    }

    [Fact]
    public void DataFrameWithPadding()
    {
        // Pad length 3, data "hi", 3 padding octets.
        byte[] bytes = Frame(Http2FrameType.DATA, Http2Flags.PADDED | Http2Flags.END_STREAM, 3, 3, (byte)'h', (byte)'i', 0, 0, 0);
        var buffer = new ReadOnlySequence<byte>(bytes);
        Assert.True(Http2FrameReader.TryReadFrame(ref buffer, MaxFrame, out var frame, out var payload));
        Assert.Equal(new Http2Frame(6, Http2FrameType.DATA, Http2Flags.PADDED | Http2Flags.END_STREAM, 3), frame);
        Assert.True(frame.EndStream);
        Assert.Equal("hi"u8.ToArray(), Http2FrameReader.GetDataPayload(frame, payload).ToArray());
    }

    [Fact]
    public void HeadersFrameWithPaddingAndPriority()
    {
        // Pad length 2, priority (dependency 1, weight 16), fragment 0x88, 2 padding octets.
        byte[] bytes = Frame(Http2FrameType.HEADERS, Http2Flags.PADDED | Http2Flags.PRIORITY | Http2Flags.END_HEADERS, 5,
            2, 0, 0, 0, 1, 16, 0x88, 0, 0);
        var (frame, payload) = ReadOne(bytes);
        Assert.True(frame.EndHeaders);
        Assert.False(frame.EndStream);
        Assert.Equal([0x88], Http2FrameReader.GetHeaderBlockFragment(frame, new ReadOnlySequence<byte>(payload)).ToArray());
    }

    [Fact]
    public void EveryControlFrameParses()
    {
        var w = new ArrayBufferWriter<byte>();
        Http2FrameWriter.WriteSettings(w, [
            new(Http2SettingsParameter.SETTINGS_INITIAL_WINDOW_SIZE, 4 * 1024 * 1024),
            new(Http2SettingsParameter.SETTINGS_MAX_FRAME_SIZE, 1024 * 1024),
            new((Http2SettingsParameter)0x99, 7)]);
        Http2FrameWriter.WriteSettingsAck(w);
        Http2FrameWriter.WriteWindowUpdate(w, 0, 16 * 1024 * 1024);
        Http2FrameWriter.WritePing(w, 0x0102030405060708, ack: true);
        Http2FrameWriter.WriteRstStream(w, 9, Http2ErrorCode.CANCEL);
        Http2FrameWriter.WriteGoAway(w, 7, Http2ErrorCode.ENHANCE_YOUR_CALM, "slow down"u8);
        byte[] priority = Frame(Http2FrameType.PRIORITY, Http2Flags.NONE, 3, 0x80, 0, 0, 1, 200);
        byte[] pushPromise = Frame(Http2FrameType.PUSH_PROMISE, Http2Flags.END_HEADERS, 1, 0, 0, 0, 2, 0x82);
        byte[] unknown = Frame((Http2FrameType)0xEE, Http2Flags.NONE, 0, 1, 2, 3);
        byte[] all = [.. w.WrittenSpan, .. priority, .. pushPromise, .. unknown];

        var buffer = new ReadOnlySequence<byte>(all);
        Http2Frame frame;
        ReadOnlySequence<byte> payload;

        Assert.True(Http2FrameReader.TryReadFrame(ref buffer, MaxFrame, out frame, out payload));
        Assert.Equal(Http2FrameType.SETTINGS, frame.Type);
        var settings = new List<Http2Setting>();
        foreach (var s in Http2FrameReader.ReadSettings(payload))
        {
            settings.Add(s);
        }
        Assert.Equal([
            new(Http2SettingsParameter.SETTINGS_INITIAL_WINDOW_SIZE, 4 * 1024 * 1024),
            new(Http2SettingsParameter.SETTINGS_MAX_FRAME_SIZE, 1024 * 1024),
            new((Http2SettingsParameter)0x99, 7)], settings);

        Assert.True(Http2FrameReader.TryReadFrame(ref buffer, MaxFrame, out frame, out payload));
        Assert.Equal(new Http2Frame(0, Http2FrameType.SETTINGS, Http2Flags.ACK, 0), frame);
        Assert.True(frame.Ack);

        Assert.True(Http2FrameReader.TryReadFrame(ref buffer, MaxFrame, out frame, out payload));
        Assert.Equal(Http2FrameType.WINDOW_UPDATE, frame.Type);
        Assert.Equal(16u * 1024 * 1024, Http2FrameReader.ReadWindowUpdateIncrement(payload));

        Assert.True(Http2FrameReader.TryReadFrame(ref buffer, MaxFrame, out frame, out payload));
        Assert.True(frame.Ack);
        Assert.Equal(0x0102030405060708ul, Http2FrameReader.ReadPingData(payload));

        Assert.True(Http2FrameReader.TryReadFrame(ref buffer, MaxFrame, out frame, out payload));
        Assert.Equal(9, frame.StreamId);
        Assert.Equal(Http2ErrorCode.CANCEL, Http2FrameReader.ReadRstStreamErrorCode(payload));

        Assert.True(Http2FrameReader.TryReadFrame(ref buffer, MaxFrame, out frame, out payload));
        var debug = Http2FrameReader.ReadGoAway(payload, out int lastStreamId, out var code);
        Assert.Equal(7, lastStreamId);
        Assert.Equal(Http2ErrorCode.ENHANCE_YOUR_CALM, code);
        Assert.Equal("slow down"u8.ToArray(), debug.ToArray());

        Assert.True(Http2FrameReader.TryReadFrame(ref buffer, MaxFrame, out frame, out payload));
        Assert.Equal(new Http2Frame(5, Http2FrameType.PRIORITY, Http2Flags.NONE, 3), frame);

        Assert.True(Http2FrameReader.TryReadFrame(ref buffer, MaxFrame, out frame, out payload));
        Assert.Equal(Http2FrameType.PUSH_PROMISE, frame.Type);

        Assert.True(Http2FrameReader.TryReadFrame(ref buffer, MaxFrame, out frame, out payload));
        Assert.Equal((Http2FrameType)0xEE, frame.Type);
        Assert.Equal(3, payload.Length);
        Assert.True(buffer.IsEmpty);
        Assert.False(Http2FrameReader.TryReadFrame(ref buffer, MaxFrame, out _, out _));
    }

    [Fact]
    public void ReservedBitIsIgnored()
    {
        byte[] bytes = Frame(Http2FrameType.DATA, Http2Flags.NONE, 1, 0xAA);
        bytes[5] |= 0x80;
        Assert.Equal(1, ReadOne(bytes).Frame.StreamId);
    }

    public static TheoryData<string, byte[], uint, bool> Invalid => new()
    {
        { "oversize", Frame(16_385, Http2FrameType.DATA, 0, 1), (uint)Http2ErrorCode.FRAME_SIZE_ERROR, true },
        { "settings on stream", Frame(Http2FrameType.SETTINGS, 0, 1), (uint)Http2ErrorCode.PROTOCOL_ERROR, true },
        { "settings length", Frame(Http2FrameType.SETTINGS, 0, 0, 0, 4, 0, 0, 0), (uint)Http2ErrorCode.FRAME_SIZE_ERROR, true },
        { "settings ack payload", Frame(Http2FrameType.SETTINGS, Http2Flags.ACK, 0, 0, 4, 0, 0, 0, 1), (uint)Http2ErrorCode.FRAME_SIZE_ERROR, true },
        { "ping length", Frame(Http2FrameType.PING, 0, 0, 1, 2, 3, 4, 5, 6, 7), (uint)Http2ErrorCode.FRAME_SIZE_ERROR, true },
        { "ping on stream", Frame(Http2FrameType.PING, 0, 1, 1, 2, 3, 4, 5, 6, 7, 8), (uint)Http2ErrorCode.PROTOCOL_ERROR, true },
        { "window update length", Frame(Http2FrameType.WINDOW_UPDATE, 0, 0, 0, 0, 1), (uint)Http2ErrorCode.FRAME_SIZE_ERROR, true },
        { "window update 0 conn", Frame(Http2FrameType.WINDOW_UPDATE, 0, 0, 0, 0, 0, 0), (uint)Http2ErrorCode.PROTOCOL_ERROR, true },
        { "window update 0 stream", Frame(Http2FrameType.WINDOW_UPDATE, 0, 3, 0x80, 0, 0, 0), (uint)Http2ErrorCode.PROTOCOL_ERROR, false },
        { "rst length", Frame(Http2FrameType.RST_STREAM, 0, 1, 0, 0, 8), (uint)Http2ErrorCode.FRAME_SIZE_ERROR, true },
        { "rst on 0", Frame(Http2FrameType.RST_STREAM, 0, 0, 0, 0, 0, 8), (uint)Http2ErrorCode.PROTOCOL_ERROR, true },
        { "goaway short", Frame(Http2FrameType.GOAWAY, 0, 0, 0, 0, 0, 1, 0, 0, 0), (uint)Http2ErrorCode.FRAME_SIZE_ERROR, true },
        { "goaway on stream", Frame(Http2FrameType.GOAWAY, 0, 1, 0, 0, 0, 1, 0, 0, 0, 0), (uint)Http2ErrorCode.PROTOCOL_ERROR, true },
        { "priority length", Frame(Http2FrameType.PRIORITY, 0, 1, 0, 0, 0, 3), (uint)Http2ErrorCode.FRAME_SIZE_ERROR, false },
        { "priority on 0", Frame(Http2FrameType.PRIORITY, 0, 0, 0, 0, 0, 3, 1), (uint)Http2ErrorCode.PROTOCOL_ERROR, true },
        { "priority self", Frame(Http2FrameType.PRIORITY, 0, 3, 0, 0, 0, 3, 1), (uint)Http2ErrorCode.PROTOCOL_ERROR, false },
        { "data on 0", Frame(Http2FrameType.DATA, 0, 0, 1), (uint)Http2ErrorCode.PROTOCOL_ERROR, true },
        { "headers on 0", Frame(Http2FrameType.HEADERS, Http2Flags.END_HEADERS, 0, 0x82), (uint)Http2ErrorCode.PROTOCOL_ERROR, true },
        { "continuation on 0", Frame(Http2FrameType.CONTINUATION, Http2Flags.END_HEADERS, 0, 0x82), (uint)Http2ErrorCode.PROTOCOL_ERROR, true },
        { "data padding too long", Frame(Http2FrameType.DATA, Http2Flags.PADDED, 1, 3, 0, 0), (uint)Http2ErrorCode.PROTOCOL_ERROR, true },
        { "data padding = length", Frame(Http2FrameType.DATA, Http2Flags.PADDED, 1, 1), (uint)Http2ErrorCode.PROTOCOL_ERROR, true },
        { "data padded empty", Frame(Http2FrameType.DATA, Http2Flags.PADDED, 1), (uint)Http2ErrorCode.FRAME_SIZE_ERROR, true },
        { "headers padding too long", Frame(Http2FrameType.HEADERS, Http2Flags.PADDED | Http2Flags.PRIORITY, 1, 1, 0, 0, 0, 0, 1), (uint)Http2ErrorCode.PROTOCOL_ERROR, true },
        { "headers priority short", Frame(Http2FrameType.HEADERS, Http2Flags.PRIORITY, 1, 0, 0, 0), (uint)Http2ErrorCode.FRAME_SIZE_ERROR, true },
        { "headers self dependency", Frame(Http2FrameType.HEADERS, Http2Flags.PRIORITY, 1, 0, 0, 0, 1, 1), (uint)Http2ErrorCode.PROTOCOL_ERROR, false },
    };

    [Theory]
    [MemberData(nameof(Invalid))]
    public void InvalidFramesThrow(string name, byte[] bytes, uint code, bool connectionError)
    {
        var buffer = new ReadOnlySequence<byte>(bytes);
        var ex = Record.Exception(() => Http2FrameReader.TryReadFrame(ref buffer, MaxFrame, out _, out _));
        Assert.True(ex is not null, name);
        if (connectionError)
        {
            Assert.Equal((Http2ErrorCode)code, Assert.IsType<Http2ConnectionException>(ex).ErrorCode);
        }
        else
        {
            var streamError = Assert.IsType<Http2StreamException>(ex);
            Assert.Equal((Http2ErrorCode)code, streamError.ErrorCode);
            Assert.NotEqual(0, streamError.StreamId);
        }
    }

    [Fact]
    public void OversizedFrameIsRefusedBeforeItsPayloadArrives()
    {
        byte[] headerOnly = Frame(1_000_000, Http2FrameType.DATA, 0, 1);
        var buffer = new ReadOnlySequence<byte>(headerOnly);
        var ex = Assert.Throws<Http2ConnectionException>(() => Http2FrameReader.TryReadFrame(ref buffer, MaxFrame, out _, out _));
        Assert.Contains("1000000", ex.Message);
        // With a 1 MiB limit (ztunnel's) the same header just waits for more bytes.
        Assert.False(Http2FrameReader.TryReadFrame(ref buffer, 1024 * 1024, out _, out _));
    }

    [Theory]
    [InlineData(2, 0u, (uint)Http2ErrorCode.PROTOCOL_ERROR)] // ENABLE_PUSH must be 0/1
    [InlineData(2, 2u, (uint)Http2ErrorCode.PROTOCOL_ERROR)]
    [InlineData(4, 0x8000_0000u, (uint)Http2ErrorCode.FLOW_CONTROL_ERROR)]
    [InlineData(5, 16_383u, (uint)Http2ErrorCode.PROTOCOL_ERROR)]
    [InlineData(5, 16_777_216u, (uint)Http2ErrorCode.PROTOCOL_ERROR)]
    public void InvalidSettingValues(ushort id, uint value, uint code)
    {
        var w = new ArrayBufferWriter<byte>();
        Http2FrameWriter.WriteSettings(w, [new((Http2SettingsParameter)id, value)]);
        var (_, payload) = ReadOne(w.WrittenSpan.ToArray());
        if (id == 2 && value == 0)
        {
            foreach (var s in Http2FrameReader.ReadSettings(new ReadOnlySequence<byte>(payload)))
            {
                Assert.Equal(0u, s.Value);
            }
            return;
        }
        var ex = Assert.Throws<Http2ConnectionException>(() =>
        {
            foreach (var s in Http2FrameReader.ReadSettings(new ReadOnlySequence<byte>(payload)))
            {
                _ = s;
            }
        });
        Assert.Equal((Http2ErrorCode)code, ex.ErrorCode);
    }

    [Fact]
    public void IncompleteAtEverySplitPointAndMultiSegmentAtEveryCut()
    {
        var w = new ArrayBufferWriter<byte>();
        Http2FrameWriter.WriteHeaders(w, 1, Hex.Parse("828684418cf1e3c2e5f23a6ba0ab90f4ff"), endStream: false, 16_384);
        Http2FrameWriter.WriteData(w, 1, "hello, tunnel"u8, endStream: true, 16_384);
        Http2FrameWriter.WriteGoAway(w, 1, Http2ErrorCode.NO_ERROR);
        byte[] all = w.WrittenSpan.ToArray();
        int firstLength = 9 + 17;

        for (int n = 0; n < firstLength; n++)
        {
            var partial = new ReadOnlySequence<byte>(all, 0, n);
            var before = partial;
            Assert.False(Http2FrameReader.TryReadFrame(ref partial, MaxFrame, out _, out _));
            Assert.Equal(before.Length, partial.Length); // untouched: caller keeps examining
        }

        for (int cut1 = 1; cut1 < all.Length; cut1++)
        {
            for (int cut2 = cut1; cut2 < all.Length; cut2 += 7)
            {
                var buffer = Segments.Split(all, cut1, cut2);
                Assert.True(Http2FrameReader.TryReadFrame(ref buffer, MaxFrame, out var f1, out var p1));
                Assert.Equal(Http2FrameType.HEADERS, f1.Type);
                Assert.Equal(Hex.Parse("828684418cf1e3c2e5f23a6ba0ab90f4ff"), Http2FrameReader.GetHeaderBlockFragment(f1, p1).ToArray());
                Assert.True(Http2FrameReader.TryReadFrame(ref buffer, MaxFrame, out var f2, out var p2));
                Assert.True(f2.EndStream);
                Assert.Equal("hello, tunnel"u8.ToArray(), Http2FrameReader.GetDataPayload(f2, p2).ToArray());
                Assert.True(Http2FrameReader.TryReadFrame(ref buffer, MaxFrame, out var f3, out var p3));
                Http2FrameReader.ReadGoAway(p3, out int last, out var code);
                Assert.Equal((Http2FrameType.GOAWAY, 1, Http2ErrorCode.NO_ERROR), (f3.Type, last, code));
                Assert.True(buffer.IsEmpty);
            }
        }
    }

    [Fact]
    public void ContinuationRules()
    {
        var tracker = new Http2ContinuationTracker();
        tracker.OnFrame(new Http2Frame(1, Http2FrameType.HEADERS, Http2Flags.NONE, 3));
        Assert.True(tracker.ExpectingContinuation);

        // Anything but CONTINUATION on the same stream is a connection error.
        var copy = tracker;
        Assert.Equal(Http2ErrorCode.PROTOCOL_ERROR, Assert.Throws<Http2ConnectionException>(
            () => copy.OnFrame(new Http2Frame(0, Http2FrameType.SETTINGS, Http2Flags.ACK, 0))).ErrorCode);
        copy = tracker;
        Assert.Throws<Http2ConnectionException>(() => copy.OnFrame(new Http2Frame(1, Http2FrameType.CONTINUATION, Http2Flags.END_HEADERS, 5)));
        copy = tracker;
        Assert.Throws<Http2ConnectionException>(() => copy.OnFrame(new Http2Frame(1, Http2FrameType.DATA, Http2Flags.NONE, 3)));

        tracker.OnFrame(new Http2Frame(1, Http2FrameType.CONTINUATION, Http2Flags.NONE, 3));
        Assert.True(tracker.ExpectingContinuation);
        tracker.OnFrame(new Http2Frame(1, Http2FrameType.CONTINUATION, Http2Flags.END_HEADERS, 3));
        Assert.False(tracker.ExpectingContinuation);

        // CONTINUATION out of the blue.
        var ex = Assert.Throws<Http2ConnectionException>(() => tracker.OnFrame(new Http2Frame(1, Http2FrameType.CONTINUATION, Http2Flags.END_HEADERS, 3)));
        Assert.Contains("without a preceding HEADERS", ex.Message);

        // HEADERS with END_HEADERS opens nothing.
        tracker.OnFrame(new Http2Frame(1, Http2FrameType.HEADERS, Http2Flags.END_HEADERS, 5));
        Assert.False(tracker.ExpectingContinuation);
    }
}

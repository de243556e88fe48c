using System.Buffers;
using Ambient.Hbone.Http2;

namespace Ambient.Core.Tests.Http2;

public class Http2FrameWriterTests
{
    [Fact]
    public void PrefaceBytes()
    {
        var w = new ArrayBufferWriter<byte>();
        Http2FrameWriter.WritePreface(w);
        Assert.Equal("505249202a20485454502f322e300d0a0d0a534d0d0a0d0a", Hex.Of(w.WrittenSpan));
    }

    [Fact]
    public void FrameHeaderLayout()
    {
        Span<byte> header = stackalloc byte[9];
        Http2FrameWriter.WriteDataFrameHeader(header, 0x01020304, 0x0A0B0C, endStream: true);
        Assert.Equal("0a0b0c000101020304", Hex.Of(header));
    }

    [Fact]
    public void LargeHeaderBlockIsSplitIntoContinuationsAndReassembles()
    {
        // A real block: many headers so the encoded size passes two max-size frames.
        var encoder = new HPackEncoder();
        var block = new ArrayBufferWriter<byte>();
        encoder.EncodeConnectRequest(block, "10.0.0.1:80");
        var expected = new List<(string, string)> { (":method", "CONNECT"), (":authority", "10.0.0.1:80") };
        var random = new Random(1);
        for (int i = 0; i < 40; i++)
        {
            var bytes = new byte[1000];
            random.NextBytes(bytes);
            string value = Convert.ToHexString(bytes);
            encoder.EncodeHeader(block, "x-bulk"u8, value.AsSpan(), HPackIndexing.WithoutIndexing);
            expected.Add(("x-bulk", value));
        }
        Assert.True(block.WrittenCount > 2 * 16_384);

        var wire = new ArrayBufferWriter<byte>();
        Http2FrameWriter.WriteHeaders(wire, 5, block.WrittenSpan, endStream: true, 16_384);

        var buffer = new ReadOnlySequence<byte>(wire.WrittenMemory);
        var tracker = new Http2ContinuationTracker();
        using var assembled = new Http2HeaderBlockBuffer(256 * 1024);
        var frames = new List<Http2Frame>();
        while (Http2FrameReader.TryReadFrame(ref buffer, 16_384, out var frame, out var payload))
        {
            tracker.OnFrame(frame);
            frames.Add(frame);
            assembled.Append(Http2FrameReader.GetHeaderBlockFragment(frame, payload));
        }
        Assert.True(buffer.IsEmpty);
        Assert.False(tracker.ExpectingContinuation);
        Assert.Equal(Http2FrameType.HEADERS, frames[0].Type);
        Assert.Equal(Http2Flags.END_STREAM, frames[0].Flags); // END_STREAM on HEADERS, END_HEADERS on the last frame only
        for (int i = 1; i < frames.Count; i++)
        {
            Assert.Equal(Http2FrameType.CONTINUATION, frames[i].Type);
            Assert.Equal(i == frames.Count - 1 ? Http2Flags.END_HEADERS : Http2Flags.NONE, frames[i].Flags);
        }
        Assert.Equal(16_384, frames[0].PayloadLength);
        Assert.Equal(block.WrittenSpan.ToArray(), assembled.Block.ToArray());

        var collector = new HeaderCollector();
        new HPackDecoder(maxHeaderListSize: 256 * 1024).Decode(assembled.Block, 5, ref collector);
        Assert.Equal(expected, collector.Pairs());
    }

    [Fact]
    public void HeaderBlockBufferLimit()
    {
        using var buffer = new Http2HeaderBlockBuffer(100);
        buffer.Append(new ReadOnlySequence<byte>(new byte[60]));
        var ex = Assert.Throws<Http2ConnectionException>(() => buffer.Append(new ReadOnlySequence<byte>(new byte[41])));
        Assert.Equal(Http2ErrorCode.ENHANCE_YOUR_CALM, ex.ErrorCode);
        buffer.Reset();
        Assert.Equal(0, buffer.Length);
    }

    [Fact]
    public void DataIsSplitByMaxFrameSizeWithEndStreamOnLast()
    {
        var data = new byte[40_000];
        new Random(2).NextBytes(data);
        var wire = new ArrayBufferWriter<byte>();
        Http2FrameWriter.WriteData(wire, 7, data, endStream: true, 16_384);
        Http2FrameWriter.WriteData(wire, 7, [], endStream: true, 16_384); // empty half-close frame

        var buffer = new ReadOnlySequence<byte>(wire.WrittenMemory);
        var received = new List<byte>();
        var lengths = new List<(int, bool)>();
        while (Http2FrameReader.TryReadFrame(ref buffer, 16_384, out var frame, out var payload))
        {
            received.AddRange(Http2FrameReader.GetDataPayload(frame, payload).ToArray());
            lengths.Add((frame.PayloadLength, frame.EndStream));
        }
        Assert.Equal([(16_384, false), (16_384, false), (7_232, true), (0, true)], lengths);
        Assert.Equal(data, received.ToArray());
    }

    [Fact]
    public void ZeroCopyDataHeaderInFrontOfPayload()
    {
        var pipe = new System.IO.Pipelines.Pipe();
        Span<byte> span = pipe.Writer.GetSpan(9 + 5);
        "abcde"u8.CopyTo(span[9..]);
        Http2FrameWriter.WriteDataFrameHeader(span, 1, 5, endStream: false);
        pipe.Writer.Advance(14);
        Assert.True(pipe.Writer.FlushAsync().IsCompletedSuccessfully);
        Assert.True(pipe.Reader.TryRead(out var result));
        var buffer = result.Buffer;
        Assert.True(Http2FrameReader.TryReadFrame(ref buffer, 16_384, out var frame, out var payload));
        Assert.Equal(new Http2Frame(5, Http2FrameType.DATA, Http2Flags.NONE, 1), frame);
        Assert.Equal("abcde"u8.ToArray(), payload.ToArray());
        pipe.Reader.AdvanceTo(buffer.Start);
    }

    [Fact]
    public void ArgumentChecks()
    {
        var w = new ArrayBufferWriter<byte>();
        Assert.Throws<ArgumentOutOfRangeException>(() => Http2FrameWriter.WriteWindowUpdate(w, 0, 0));
        Assert.Throws<ArgumentOutOfRangeException>(() => Http2FrameWriter.WriteWindowUpdate(w, 0, 0x8000_0000));
        Assert.Throws<ArgumentOutOfRangeException>(() => Http2FrameWriter.WriteRstStream(w, 0, Http2ErrorCode.CANCEL));
        Assert.Throws<ArgumentOutOfRangeException>(() => Http2FrameWriter.WriteData(w, 1, [], true, 100));
        Assert.Throws<ArgumentOutOfRangeException>(() => Http2FrameWriter.WriteHeaders(w, 0, [0x82], true, 16_384));
        Assert.Equal(0, w.WrittenCount);
    }
}

using System.Buffers;
using Ambient.Hbone.Http2;

namespace Ambient.Core.Tests.Http2;

public class HPackEncoderTests
{
    [Fact]
    public void ConnectRequestIsOneOctetPerPseudoHeaderOnceIndexed()
    {
        var encoder = new HPackEncoder();
        var decoder = new HPackDecoder();
        var output = new ArrayBufferWriter<byte>();

        encoder.EncodeConnectRequest(output, "10.1.2.3:8080");
        // :method as literal with static name index 2, :authority with static name index 1.
        Assert.Equal(0x42, output.WrittenSpan[0]);
        Assert.Equal([(":method", "CONNECT"), (":authority", "10.1.2.3:8080")], Decode(decoder, output.WrittenSpan).Pairs());

        output.ResetWrittenCount();
        encoder.EncodeConnectRequest(output, "10.1.2.3:8080");
        Assert.Equal("bfbe", Hex.Of(output.WrittenSpan));
        Assert.Equal([(":method", "CONNECT"), (":authority", "10.1.2.3:8080")], Decode(decoder, output.WrittenSpan).Pairs());

        // A new authority reuses the static :authority name.
        output.ResetWrittenCount();
        encoder.EncodeConnectRequest(output, "[fd00::1]:9090");
        Assert.Equal([(":method", "CONNECT"), (":authority", "[fd00::1]:9090")], Decode(decoder, output.WrittenSpan).Pairs());
        Assert.Equal(0xbf, output.WrittenSpan[0]); // CONNECT still at 63 until the new authority is inserted
        Assert.Equal(0x41, output.WrittenSpan[1]);
    }

    [Fact]
    public void IndexingModes()
    {
        var encoder = new HPackEncoder();
        var output = new ArrayBufferWriter<byte>();
        encoder.EncodeHeader(output, "traceparent"u8, "00-abc-01"u8, HPackIndexing.WithoutIndexing);
        Assert.Equal(0x00, output.WrittenSpan[0]);
        output.ResetWrittenCount();
        encoder.EncodeHeader(output, "authorization"u8, "secret"u8, HPackIndexing.NeverIndexed);
        Assert.Equal(0x1f, output.WrittenSpan[0]); // never indexed, name index 23 = 15 + 8
        Assert.Equal(0x08, output.WrittenSpan[1]);
        Assert.Equal(0, encoder.DynamicTable.Count);

        // A static exact match is indexed even when indexing is not wanted.
        output.ResetWrittenCount();
        encoder.EncodeHeader(output, ":status"u8, "200"u8, HPackIndexing.WithoutIndexing);
        Assert.Equal("88", Hex.Of(output.WrittenSpan));
    }

    [Fact]
    public void RoundTripManyHeadersThroughEviction()
    {
        var encoder = new HPackEncoder();
        var decoder = new HPackDecoder();
        var output = new ArrayBufferWriter<byte>();
        var random = new Random(9113);
        for (int block = 0; block < 200; block++)
        {
            output.ResetWrittenCount();
            encoder.BeginHeaderBlock(output);
            var expected = new List<(string, string)>();
            for (int i = 0; i < 6; i++)
            {
                string name = "x-h" + random.Next(20);
                string value = new string('v', random.Next(0, 300)) + random.Next(5);
                var indexing = (HPackIndexing)random.Next(3);
                encoder.EncodeHeader(output, System.Text.Encoding.ASCII.GetBytes(name), value.AsSpan(), indexing);
                expected.Add((name, value));
            }
            Assert.Equal(expected, Decode(decoder, output.WrittenSpan).Pairs());
            Assert.Equal(encoder.DynamicTable.Size, decoder.DynamicTable.Size);
            Assert.Equal(encoder.DynamicTable.Count, decoder.DynamicTable.Count);
        }
    }

    [Fact]
    public void PeerTableSizeChangesAreSignalledAtBlockStart()
    {
        var encoder = new HPackEncoder();
        var decoder = new HPackDecoder();
        var output = new ArrayBufferWriter<byte>();
        encoder.EncodeHeader(output, "x-a"u8, "1"u8);
        Decode(decoder, output.WrittenSpan);

        encoder.SetPeerHeaderTableSize(0);
        encoder.SetPeerHeaderTableSize(100_000); // capped at 4096
        Assert.Equal(0, encoder.DynamicTable.Count);
        output.ResetWrittenCount();
        encoder.BeginHeaderBlock(output);
        encoder.EncodeHeader(output, "x-a"u8, "1"u8);
        // Minimum (0) first, then the final size (4096 = 3fe11f), then the literal.
        Assert.StartsWith("203fe11f40", Hex.Of(output.WrittenSpan));
        Assert.Equal([("x-a", "1")], Decode(decoder, output.WrittenSpan).Pairs());
        Assert.Equal(1, decoder.DynamicTable.Count);

        // Nothing pending: no size update.
        output.ResetWrittenCount();
        encoder.BeginHeaderBlock(output);
        Assert.Equal(0, output.WrittenCount);
    }

    [Fact]
    public void SmallerCapIsAnnouncedInFirstBlock()
    {
        var encoder = new HPackEncoder(maxTableSizeCap: 0);
        var output = new ArrayBufferWriter<byte>();
        encoder.EncodeConnectRequest(output, "1.2.3.4:80");
        Assert.Equal(0x20, output.WrittenSpan[0]);
        var decoder = new HPackDecoder();
        Assert.Equal([(":method", "CONNECT"), (":authority", "1.2.3.4:80")], Decode(decoder, output.WrittenSpan).Pairs());
        Assert.Equal(0, decoder.DynamicTable.Count);
    }

    [Theory]
    [InlineData("Upper")]
    [InlineData("bad name")]
    [InlineData("")]
    [InlineData("a:b")]
    public void InvalidNamesAreRejected(string name)
    {
        var ex = Assert.Throws<ArgumentException>(() => new HPackEncoder().EncodeHeader(new ArrayBufferWriter<byte>(), System.Text.Encoding.ASCII.GetBytes(name), "v"u8));
        Assert.Equal("name", ex.ParamName);
    }

    [Fact]
    public void InvalidValuesAreRejected()
    {
        var encoder = new HPackEncoder();
        Assert.Throws<ArgumentException>(() => encoder.EncodeHeader(new ArrayBufferWriter<byte>(), "x"u8, "a\r\nb"u8));
        Assert.Throws<ArgumentException>(() => encoder.EncodeHeader(new ArrayBufferWriter<byte>(), "x"u8, "\u0100".AsSpan()));
        Assert.Equal(0, encoder.DynamicTable.Count);
    }

    private static HeaderCollector Decode(HPackDecoder decoder, ReadOnlySpan<byte> block)
    {
        var collector = new HeaderCollector();
        decoder.Decode(block, 1, ref collector);
        return collector;
    }
}

using System.Buffers;
using Ambient.Hbone.Http2;

namespace Ambient.Core.Tests.Http2;

public class HPackDecoderTests
{
    [Theory]
    [InlineData("1f", "truncated integer")] // size update whose continuation never comes
    [InlineData("ff", "truncated integer")] // indexed field, same
    [InlineData("ff8080808008", "exceeds 2^31-1")] // 127 + (8 << 28)
    [InlineData("1fffffffff0f", "exceeds 2^31-1")]
    [InlineData("ff808080808000", "5 continuation octets")] // zero padding beyond 5 octets
    public void BadIntegersAreCompressionErrors(string hex, string message)
    {
        var ex = Assert.Throws<Http2ConnectionException>(() => HPackRfcExampleTests.Decode(new HPackDecoder(), hex));
        Assert.Equal(Http2ErrorCode.COMPRESSION_ERROR, ex.ErrorCode);
        Assert.Contains(message, ex.Message);
    }

    [Theory]
    [InlineData("80", "index 0")]
    [InlineData("be", "index 62")] // empty dynamic table
    [InlineData("7f00", "index 63")] // literal with indexed name 63
    public void BadIndexesAreCompressionErrors(string hex, string message)
    {
        var ex = Assert.Throws<Http2ConnectionException>(() => HPackRfcExampleTests.Decode(new HPackDecoder(), hex));
        Assert.Equal(Http2ErrorCode.COMPRESSION_ERROR, ex.ErrorCode);
        Assert.Contains(message, ex.Message);
    }

    [Fact]
    public void TruncatedStringIsCompressionError()
    {
        var ex = Assert.Throws<Http2ConnectionException>(() => HPackRfcExampleTests.Decode(new HPackDecoder(), "400a6375"));
        Assert.Contains("longer than the rest", ex.Message);
        ex = Assert.Throws<Http2ConnectionException>(() => HPackRfcExampleTests.Decode(new HPackDecoder(), "40"));
        Assert.Contains("ends before a string", ex.Message);
    }

    [Fact]
    public void HuffmanErrorsInsideBlocksAreCompressionErrors()
    {
        // Literal without indexing, name :path, Huffman value of 4 one-octets (contains EOS).
        var ex = Assert.Throws<Http2ConnectionException>(() => HPackRfcExampleTests.Decode(new HPackDecoder(), "0484ffffffff"));
        Assert.Equal(Http2ErrorCode.COMPRESSION_ERROR, ex.ErrorCode);
    }

    [Fact]
    public void TableSizeUpdates()
    {
        var decoder = new HPackDecoder();
        HPackRfcExampleTests.Decode(decoder, "400a637573746f6d2d6b65790d637573746f6d2d686561646572");
        Assert.Equal(1, decoder.DynamicTable.Count);

        // Size update to 0 evicts everything, then back to 4096 (3fe11f) in the same block, then a field.
        var headers = HPackRfcExampleTests.Decode(decoder, "203fe11f82");
        Assert.Equal([(":method", "GET")], headers.Pairs());
        Assert.Equal(0, decoder.DynamicTable.Count);
        Assert.Equal(4096, decoder.DynamicTable.MaxSize);

        // Above our SETTINGS_HEADER_TABLE_SIZE.
        var ex = Assert.Throws<Http2ConnectionException>(() => HPackRfcExampleTests.Decode(decoder, "3fe21f"));
        Assert.Contains("exceeds the allowed 4096", ex.Message);

        // After a header field.
        ex = Assert.Throws<Http2ConnectionException>(() => HPackRfcExampleTests.Decode(new HPackDecoder(), "8220"));
        Assert.Contains("after a header field", ex.Message);
    }

    [Fact]
    public void LoweringAllowedSizeShrinksTable()
    {
        var decoder = new HPackDecoder();
        HPackRfcExampleTests.Decode(decoder, "400a637573746f6d2d6b65790d637573746f6d2d686561646572"); // 55 bytes
        decoder.SetMaxAllowedTableSize(40);
        Assert.Equal(0, decoder.DynamicTable.Count);
        Assert.Throws<Http2ConnectionException>(() => HPackRfcExampleTests.Decode(decoder, "3f21")); // 62 > 40
    }

    [Fact]
    public void EntryLargerThanTableEmptiesIt()
    {
        var decoder = new HPackDecoder(maxAllowedTableSize: 60);
        HPackRfcExampleTests.Decode(decoder, "400a637573746f6d2d6b65790d637573746f6d2d686561646572"); // 55 bytes
        Assert.Equal(1, decoder.DynamicTable.Count);
        var output = new ArrayBufferWriter<byte>();
        HPackEncoder.WriteString(output, new byte[40]);
        var block = new byte[] { 0x40 }.Concat(Hex.Parse("026e6e")).Concat(output.WrittenSpan.ToArray()).ToArray();
        var collector = new HeaderCollector();
        decoder.Decode(block, 1, ref collector);
        Assert.Equal("nn", collector.Headers[0].Name);
        Assert.Equal(0, decoder.DynamicTable.Count);
        Assert.Equal(0, decoder.DynamicTable.Size);
    }

    [Fact]
    public void HeaderListOverLimitIsStreamErrorAndKeepsTableInSync()
    {
        var decoder = new HPackDecoder(maxHeaderListSize: 16 * 1024);
        var encoder = new HPackEncoder();
        var output = new ArrayBufferWriter<byte>();
        encoder.EncodeHeader(output, "x-first"u8, "kept"u8);
        encoder.EncodeHeader(output, "x-big"u8, new string('v', 16 * 1024).AsSpan(), HPackIndexing.WithoutIndexing);
        encoder.EncodeHeader(output, "x-after"u8, "indexed"u8); // must still reach the dynamic table

        var collector = new HeaderCollector();
        var ex = Assert.Throws<Http2HeaderListTooLargeException>(() => decoder.Decode(output.WrittenSpan, 5, ref collector));
        Assert.Equal(5, ex.StreamId);
        Assert.Equal(Http2ErrorCode.PROTOCOL_ERROR, ex.ErrorCode);
        Assert.Contains("16384", ex.Message);
        Assert.Equal(2, decoder.DynamicTable.Count);

        // The next block references both entries: the tables still agree.
        output.ResetWrittenCount();
        encoder.EncodeHeader(output, "x-after"u8, "indexed"u8);
        encoder.EncodeHeader(output, "x-first"u8, "kept"u8);
        Assert.Equal("bebf", Hex.Of(output.WrittenSpan));
        collector = new HeaderCollector();
        decoder.Decode(output.WrittenSpan, 7, ref collector);
        Assert.Equal([("x-after", "indexed"), ("x-first", "kept")], collector.Pairs());
    }

    [Fact]
    public void MultiSegmentBlockDecodes()
    {
        byte[] block = Hex.Parse("828684418cf1e3c2e5f23a6ba0ab90f4ff");
        var decoder = new HPackDecoder();
        var collector = new HeaderCollector();
        decoder.Decode(Segments.Split(block, 3, 7, 8), 1, ref collector);
        Assert.Equal((":authority", "www.example.com"), collector.Pairs()[3]);
    }

    [Fact]
    public void StaticIndexIsReportedForStaticNames()
    {
        // :status 200 indexed (8), then "server: x" with the static name (54), then a new name.
        var collector = HPackRfcExampleTests.Decode(new HPackDecoder(), "88" + "0f2701" + "78" + "0001" + "61" + "0162");
        Assert.Equal((8, ":status", "200"), collector.Headers[0]);
        Assert.Equal((54, "server", "x"), collector.Headers[1]);
        Assert.Equal((0, "a", "b"), collector.Headers[2]);
    }
}

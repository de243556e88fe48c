using Ambient.Hbone.Http2;

namespace Ambient.Core.Tests.Http2;

/// <summary>RFC 7541 Appendix C, every example, with the dynamic table checked after each block.</summary>
public class HPackRfcExampleTests
{
    [Theory]
    [InlineData(10, 5, "0a")] // C.1.1
    [InlineData(1337, 5, "1f9a0a")] // C.1.2
    [InlineData(42, 8, "2a")] // C.1.3
    [InlineData(31, 5, "1f00")] // exactly the prefix maximum needs a zero continuation octet
    [InlineData(30, 5, "1e")]
    [InlineData(127, 7, "7f00")]
    [InlineData(128, 7, "7f01")]
    [InlineData(int.MaxValue, 5, "1fe0ffffff07")]
    [InlineData(int.MaxValue, 8, "ff80feffff07")]
    public void C1_IntegerRepresentation(int value, int prefix, string hex)
    {
        Span<byte> buffer = stackalloc byte[8];
        int written = HPackInteger.Encode(buffer, value, prefix, 0);
        Assert.Equal(hex, Hex.Of(buffer[..written]));
        Assert.Equal(written, HPackInteger.GetEncodedLength(value, prefix));

        int position = 0;
        Assert.Equal(value, HPackInteger.Decode(Hex.Parse(hex), ref position, prefix));
        Assert.Equal(written, position);
    }

    [Fact]
    public void C2_1_LiteralWithIndexing()
    {
        var decoder = new HPackDecoder();
        var headers = Decode(decoder, "400a 6375 7374 6f6d 2d6b 6579 0d63 7573 746f 6d2d 6865 6164 6572");
        Assert.Equal([("custom-key", "custom-header")], headers.Pairs());
        Assert.Equal(0, headers.Headers[0].StaticIndex);
        AssertTable(decoder, 55, ("custom-key", "custom-header"));
    }

    [Fact]
    public void C2_2_LiteralWithoutIndexing()
    {
        var decoder = new HPackDecoder();
        var headers = Decode(decoder, "040c 2f73 616d 706c 652f 7061 7468");
        Assert.Equal([(":path", "/sample/path")], headers.Pairs());
        Assert.Equal(4, headers.Headers[0].StaticIndex);
        AssertTable(decoder, 0);
    }

    [Fact]
    public void C2_3_LiteralNeverIndexed()
    {
        var decoder = new HPackDecoder();
        var headers = Decode(decoder, "1008 7061 7373 776f 7264 0673 6563 7265 74");
        Assert.Equal([("password", "secret")], headers.Pairs());
        AssertTable(decoder, 0);
    }

    [Fact]
    public void C2_4_Indexed()
    {
        var decoder = new HPackDecoder();
        var headers = Decode(decoder, "82");
        Assert.Equal([(":method", "GET")], headers.Pairs());
        Assert.Equal(2, headers.Headers[0].StaticIndex);
        AssertTable(decoder, 0);
    }

    // C.3 and C.4 encode the same three requests, without and with Huffman.
    public static TheoryData<string, string, string> Requests => new()
    {
        {
            "828684410f7777772e6578616d706c652e636f6d",
            "828684be58086e6f2d6361636865",
            "828785bf400a637573746f6d2d6b65790c637573746f6d2d76616c7565"
        },
        {
            "828684418cf1e3c2e5f23a6ba0ab90f4ff",
            "828684be5886a8eb10649cbf",
            "828785bf408825a849e95ba97d7f8925a849e95bb8e8b4bf"
        },
    };

    [Theory]
    [MemberData(nameof(Requests))]
    public void C3_C4_Requests(string first, string second, string third)
    {
        var decoder = new HPackDecoder();

        Assert.Equal([(":method", "GET"), (":scheme", "http"), (":path", "/"), (":authority", "www.example.com")], Decode(decoder, first).Pairs());
        AssertTable(decoder, 57, (":authority", "www.example.com"));

        Assert.Equal(
            [(":method", "GET"), (":scheme", "http"), (":path", "/"), (":authority", "www.example.com"), ("cache-control", "no-cache")],
            Decode(decoder, second).Pairs());
        AssertTable(decoder, 110, ("cache-control", "no-cache"), (":authority", "www.example.com"));

        Assert.Equal(
            [(":method", "GET"), (":scheme", "https"), (":path", "/index.html"), (":authority", "www.example.com"), ("custom-key", "custom-value")],
            Decode(decoder, third).Pairs());
        AssertTable(decoder, 164, ("custom-key", "custom-value"), ("cache-control", "no-cache"), (":authority", "www.example.com"));
    }

    [Fact]
    public void C4_OurEncoderProducesTheRfcBytes()
    {
        var encoder = new HPackEncoder();
        var output = new System.Buffers.ArrayBufferWriter<byte>();

        encoder.BeginHeaderBlock(output);
        Encode(encoder, output, (":method", "GET"), (":scheme", "http"), (":path", "/"), (":authority", "www.example.com"));
        Assert.Equal("828684418cf1e3c2e5f23a6ba0ab90f4ff", Hex.Of(output.WrittenSpan));

        output.ResetWrittenCount();
        Encode(encoder, output, (":method", "GET"), (":scheme", "http"), (":path", "/"), (":authority", "www.example.com"), ("cache-control", "no-cache"));
        Assert.Equal("828684be5886a8eb10649cbf", Hex.Of(output.WrittenSpan));

        output.ResetWrittenCount();
        Encode(encoder, output, (":method", "GET"), (":scheme", "https"), (":path", "/index.html"), (":authority", "www.example.com"), ("custom-key", "custom-value"));
        Assert.Equal("828785bf408825a849e95ba97d7f8925a849e95bb8e8b4bf", Hex.Of(output.WrittenSpan));
        Assert.Equal(164, encoder.DynamicTable.Size);
    }

    // C.5 and C.6 encode the same three responses with a 256-octet table, without and with Huffman.
    public static TheoryData<string, string, string> Responses => new()
    {
        {
            "4803333032580770726976617465611d4d6f6e2c203231204f637420323031332032303a31333a323120474d546e1768747470733a2f2f7777772e6578616d706c652e636f6d",
            "4803333037c1c0bf",
            "88c1611d4d6f6e2c203231204f637420323031332032303a31333a323220474d54c05a04677a69707738666f6f3d4153444a4b48514b425a584f5157454f50495541585157454f49553b206d61782d6167653d333630303b2076657273696f6e3d31"
        },
        {
            "488264025885aec3771a4b6196d07abe941054d444a8200595040b8166e082a62d1bff6e919d29ad171863c78f0b97c8e9ae82ae43d3",
            "4883640effc1c0bf",
            "88c16196d07abe941054d444a8200595040b8166e084a62d1bffc05a839bd9ab77ad94e7821dd7f2e6c7b335dfdfcd5b3960d5af27087f3672c1ab270fb5291f9587316065c003ed4ee5b1063d5007"
        },
    };

    [Theory]
    [MemberData(nameof(Responses))]
    public void C5_C6_Responses(string first, string second, string third)
    {
        var decoder = new HPackDecoder(maxAllowedTableSize: 256);
        const string date1 = "Mon, 21 Oct 2013 20:13:21 GMT";
        const string date2 = "Mon, 21 Oct 2013 20:13:22 GMT";
        const string location = "https://www.example.com";
        const string cookie = "foo=ASDJKHQKBZXOQWEOPIUAXQWEOIU; max-age=3600; version=1";

        Assert.Equal([(":status", "302"), ("cache-control", "private"), ("date", date1), ("location", location)], Decode(decoder, first).Pairs());
        AssertTable(decoder, 222, ("location", location), ("date", date1), ("cache-control", "private"), (":status", "302"));

        // (":status", "302") is evicted to make room for (":status", "307").
        Assert.Equal([(":status", "307"), ("cache-control", "private"), ("date", date1), ("location", location)], Decode(decoder, second).Pairs());
        AssertTable(decoder, 222, (":status", "307"), ("location", location), ("date", date1), ("cache-control", "private"));

        // Several entries are evicted while this block is processed.
        var third3 = Decode(decoder, third);
        Assert.Equal(
            [(":status", "200"), ("cache-control", "private"), ("date", date2), ("location", location), ("content-encoding", "gzip"), ("set-cookie", cookie)],
            third3.Pairs());
        Assert.Equal(8, third3.Headers[0].StaticIndex);
        AssertTable(decoder, 215, ("set-cookie", cookie), ("content-encoding", "gzip"), ("date", date2));
    }

    internal static HeaderCollector Decode(HPackDecoder decoder, string hex)
    {
        var collector = new HeaderCollector();
        decoder.Decode(Hex.Parse(hex), 1, ref collector);
        return collector;
    }

    internal static void AssertTable(HPackDecoder decoder, int size, params (string Name, string Value)[] entries)
    {
        var table = decoder.DynamicTable;
        Assert.Equal(size, table.Size);
        Assert.Equal(entries.Length, table.Count);
        for (int i = 0; i < entries.Length; i++)
        {
            Assert.Equal(entries[i].Name, System.Text.Encoding.Latin1.GetString(table[i].Name));
            Assert.Equal(entries[i].Value, System.Text.Encoding.Latin1.GetString(table[i].Value));
        }
    }

    private static void Encode(HPackEncoder encoder, System.Buffers.IBufferWriter<byte> output, params (string Name, string Value)[] headers)
    {
        foreach (var (name, value) in headers)
        {
            encoder.EncodeHeader(output, System.Text.Encoding.ASCII.GetBytes(name), value.AsSpan());
        }
    }
}

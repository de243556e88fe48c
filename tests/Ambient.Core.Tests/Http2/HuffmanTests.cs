using Ambient.Hbone.Http2;

namespace Ambient.Core.Tests.Http2;

public class HuffmanTests
{
    [Theory]
    [InlineData("www.example.com", "f1e3c2e5f23a6ba0ab90f4ff")] // RFC 7541 C.4.1
    [InlineData("no-cache", "a8eb10649cbf")] // C.4.2
    [InlineData("custom-key", "25a849e95ba97d7f")] // C.4.3
    [InlineData("302", "6402")] // C.6.1
    [InlineData("", "")]
    public void RfcStrings(string text, string hex)
    {
        byte[] raw = System.Text.Encoding.ASCII.GetBytes(text);
        var encoded = new byte[Huffman.GetEncodedLength(raw)];
        Assert.Equal(encoded.Length, Huffman.Encode(raw, encoded));
        Assert.Equal(hex, Hex.Of(encoded));

        var decoded = new byte[Huffman.GetMaxDecodedLength(encoded.Length)];
        int n = Huffman.Decode(encoded, decoded);
        Assert.Equal(text, System.Text.Encoding.ASCII.GetString(decoded, 0, n));
    }

    [Fact]
    public void EveryByteValueRoundTrips()
    {
        for (int b = 0; b < 256; b++)
        {
            // Alone, and surrounded so codes straddle octet boundaries at different offsets.
            RoundTrip([(byte)b]);
            RoundTrip([(byte)'a', (byte)b, (byte)'z', (byte)b, (byte)b]);
        }
        var all = new byte[256];
        for (int i = 0; i < all.Length; i++)
        {
            all[i] = (byte)i;
        }
        RoundTrip(all);
    }

    [Fact]
    public void RandomStringsRoundTrip()
    {
        var random = new Random(7541);
        for (int i = 0; i < 2000; i++)
        {
            var data = new byte[random.Next(0, 300)];
            random.NextBytes(data);
            if (i % 2 == 0)
            {
                // Header-like text, where Huffman actually wins.
                for (int j = 0; j < data.Length; j++)
                {
                    data[j] = (byte)random.Next(0x20, 0x7F);
                }
            }
            RoundTrip(data);
        }
    }

    [Fact]
    public void EosInsideStringIsCompressionError()
    {
        // 30 one-bits (EOS) followed by two padding one-bits.
        var ex = Assert.Throws<Http2ConnectionException>(() => Decode("ffffffff"));
        Assert.Equal(Http2ErrorCode.COMPRESSION_ERROR, ex.ErrorCode);
        Assert.Contains("EOS", ex.Message);
    }

    [Fact]
    public void PaddingLongerThanSevenBitsIsCompressionError()
    {
        // '0' (00000) then 11 one-bits: a whole extra octet of padding.
        var ex = Assert.Throws<Http2ConnectionException>(() => Decode("07ff"));
        Assert.Equal(Http2ErrorCode.COMPRESSION_ERROR, ex.ErrorCode);
        Assert.Contains("padding", ex.Message);
        Assert.Throws<Http2ConnectionException>(() => Decode("ff")); // padding only, 8 bits
    }

    [Fact]
    public void PaddingThatIsNotEosPrefixIsCompressionError()
    {
        // '0' (00000) then padding 000 instead of 111.
        var ex = Assert.Throws<Http2ConnectionException>(() => Decode("00"));
        Assert.Equal(Http2ErrorCode.COMPRESSION_ERROR, ex.ErrorCode);
        Assert.Contains("EOS", ex.Message);
        Assert.Equal(1, Decode("07")); // the same with 111: valid
    }

    private static int Decode(string hex)
    {
        byte[] input = Hex.Parse(hex);
        return Huffman.Decode(input, new byte[Huffman.GetMaxDecodedLength(input.Length)]);
    }

    private static void RoundTrip(byte[] data)
    {
        var encoded = new byte[Huffman.GetEncodedLength(data)];
        Assert.Equal(encoded.Length, Huffman.Encode(data, encoded));
        var decoded = new byte[Huffman.GetMaxDecodedLength(encoded.Length)];
        int n = Huffman.Decode(encoded, decoded);
        Assert.Equal(data, decoded[..n]);
    }
}

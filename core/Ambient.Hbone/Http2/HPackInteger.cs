namespace Ambient.Hbone.Http2;

/// <summary>HPACK integer representation, RFC 7541 section 5.1 (N-bit prefix, then 7-bit groups, least significant first).</summary>
internal static class HPackInteger
{
    /*
       0   1   2   3   4   5   6   7
     +---+---+---+---+---+---+---+---+
     | ? | ? | ? | 1   1   1   1   1 |   prefix all ones: value continues
     +---+---+---+---+---+---+---+---+
     | 1 |    Value-(2^N-1) LSB      |
     +---+---------------------------+
                    ...
     +---+---------------------------+
     | 0 |    Value-(2^N-1) MSB      |
     +---+---------------------------+
    */
    /// <summary>Decodes an integer whose first octet is <c>source[position]</c>; values above int.MaxValue, more than
    /// five continuation octets, or a truncated encoding are COMPRESSION_ERRORs.</summary>
    public static int Decode(ReadOnlySpan<byte> source, ref int position, int prefixBits)
    {
        int mask = (1 << prefixBits) - 1;
        int value = source[position++] & mask;
        if (value < mask)
        {
            return value;
        }
        long result = value;
        int shift = 0;
        while (true)
        {
            if (position >= source.Length)
            {
                throw Error("truncated integer");
            }
            byte b = source[position++];
            result += (long)(b & 0x7F) << shift;
            if (result > int.MaxValue)
            {
                throw Error("integer exceeds 2^31-1");
            }
            if ((b & 0x80) == 0)
            {
                return (int)result;
            }
            shift += 7;
            if (shift > 28)
            {
                throw Error("integer encoding longer than 5 continuation octets");
            }
        }
    }

    public static int GetEncodedLength(int value, int prefixBits)
    {
        int mask = (1 << prefixBits) - 1;
        if (value < mask)
        {
            return 1;
        }
        int length = 2;
        for (uint rest = (uint)(value - mask); rest >= 0x80; rest >>= 7)
        {
            length++;
        }
        return length;
    }

    /// <summary>Encodes <paramref name="value"/> (>= 0) with the representation's flag bits in <paramref name="firstByteFlags"/>.</summary>
    public static int Encode(Span<byte> destination, int value, int prefixBits, byte firstByteFlags)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(value);
        int mask = (1 << prefixBits) - 1;
        if (value < mask)
        {
            destination[0] = (byte)(firstByteFlags | value);
            return 1;
        }
        destination[0] = (byte)(firstByteFlags | mask);
        int written = 1;
        uint rest = (uint)(value - mask);
        while (rest >= 0x80)
        {
            destination[written++] = (byte)(rest | 0x80);
            rest >>= 7;
        }
        destination[written++] = (byte)rest;
        return written;
    }

    private static Http2ConnectionException Error(string message) =>
        new(Http2ErrorCode.COMPRESSION_ERROR, "HPACK: " + message);
}

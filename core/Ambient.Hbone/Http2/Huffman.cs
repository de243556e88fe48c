namespace Ambient.Hbone.Http2;

/// <summary>
/// HPACK Huffman coding (RFC 7541 section 5.2 and Appendix B). Decoding uses the code's canonical form: per bit length
/// L, codes are the consecutive integers firstCode[L] .. firstCode[L] + count[L] - 1 ordered by symbol, so a symbol is
/// found by widening the window one bit at a time; no tree, no allocation.
/// </summary>
internal static class Huffman
{
    private const int MinCodeLength = 5;
    private const int MaxCodeLength = 30;

    private static readonly uint[] s_firstCode = new uint[MaxCodeLength + 1];
    private static readonly int[] s_count = new int[MaxCodeLength + 1];
    private static readonly int[] s_offset = new int[MaxCodeLength + 1];
    private static readonly short[] s_symbols = new short[HuffmanTable.Eos + 1];

    static Huffman()
    {
        ReadOnlySpan<byte> lengths = HuffmanTable.Lengths;
        ReadOnlySpan<uint> codes = HuffmanTable.Codes;
        for (int s = 0; s <= HuffmanTable.Eos; s++)
        {
            s_count[lengths[s]]++;
        }
        uint code = 0;
        int offset = 0;
        for (int len = 1; len <= MaxCodeLength; len++)
        {
            code = (code + (uint)s_count[len - 1]) << 1;
            s_firstCode[len] = code;
            s_offset[len] = offset;
            offset += s_count[len];
        }
        Span<int> filled = stackalloc int[MaxCodeLength + 1];
        for (int s = 0; s <= HuffmanTable.Eos; s++)
        {
            int len = lengths[s];
            int rank = filled[len]++;
            s_symbols[s_offset[len] + rank] = (short)s;
            // The decoder relies on the table being canonical; fail type initialisation loudly if it is not.
            if (codes[s] != s_firstCode[len] + (uint)rank)
            {
                throw new InvalidOperationException($"Huffman table is not canonical at symbol {s}");
            }
        }
    }

    /// <summary>Octets needed to Huffman-encode <paramref name="source"/>.</summary>
    public static int GetEncodedLength(ReadOnlySpan<byte> source)
    {
        ReadOnlySpan<byte> lengths = HuffmanTable.Lengths;
        long bits = 0;
        foreach (byte b in source)
        {
            bits += lengths[b];
        }
        return (int)((bits + 7) >> 3);
    }

    /// <summary>Upper bound of the decoded length: the shortest code is 5 bits.</summary>
    public static int GetMaxDecodedLength(int encodedLength) => (int)((long)encodedLength * 8 / MinCodeLength);

    /// <summary>Encodes into <paramref name="destination"/> (at least <see cref="GetEncodedLength"/> bytes); pads with EOS bits.</summary>
    public static int Encode(ReadOnlySpan<byte> source, Span<byte> destination)
    {
        ReadOnlySpan<uint> codes = HuffmanTable.Codes;
        ReadOnlySpan<byte> lengths = HuffmanTable.Lengths;
        ulong acc = 0;
        int bits = 0;
        int written = 0;
        foreach (byte b in source)
        {
            acc = (acc << lengths[b]) | codes[b];
            bits += lengths[b];
            while (bits >= 8)
            {
                bits -= 8;
                destination[written++] = (byte)(acc >> bits);
            }
        }
        if (bits > 0)
        {
            // Padding is the most significant bits of EOS, i.e. all ones (RFC 7541 section 5.2).
            destination[written++] = (byte)((acc << (8 - bits)) | (0xFFu >> bits));
        }
        return written;
    }

    /// <summary>
    /// Decodes into <paramref name="destination"/> (at least <see cref="GetMaxDecodedLength"/> bytes). Invalid input —
    /// EOS inside the string, padding longer than 7 bits, or padding that is not all ones — is a COMPRESSION_ERROR.
    /// </summary>
    public static int Decode(ReadOnlySpan<byte> source, Span<byte> destination)
    {
        ulong acc = 0;
        int bits = 0;
        int written = 0;
        foreach (byte b in source)
        {
            acc = (acc << 8) | b;
            bits += 8;
            while (bits >= MinCodeLength)
            {
                int symbol = -1;
                int limit = Math.Min(bits, MaxCodeLength);
                int len = MinCodeLength;
                for (; len <= limit; len++)
                {
                    uint code = (uint)(acc >> (bits - len)) & ((1u << len) - 1);
                    uint rank = code - s_firstCode[len];
                    if (rank < (uint)s_count[len])
                    {
                        symbol = s_symbols[s_offset[len] + (int)rank];
                        break;
                    }
                }
                if (symbol < 0)
                {
                    break; // needs more bits
                }
                if (symbol == HuffmanTable.Eos)
                {
                    throw Error("Huffman string contains the EOS symbol");
                }
                destination[written++] = (byte)symbol;
                bits -= len;
            }
        }
        if (bits > 7)
        {
            throw Error($"Huffman padding of {bits} bits (at most 7 allowed)");
        }
        ulong padMask = (1ul << bits) - 1;
        if ((acc & padMask) != padMask)
        {
            throw Error("Huffman padding is not the most significant bits of EOS");
        }
        return written;
    }

    private static Http2ConnectionException Error(string message) =>
        new(Http2ErrorCode.COMPRESSION_ERROR, "HPACK: " + message);
}

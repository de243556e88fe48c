using System.Buffers;

namespace Ambient.Hbone.Http2;

/// <summary>How a literal header field may be indexed (RFC 7541 section 6.2).</summary>
internal enum HPackIndexing
{
    /// <summary>Add to the dynamic table: values repeated across streams (":method CONNECT", ":authority", baggage).</summary>
    Incremental,

    /// <summary>Per-request values (traceparent, forwarded with a source port) that would only churn the table.</summary>
    WithoutIndexing,

    /// <summary>Secrets: intermediaries must not index them either.</summary>
    NeverIndexed,
}

/// <summary>
/// HPACK encoder, RFC 7541. One per connection, used under the connection's write lock (its dynamic table mirrors the
/// peer decoder's, so blocks must reach the wire in encoding order). Writes into an <see cref="IBufferWriter{T}"/> that
/// the connection reuses; strings are Huffman-coded when that is shorter.
/// On a pooled HBONE connection the second CONNECT to the same target encodes ":method CONNECT" and ":authority" as one
/// octet each (dynamic table hits).
/// </summary>
internal sealed class HPackEncoder
{
    private readonly int _maxTableSizeCap;
    private readonly HPackDynamicTable _table;
    private int _pendingMinSize = -1;
    private int _pendingFinalSize = -1;

    /// <param name="maxTableSizeCap">Largest table we are willing to keep for the peer, whatever it allows.</param>
    public HPackEncoder(int maxTableSizeCap = HPackDecoder.DefaultHeaderTableSize)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(maxTableSizeCap);
        _maxTableSizeCap = maxTableSizeCap;
        // Until the peer's SETTINGS arrive the protocol default (4096) applies; stay within it.
        int initial = Math.Min(maxTableSizeCap, HPackDecoder.DefaultHeaderTableSize);
        _table = new HPackDynamicTable(initial);
        if (initial != HPackDecoder.DefaultHeaderTableSize)
        {
            _pendingMinSize = _pendingFinalSize = initial;
        }
    }

    public HPackDynamicTable DynamicTable => _table;

    /// <summary>Apply the peer's SETTINGS_HEADER_TABLE_SIZE; the change is signalled at the start of the next block.</summary>
    public void SetPeerHeaderTableSize(uint peerHeaderTableSize)
    {
        int size = (int)Math.Min(peerHeaderTableSize, (uint)_maxTableSizeCap);
        if (size == _table.MaxSize && _pendingFinalSize < 0)
        {
            return;
        }
        // RFC 7541 section 4.2: if the size dropped and rose again between blocks, the smallest value must be signalled first.
        _pendingMinSize = _pendingMinSize < 0 ? Math.Min(size, _table.MaxSize) : Math.Min(_pendingMinSize, size);
        _pendingFinalSize = size;
        _table.Resize(size);
    }

    /// <summary>Starts a header block: emits any pending dynamic table size update. Call once per block, first.</summary>
    public void BeginHeaderBlock(IBufferWriter<byte> output)
    {
        if (_pendingFinalSize < 0)
        {
            return;
        }
        if (_pendingMinSize < _pendingFinalSize)
        {
            WriteSizeUpdate(output, _pendingMinSize);
        }
        WriteSizeUpdate(output, _pendingFinalSize);
        _pendingMinSize = _pendingFinalSize = -1;
    }

    /// <summary>Encodes one field. <paramref name="name"/> must be lowercase (RFC 9113 section 8.2.1).</summary>
    public void EncodeHeader(IBufferWriter<byte> output, ReadOnlySpan<byte> name, ReadOnlySpan<byte> value, HPackIndexing indexing = HPackIndexing.Incremental)
    {
        ValidateName(name);
        ValidateValue(value);

        int staticMatch = HPackStaticTable.Find(name, value, out int nameIndex);
        if (indexing != HPackIndexing.NeverIndexed)
        {
            if (staticMatch != 0)
            {
                WriteInteger(output, staticMatch, 7, 0x80);
                return;
            }
            int dynamicMatch = _table.Find(name, value, out int dynamicNameIndex);
            if (dynamicMatch >= 0)
            {
                WriteInteger(output, dynamicMatch + HPackStaticTable.Count + 1, 7, 0x80);
                return;
            }
            if (nameIndex == 0 && dynamicNameIndex >= 0)
            {
                nameIndex = dynamicNameIndex + HPackStaticTable.Count + 1;
            }
        }

        switch (indexing)
        {
            case HPackIndexing.Incremental:
                WriteInteger(output, nameIndex, 6, 0x40);
                break;
            case HPackIndexing.WithoutIndexing:
                WriteInteger(output, nameIndex, 4, 0x00);
                break;
            default:
                WriteInteger(output, nameIndex, 4, 0x10);
                break;
        }
        if (nameIndex == 0)
        {
            WriteString(output, name);
        }
        WriteString(output, value);

        if (indexing == HPackIndexing.Incremental)
        {
            _table.Insert(name, value);
        }
    }

    /// <summary>Same as the byte overload for a value held as text (ASCII/Latin-1; e.g. an authority "10.0.0.1:8080").</summary>
    public void EncodeHeader(IBufferWriter<byte> output, ReadOnlySpan<byte> name, ReadOnlySpan<char> value, HPackIndexing indexing = HPackIndexing.Incremental)
    {
        byte[]? rented = null;
        Span<byte> bytes = value.Length <= 256 ? stackalloc byte[256] : (rented = ArrayPool<byte>.Shared.Rent(value.Length));
        try
        {
            for (int i = 0; i < value.Length; i++)
            {
                char c = value[i];
                if (c > 0xFF)
                {
                    throw new ArgumentException($"header value has a non-Latin-1 character at {i}", nameof(value));
                }
                bytes[i] = (byte)c;
            }
            EncodeHeader(output, name, bytes[..value.Length], indexing);
        }
        finally
        {
            if (rented is not null)
            {
                ArrayPool<byte>.Shared.Return(rented);
            }
        }
    }

    /// <summary>
    /// The HBONE request pseudo-headers (Istio ztunnel's HBONE): plain CONNECT, so only :method and :authority, no
    /// :scheme/:path. Starts the block (size updates) too; add baggage/forwarded/traceparent with <see cref="EncodeHeader(IBufferWriter{byte}, ReadOnlySpan{byte}, ReadOnlySpan{char}, HPackIndexing)"/>.
    /// </summary>
    public void EncodeConnectRequest(IBufferWriter<byte> output, ReadOnlySpan<char> authority)
    {
        BeginHeaderBlock(output);
        EncodeHeader(output, ":method"u8, "CONNECT"u8);
        EncodeHeader(output, ":authority"u8, authority);
    }

    /// <summary>A response's <c>:status</c> (starts the block). 200 is one byte (static index 8); other codes are literals
    /// kept out of the dynamic table, where they would only churn it.</summary>
    public void EncodeResponseStatus(IBufferWriter<byte> output, int status)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(status, 100);
        ArgumentOutOfRangeException.ThrowIfGreaterThan(status, 999);
        BeginHeaderBlock(output);
        Span<byte> digits = [(byte)('0' + (status / 100)), (byte)('0' + (status / 10 % 10)), (byte)('0' + (status % 10))];
        EncodeHeader(output, ":status"u8, digits, HPackIndexing.WithoutIndexing);
    }

    private void WriteSizeUpdate(IBufferWriter<byte> output, int size) => WriteInteger(output, size, 5, 0x20);

    private static void WriteInteger(IBufferWriter<byte> output, int value, int prefixBits, byte flags)
    {
        Span<byte> span = output.GetSpan(6);
        output.Advance(HPackInteger.Encode(span, value, prefixBits, flags));
    }

    /// <summary>RFC 7541 section 5.2 string literal, Huffman-coded only when strictly shorter.</summary>
    internal static void WriteString(IBufferWriter<byte> output, ReadOnlySpan<byte> value)
    {
        int huffmanLength = Huffman.GetEncodedLength(value);
        bool huffman = huffmanLength < value.Length;
        int length = huffman ? huffmanLength : value.Length;
        Span<byte> span = output.GetSpan(6 + length);
        int written = HPackInteger.Encode(span, length, 7, huffman ? (byte)0x80 : (byte)0x00);
        if (huffman)
        {
            written += Huffman.Encode(value, span[written..]);
        }
        else
        {
            value.CopyTo(span[written..]);
            written += value.Length;
        }
        output.Advance(written);
    }

    private static void ValidateName(ReadOnlySpan<byte> name)
    {
        if (name.IsEmpty)
        {
            throw new ArgumentException("header name is empty", nameof(name));
        }
        foreach (byte b in name)
        {
            if (b is >= (byte)'A' and <= (byte)'Z' || b <= 0x20 || b >= 0x7F || b == (byte)':' && name[0] != (byte)':')
            {
                throw new ArgumentException($"header name '{System.Text.Encoding.Latin1.GetString(name)}' must be lowercase token characters", nameof(name));
            }
        }
    }

    private static void ValidateValue(ReadOnlySpan<byte> value)
    {
        // RFC 9113 section 8.2.1: NUL, CR and LF are never valid in a field value.
        if (value.IndexOfAny((byte)0, (byte)'\r', (byte)'\n') >= 0)
        {
            throw new ArgumentException("header value contains NUL, CR or LF", nameof(value));
        }
    }
}

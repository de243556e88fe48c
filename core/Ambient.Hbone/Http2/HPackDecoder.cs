using System.Buffers;

namespace Ambient.Hbone.Http2;

/// <summary>Receives decoded header fields. Spans are only valid during the call.</summary>
internal interface IHPackHeaderHandler
{
    /// <param name="staticIndex">1..61 when the NAME came from the static table (so callers can switch on the index
    /// instead of comparing bytes, e.g. 8 = ":status"); 0 otherwise. The value is always passed and must be checked.</param>
    void OnHeader(int staticIndex, ReadOnlySpan<byte> name, ReadOnlySpan<byte> value);
}

/// <summary>
/// HPACK decoder, RFC 7541. One per connection (the dynamic table is connection state). Decodes complete header blocks;
/// join HEADERS + CONTINUATION fragments first (<see cref="Http2HeaderBlockBuffer"/>). Any malformed input is a
/// connection error COMPRESSION_ERROR. A header list over the limit is still decoded to the end so the dynamic table
/// stays in sync, then reported as <see cref="Http2HeaderListTooLargeException"/> (a stream error).
/// </summary>
internal sealed class HPackDecoder
{
    public const int DefaultHeaderTableSize = 4096;

    private readonly int _maxHeaderListSize;
    private readonly HPackDynamicTable _table;
    private int _maxAllowedTableSize;
    private byte[] _scratch = new byte[256];

    /// <param name="maxAllowedTableSize">Our SETTINGS_HEADER_TABLE_SIZE: the largest table a size update may ask for.</param>
    /// <param name="maxHeaderListSize">Our SETTINGS_MAX_HEADER_LIST_SIZE (16 KiB for HBONE).</param>
    public HPackDecoder(int maxAllowedTableSize = DefaultHeaderTableSize, int maxHeaderListSize = 16 * 1024)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(maxAllowedTableSize);
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(maxHeaderListSize);
        _maxAllowedTableSize = maxAllowedTableSize;
        _maxHeaderListSize = maxHeaderListSize;
        _table = new HPackDynamicTable(maxAllowedTableSize);
    }

    public HPackDynamicTable DynamicTable => _table;

    public int MaxHeaderListSize => _maxHeaderListSize;

    /// <summary>Call after our SETTINGS_HEADER_TABLE_SIZE change is acknowledged. The peer's encoder must then send a
    /// size update; a smaller limit shrinks the table at once so entries beyond it cannot be referenced.</summary>
    public void SetMaxAllowedTableSize(int size)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(size);
        _maxAllowedTableSize = size;
        if (_table.MaxSize > size)
        {
            _table.Resize(size);
        }
    }

    public void Decode<THandler>(in ReadOnlySequence<byte> block, int streamId, ref THandler handler)
        where THandler : IHPackHeaderHandler, allows ref struct
    {
        if (block.IsSingleSegment)
        {
            Decode(block.FirstSpan, streamId, ref handler);
            return;
        }
        byte[] rented = ArrayPool<byte>.Shared.Rent((int)block.Length);
        try
        {
            block.CopyTo(rented);
            Decode(rented.AsSpan(0, (int)block.Length), streamId, ref handler);
        }
        finally
        {
            ArrayPool<byte>.Shared.Return(rented);
        }
    }

    /*
     RFC 7541 section 6, field representations (first octet):
       1xxxxxxx  indexed header field             (7-bit index)
       01xxxxxx  literal, incremental indexing    (6-bit name index, 0 = literal name follows)
       001xxxxx  dynamic table size update        (5-bit max size)
       0000xxxx  literal without indexing         (4-bit name index)
       0001xxxx  literal never indexed            (4-bit name index)
     String literal: | H | length (7+) | octets |, H = Huffman coded.
    */
    public void Decode<THandler>(ReadOnlySpan<byte> block, int streamId, ref THandler handler)
        where THandler : IHPackHeaderHandler, allows ref struct
    {
        int position = 0;
        bool fieldSeen = false;
        long listSize = 0;
        bool tooLarge = false;

        while (position < block.Length)
        {
            byte first = block[position];
            int staticIndex;
            ReadOnlySpan<byte> name;
            ReadOnlySpan<byte> value;

            if ((first & 0x80) != 0)
            {
                int index = HPackInteger.Decode(block, ref position, 7);
                if (index == 0)
                {
                    throw Error("indexed header field with index 0");
                }
                ref readonly HPackHeaderField entry = ref GetEntry(index, out staticIndex);
                name = entry.Name;
                value = entry.Value;
            }
            else if ((first & 0xE0) == 0x20)
            {
                // RFC 9113 section 4.3.1 / RFC 7541 section 4.2: size updates only at the start of a block.
                if (fieldSeen)
                {
                    throw Error("dynamic table size update after a header field");
                }
                int size = HPackInteger.Decode(block, ref position, 5);
                if (size > _maxAllowedTableSize)
                {
                    throw Error($"dynamic table size update to {size} exceeds the allowed {_maxAllowedTableSize}");
                }
                _table.Resize(size);
                continue;
            }
            else
            {
                bool incremental = (first & 0xC0) == 0x40;
                int nameIndex = HPackInteger.Decode(block, ref position, incremental ? 6 : 4);
                int scratchUsed = 0;
                if (nameIndex == 0)
                {
                    staticIndex = 0;
                    name = ReadString(block, ref position, ref scratchUsed);
                }
                else
                {
                    name = GetEntry(nameIndex, out staticIndex).Name;
                }
                value = ReadString(block, ref position, ref scratchUsed);
                if (incremental)
                {
                    _table.Insert(name, value);
                }
            }

            fieldSeen = true;
            listSize += name.Length + value.Length + HPackHeaderField.EntryOverhead;
            if (listSize > _maxHeaderListSize)
            {
                tooLarge = true;
            }
            if (!tooLarge)
            {
                handler.OnHeader(staticIndex, name, value);
            }
        }

        if (tooLarge)
        {
            throw new Http2HeaderListTooLargeException(streamId, _maxHeaderListSize);
        }
    }

    private ref readonly HPackHeaderField GetEntry(int index, out int staticIndex)
    {
        if (index <= HPackStaticTable.Count)
        {
            staticIndex = index;
            return ref HPackStaticTable.Get(index);
        }
        staticIndex = 0;
        int dynamicIndex = index - HPackStaticTable.Count - 1;
        if (dynamicIndex >= _table.Count)
        {
            throw Error($"index {index} is beyond the static table and the {_table.Count}-entry dynamic table");
        }
        return ref _table[dynamicIndex];
    }

    private ReadOnlySpan<byte> ReadString(ReadOnlySpan<byte> block, scoped ref int position, scoped ref int scratchUsed)
    {
        if (position >= block.Length)
        {
            throw Error("header block ends before a string literal");
        }
        bool huffman = (block[position] & 0x80) != 0;
        int length = HPackInteger.Decode(block, ref position, 7);
        if (length > block.Length - position)
        {
            throw Error($"string literal of {length} bytes is longer than the rest of the header block");
        }
        ReadOnlySpan<byte> raw = block.Slice(position, length);
        position += length;
        if (!huffman)
        {
            return raw;
        }

        int needed = scratchUsed + Huffman.GetMaxDecodedLength(length);
        if (needed > _scratch.Length)
        {
            // The old array is not reused: a name decoded into it may still be referenced by the caller's span.
            var bigger = new byte[Math.Max(needed, _scratch.Length * 2)];
            _scratch.AsSpan(0, scratchUsed).CopyTo(bigger);
            _scratch = bigger;
        }
        int written = Huffman.Decode(raw, _scratch.AsSpan(scratchUsed));
        ReadOnlySpan<byte> decoded = _scratch.AsSpan(scratchUsed, written);
        scratchUsed += written;
        return decoded;
    }

    private static Http2ConnectionException Error(string message) =>
        new(Http2ErrorCode.COMPRESSION_ERROR, "HPACK: " + message);
}

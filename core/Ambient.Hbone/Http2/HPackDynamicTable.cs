namespace Ambient.Hbone.Http2;

/// <summary>
/// The HPACK dynamic table (RFC 7541 section 2.3.2 and 4): a FIFO ring, newest entry at relative index 0
/// (HPACK index 62). Used by the decoder and mirrored by the encoder. Entries own their bytes, so a span handed out
/// for an entry stays valid after the entry is evicted (RFC 7541 section 4.4 names that case).
/// </summary>
internal sealed class HPackDynamicTable(int maxSize)
{
    private HPackHeaderField[] _ring = [];
    private int _newest = -1; // slot of the newest entry
    private int _count;

    public int Count => _count;

    /// <summary>Current size in RFC 7541 terms (sum of entry sizes).</summary>
    public int Size { get; private set; }

    public int MaxSize { get; private set; } = maxSize;

    /// <summary>Entry by relative index: 0 = newest.</summary>
    public ref readonly HPackHeaderField this[int index]
    {
        get
        {
            if ((uint)index >= (uint)_count)
            {
                throw new ArgumentOutOfRangeException(nameof(index), index, $"dynamic table has {_count} entries");
            }
            int slot = _newest - index;
            if (slot < 0)
            {
                slot += _ring.Length;
            }
            return ref _ring[slot];
        }
    }

    /// <summary>RFC 7541 section 4.4: an entry larger than the table empties it and is not added.</summary>
    public void Insert(ReadOnlySpan<byte> name, ReadOnlySpan<byte> value)
    {
        int entrySize = name.Length + value.Length + HPackHeaderField.EntryOverhead;
        if (entrySize > MaxSize)
        {
            Clear();
            return;
        }
        while (Size + entrySize > MaxSize)
        {
            EvictOldest();
        }
        if (_count == _ring.Length)
        {
            Grow();
        }
        _newest = (_newest + 1) % _ring.Length;
        _ring[_newest] = new HPackHeaderField(name.ToArray(), value.ToArray());
        _count++;
        Size += entrySize;
    }

    /// <summary>RFC 7541 section 4.3: lowering the maximum evicts oldest entries until the table fits.</summary>
    public void Resize(int maxSize)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(maxSize);
        MaxSize = maxSize;
        while (Size > MaxSize)
        {
            EvictOldest();
        }
    }

    /// <summary>Relative index of an exact match, else -1; <paramref name="nameIndex"/> gets the first name match or -1.</summary>
    public int Find(ReadOnlySpan<byte> name, ReadOnlySpan<byte> value, out int nameIndex)
    {
        nameIndex = -1;
        for (int i = 0; i < _count; i++)
        {
            ref readonly HPackHeaderField entry = ref this[i];
            if (entry.Name.Length != name.Length || !name.SequenceEqual(entry.Name))
            {
                continue;
            }
            if (nameIndex < 0)
            {
                nameIndex = i;
            }
            if (value.SequenceEqual(entry.Value))
            {
                return i;
            }
        }
        return -1;
    }

    private void EvictOldest()
    {
        int oldest = _newest - _count + 1;
        if (oldest < 0)
        {
            oldest += _ring.Length;
        }
        Size -= _ring[oldest].Size;
        _ring[oldest] = default;
        _count--;
    }

    private void Clear()
    {
        Array.Clear(_ring);
        _count = 0;
        _newest = -1;
        Size = 0;
    }

    private void Grow()
    {
        // Re-lay entries oldest-first so the ring arithmetic stays simple.
        var bigger = new HPackHeaderField[Math.Max(8, _ring.Length * 2)];
        for (int i = 0; i < _count; i++)
        {
            bigger[i] = this[_count - 1 - i];
        }
        _ring = bigger;
        _newest = _count - 1;
    }
}

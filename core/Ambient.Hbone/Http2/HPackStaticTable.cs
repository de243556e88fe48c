namespace Ambient.Hbone.Http2;

/// <summary>A header field held by the HPACK static or dynamic table.</summary>
internal readonly struct HPackHeaderField(byte[] name, byte[] value)
{
    /// <summary>RFC 7541 section 4.1: an entry costs its name and value octets plus 32.</summary>
    public const int EntryOverhead = 32;

    public byte[] Name { get; } = name;

    public byte[] Value { get; } = value;

    public int Size => Name.Length + Value.Length + EntryOverhead;
}

/// <summary>The HPACK static table, RFC 7541 Appendix A (index 1..61).</summary>
internal static class HPackStaticTable
{
    public const int Count = 61;

    // Well-known indexes used by the HBONE client (RFC 7541 Appendix A).
    public const int Authority = 1;
    public const int MethodGet = 2;
    public const int Status200 = 8;

    private static readonly HPackHeaderField[] s_entries =
    [
        Entry(":authority"u8, ""u8),
        Entry(":method"u8, "GET"u8),
        Entry(":method"u8, "POST"u8),
        Entry(":path"u8, "/"u8),
        Entry(":path"u8, "/index.html"u8),
        Entry(":scheme"u8, "http"u8),
        Entry(":scheme"u8, "https"u8),
        Entry(":status"u8, "200"u8),
        Entry(":status"u8, "204"u8),
        Entry(":status"u8, "206"u8),
        Entry(":status"u8, "304"u8),
        Entry(":status"u8, "400"u8),
        Entry(":status"u8, "404"u8),
        Entry(":status"u8, "500"u8),
        Entry("accept-charset"u8, ""u8),
        Entry("accept-encoding"u8, "gzip, deflate"u8),
        Entry("accept-language"u8, ""u8),
        Entry("accept-ranges"u8, ""u8),
        Entry("accept"u8, ""u8),
        Entry("access-control-allow-origin"u8, ""u8),
        Entry("age"u8, ""u8),
        Entry("allow"u8, ""u8),
        Entry("authorization"u8, ""u8),
        Entry("cache-control"u8, ""u8),
        Entry("content-disposition"u8, ""u8),
        Entry("content-encoding"u8, ""u8),
        Entry("content-language"u8, ""u8),
        Entry("content-length"u8, ""u8),
        Entry("content-location"u8, ""u8),
        Entry("content-range"u8, ""u8),
        Entry("content-type"u8, ""u8),
        Entry("cookie"u8, ""u8),
        Entry("date"u8, ""u8),
        Entry("etag"u8, ""u8),
        Entry("expect"u8, ""u8),
        Entry("expires"u8, ""u8),
        Entry("from"u8, ""u8),
        Entry("host"u8, ""u8),
        Entry("if-match"u8, ""u8),
        Entry("if-modified-since"u8, ""u8),
        Entry("if-none-match"u8, ""u8),
        Entry("if-range"u8, ""u8),
        Entry("if-unmodified-since"u8, ""u8),
        Entry("last-modified"u8, ""u8),
        Entry("link"u8, ""u8),
        Entry("location"u8, ""u8),
        Entry("max-forwards"u8, ""u8),
        Entry("proxy-authenticate"u8, ""u8),
        Entry("proxy-authorization"u8, ""u8),
        Entry("range"u8, ""u8),
        Entry("referer"u8, ""u8),
        Entry("refresh"u8, ""u8),
        Entry("retry-after"u8, ""u8),
        Entry("server"u8, ""u8),
        Entry("set-cookie"u8, ""u8),
        Entry("strict-transport-security"u8, ""u8),
        Entry("transfer-encoding"u8, ""u8),
        Entry("user-agent"u8, ""u8),
        Entry("vary"u8, ""u8),
        Entry("via"u8, ""u8),
        Entry("www-authenticate"u8, ""u8),
    ];

    /// <summary>Entry by 1-based HPACK index (1..61).</summary>
    public static ref readonly HPackHeaderField Get(int index) => ref s_entries[index - 1];

    /// <summary>Finds a static entry: returns the index of an exact name+value match, else sets
    /// <paramref name="nameIndex"/> to the first entry with that name (0 if none) and returns 0.</summary>
    public static int Find(ReadOnlySpan<byte> name, ReadOnlySpan<byte> value, out int nameIndex)
    {
        nameIndex = 0;
        for (int i = 0; i < s_entries.Length; i++)
        {
            ref readonly HPackHeaderField entry = ref s_entries[i];
            if (entry.Name.Length != name.Length || !name.SequenceEqual(entry.Name))
            {
                continue;
            }
            if (nameIndex == 0)
            {
                nameIndex = i + 1;
            }
            if (entry.Value.Length != 0 && value.SequenceEqual(entry.Value))
            {
                return i + 1;
            }
        }
        return 0;
    }

    private static HPackHeaderField Entry(ReadOnlySpan<byte> name, ReadOnlySpan<byte> value) => new(name.ToArray(), value.ToArray());
}

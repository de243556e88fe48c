using System.Buffers.Binary;

namespace Ambient.Ztunnel.DnsProxy;

/// <summary>What the parser made of a message.</summary>
internal enum DnsParseOutcome
{
    /// <summary>A well-formed query with one question.</summary>
    Query,

    /// <summary>Not worth an answer: shorter than a header, longer than any query, or a response (answering a
    /// response could start a ping-pong with another server).</summary>
    Drop,

    /// <summary>A header we can answer but a body that breaks RFC 1035: answer FORMERR.</summary>
    FormatError,

    /// <summary>Another opcode than QUERY (NOTIFY, UPDATE, ...): answer NOTIMP.</summary>
    NotImplemented,
}

/// <summary>One parsed query: offsets into the message it came from, never a copy of it.</summary>
internal struct DnsQuery
{
    public ushort Id;
    public ushort Flags;

    /// <summary>End of the question section: the question is message[12..QuestionEnd), copied as is into answers (so
    /// the client sees its own spelling, including any 0x20 mixed case).</summary>
    public int QuestionEnd;

    public ushort Type;
    public ushort Class;

    /// <summary>Characters of the name written to the caller's buffer: lower-case, dot-separated, no final dot.</summary>
    public int NameLength;

    public int LabelCount;

    /// <summary>False when a label holds a dot, a space, a control or a non-ASCII byte: such a name is no hostname of
    /// ours and is only ever forwarded (as the original bytes).</summary>
    public bool NameIsHostname;

    public bool HasEdns;

    /// <summary>The requester's UDP payload size from its OPT record (RFC 6891 section 6.2.3).</summary>
    public ushort EdnsPayloadSize;

    public byte EdnsVersion;

    /// <summary>The largest response the client takes over UDP: 512 bytes, or what its OPT record says up to our
    /// own limit.</summary>
    public readonly int MaxUdpResponse => HasEdns
        ? Math.Clamp((int)EdnsPayloadSize, DnsWire.ClassicUdpPayload, DnsWire.MaxUdpPayload)
        : DnsWire.ClassicUdpPayload;
}

/// <summary>
/// Parses a query (see <see cref="DnsWire"/> for the layout) in place. Every length and offset is checked against the
/// message before it is used, compression pointers may only point backwards, each one before the last (so a pointer
/// loop cannot be followed twice), and nothing is allocated: the name is written, lower-cased, into a buffer of the
/// caller's.
/// </summary>
internal static class DnsQueryParser
{
    /// <summary>Text of the longest name (253 characters) with room to spare.</summary>
    public const int NameBufferLength = 256;

    public static DnsParseOutcome Parse(ReadOnlySpan<byte> message, Span<char> name, out DnsQuery query)
    {
        query = default;
        if (message.Length < DnsWire.HeaderLength || message.Length > DnsWire.MaxQueryLength)
        {
            return DnsParseOutcome.Drop;
        }
        query.Id = DnsWire.ReadId(message);
        query.Flags = DnsWire.ReadFlags(message);
        if ((query.Flags & DnsWire.QrFlag) != 0)
        {
            return DnsParseOutcome.Drop;
        }
        if (DnsWire.Opcode(query.Flags) != 0)
        {
            return DnsParseOutcome.NotImplemented;
        }
        // A query asks one question (every server in use refuses more, RFC 9619) and carries no answers or authority.
        if (DnsWire.QuestionCount(message) != 1 || DnsWire.AnswerCount(message) != 0 || DnsWire.AuthorityCount(message) != 0)
        {
            return DnsParseOutcome.FormatError;
        }
        var offset = DnsWire.HeaderLength;
        if (!ReadName(message, ref offset, name, out query.NameLength, out query.LabelCount, out query.NameIsHostname)
            || offset + 4 > message.Length)
        {
            return DnsParseOutcome.FormatError;
        }
        query.Type = BinaryPrimitives.ReadUInt16BigEndian(message[offset..]);
        query.Class = BinaryPrimitives.ReadUInt16BigEndian(message[(offset + 2)..]);
        offset += 4;
        query.QuestionEnd = offset;
        var additional = DnsWire.AdditionalCount(message);
        for (var i = 0; i < additional; i++)
        {
            if (!ReadName(message, ref offset, default, out _, out var labels, out _) || offset + 10 > message.Length)
            {
                return DnsParseOutcome.FormatError;
            }
            var type = BinaryPrimitives.ReadUInt16BigEndian(message[offset..]);
            var rdLength = BinaryPrimitives.ReadUInt16BigEndian(message[(offset + 8)..]);
            if (offset + 10 + rdLength > message.Length)
            {
                return DnsParseOutcome.FormatError;
            }
            if (type == DnsWire.TypeOpt)
            {
                // RFC 6891 section 6.1.1: one OPT at most, owned by the root.
                if (query.HasEdns || labels != 0)
                {
                    return DnsParseOutcome.FormatError;
                }
                query.HasEdns = true;
                query.EdnsPayloadSize = BinaryPrimitives.ReadUInt16BigEndian(message[(offset + 2)..]);
                query.EdnsVersion = message[offset + 5];
            }
            offset += 10 + rdLength;
        }
        // Bytes after the last record are ignored, as most servers do.
        return DnsParseOutcome.Query;
    }

    /// <summary>
    /// Reads the name at <paramref name="offset"/> and moves it past the name (past the first pointer, if any).
    /// With an empty <paramref name="text"/> the name is only checked.
    /// </summary>
    internal static bool ReadName(ReadOnlySpan<byte> message, ref int offset, Span<char> text, out int textLength, out int labels, out bool isHostname)
    {
        textLength = 0;
        labels = 0;
        isHostname = true;
        var position = offset;
        var wireLength = 0;
        var jumped = false;
        // Each pointer must point before the previous one's target: the walk only goes backwards, so it ends.
        var pointerLimit = int.MaxValue;
        while (true)
        {
            if (position >= message.Length)
            {
                return false;
            }
            var length = message[position];
            switch (length & 0xC0)
            {
                case 0x00:
                    wireLength += length + 1;
                    if (wireLength > DnsWire.MaxNameLength)
                    {
                        return false;
                    }
                    if (length == 0)
                    {
                        if (!jumped)
                        {
                            offset = position + 1;
                        }
                        return true;
                    }
                    if (position + 1 + length > message.Length)
                    {
                        return false;
                    }
                    if (!text.IsEmpty)
                    {
                        if (labels > 0)
                        {
                            text[textLength++] = '.';
                        }
                        foreach (var b in message.Slice(position + 1, length))
                        {
                            // Printable ASCII but a dot (which would change the label structure) is a hostname byte.
                            isHostname &= b is > 0x20 and < 0x7F and not (byte)'.';
                            text[textLength++] = b is >= (byte)'A' and <= (byte)'Z' ? (char)(b | 0x20) : (char)b;
                        }
                    }
                    labels++;
                    position += 1 + length;
                    break;
                case 0xC0:
                    if (position + 1 >= message.Length)
                    {
                        return false;
                    }
                    var target = ((length & 0x3F) << 8) | message[position + 1];
                    // Into the header, forwards, onto itself, or not before the last target: malformed (or a loop).
                    if (target < DnsWire.HeaderLength || target >= position || target >= pointerLimit)
                    {
                        return false;
                    }
                    if (!jumped)
                    {
                        offset = position + 2;
                        jumped = true;
                    }
                    pointerLimit = target;
                    position = target;
                    break;
                default:
                    return false;
            }
        }
    }
}

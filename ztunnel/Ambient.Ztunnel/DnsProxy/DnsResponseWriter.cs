using System.Buffers.Binary;

namespace Ambient.Ztunnel.DnsProxy;

/// <summary>
/// Writes the proxy's own responses (layout in <see cref="DnsWire"/>) into a caller's buffer. A response repeats the
/// query's question byte for byte, then its answers, each named by a compression pointer to that question's name
/// (offset 12: <c>0xC00C</c>), then an OPT record when the query had one.
/// </summary>
internal static class DnsResponseWriter
{
    /// <summary>An A record: pointer (2) type (2) class (2) TTL (4) RDLENGTH (2) and the address (4).</summary>
    public const int ARecordLength = 16;

    /// <summary>An AAAA record: as an A record with a 16-byte address.</summary>
    public const int AaaaRecordLength = 28;

    /// <summary>An OPT record with no options: root name (1) type (2) class (2) TTL (4) RDLENGTH (2).</summary>
    public const int OptRecordLength = 11;

    private const ushort PointerToQuestionName = 0xC000 | DnsWire.HeaderLength;

    /// <summary>
    /// The header and question of a response to <paramref name="query"/>: same ID, opcode, RD and CD bits, QR and RA
    /// set. Returns the bytes written; <paramref name="destination"/> must hold the question.
    /// </summary>
    public static int WriteHeaderAndQuestion(Span<byte> destination, ReadOnlySpan<byte> message, in DnsQuery query, int responseCode,
        bool authoritative, int answerCount, bool truncated)
    {
        WriteHeader(destination, query.Id, query.Flags, responseCode, authoritative, truncated, questions: 1, answerCount, query.HasEdns ? 1 : 0);
        message[DnsWire.HeaderLength..query.QuestionEnd].CopyTo(destination[DnsWire.HeaderLength..]);
        return query.QuestionEnd;
    }

    /// <summary>A header-only response (FORMERR, NOTIMP: the question may be what was wrong), 12 bytes.</summary>
    public static int WriteHeaderOnly(Span<byte> destination, ushort id, ushort queryFlags, int responseCode)
    {
        WriteHeader(destination, id, queryFlags, responseCode, authoritative: false, truncated: false, questions: 0, answers: 0, additional: 0);
        return DnsWire.HeaderLength;
    }

    /// <summary>One A (4-byte address) or AAAA (16-byte) record for the question's name; returns the bytes written.</summary>
    public static int WriteAddressRecord(Span<byte> destination, ReadOnlySpan<byte> address)
    {
        BinaryPrimitives.WriteUInt16BigEndian(destination, PointerToQuestionName);
        BinaryPrimitives.WriteUInt16BigEndian(destination[2..], address.Length == 4 ? DnsWire.TypeA : DnsWire.TypeAaaa);
        BinaryPrimitives.WriteUInt16BigEndian(destination[4..], DnsWire.ClassIn);
        BinaryPrimitives.WriteUInt32BigEndian(destination[6..], DnsWire.AnswerTtlSeconds);
        BinaryPrimitives.WriteUInt16BigEndian(destination[10..], (ushort)address.Length);
        address.CopyTo(destination[12..]);
        return 12 + address.Length;
    }

    /// <summary>Our OPT record (RFC 6891): the payload size we take, an extended RCODE, version 0, no flags, no options.</summary>
    public static int WriteOpt(Span<byte> destination, int extendedResponseCode)
    {
        destination[0] = 0;
        BinaryPrimitives.WriteUInt16BigEndian(destination[1..], DnsWire.TypeOpt);
        BinaryPrimitives.WriteUInt16BigEndian(destination[3..], DnsWire.MaxUdpPayload);
        destination[5] = (byte)extendedResponseCode;
        destination[6] = 0;
        BinaryPrimitives.WriteUInt16BigEndian(destination[7..], 0);
        BinaryPrimitives.WriteUInt16BigEndian(destination[9..], 0);
        return OptRecordLength;
    }

    private static void WriteHeader(Span<byte> destination, ushort id, ushort queryFlags, int responseCode, bool authoritative, bool truncated,
        int questions, int answers, int additional)
    {
        // Keep the opcode, RD and CD of the query; the rest is ours.
        var flags = (ushort)((queryFlags & (0x7800 | DnsWire.RecursionDesiredFlag | DnsWire.CheckingDisabledFlag))
            | DnsWire.QrFlag | DnsWire.RecursionAvailableFlag | (responseCode & 0x0F));
        if (authoritative)
        {
            flags |= DnsWire.AuthoritativeFlag;
        }
        if (truncated)
        {
            flags |= DnsWire.TruncatedFlag;
        }
        BinaryPrimitives.WriteUInt16BigEndian(destination, id);
        BinaryPrimitives.WriteUInt16BigEndian(destination[2..], flags);
        BinaryPrimitives.WriteUInt16BigEndian(destination[4..], (ushort)questions);
        BinaryPrimitives.WriteUInt16BigEndian(destination[6..], (ushort)answers);
        BinaryPrimitives.WriteUInt16BigEndian(destination[8..], 0);
        BinaryPrimitives.WriteUInt16BigEndian(destination[10..], (ushort)additional);
    }
}

using System.Buffers.Binary;

namespace Ambient.Ztunnel.DnsProxy;

/// <summary>
/// RFC 1035 message layout (section 4.1), the numbers the proxy needs and the header accessors. A message is a header
/// followed by four sections; every integer is big-endian.
/// <code>
/// Header (12 bytes):
///                                     1  1  1  1  1  1
///       0  1  2  3  4  5  6  7  8  9  0  1  2  3  4  5
///     +--+--+--+--+--+--+--+--+--+--+--+--+--+--+--+--+
///     |                      ID                       |   bytes 0-1
///     +--+--+--+--+--+--+--+--+--+--+--+--+--+--+--+--+
///     |QR|   Opcode  |AA|TC|RD|RA|   Z    |   RCODE   |   bytes 2-3 (the flags word)
///     +--+--+--+--+--+--+--+--+--+--+--+--+--+--+--+--+
///     |                    QDCOUNT                    |   bytes 4-5
///     |                    ANCOUNT                    |   bytes 6-7
///     |                    NSCOUNT                    |   bytes 8-9
///     |                    ARCOUNT                    |   bytes 10-11
///     +--+--+--+--+--+--+--+--+--+--+--+--+--+--+--+--+
/// Question: QNAME (a name, below) | QTYPE (2) | QCLASS (2)
/// Resource record: NAME | TYPE (2) | CLASS (2) | TTL (4) | RDLENGTH (2) | RDATA (RDLENGTH bytes)
/// Name (section 4.1.4): a sequence of labels, each one length byte then that many bytes, ended by a zero byte or by a
///     compression pointer. The top two bits of the length byte say which:
///       00LLLLLL  a label of L (1-63) bytes; 00000000 ends the name (the root)
///       11PPPPPP PPPPPPPP  a pointer: the rest of the name is at offset P (14 bits) from the start of the message
///       01, 10  reserved (10 was RFC 2673's extended label types, never deployed): malformed here
///     The whole name, length bytes and final zero included, is at most 255 bytes.
/// OPT pseudo-record (RFC 6891 section 6.1.2), in the additional section: NAME is the root, CLASS is the requester's
///     UDP payload size, TTL is EXTENDED-RCODE (8) | VERSION (8) | DO (1) | Z (15).
/// TCP (RFC 1035 section 4.2.2, RFC 7766): each message is preceded by its length as a 2-byte integer.
/// </code>
/// </summary>
internal static class DnsWire
{
    public const int HeaderLength = 12;

    /// <summary>Longest name on the wire (length bytes and final zero included); as text, at most 253 characters.</summary>
    public const int MaxNameLength = 255;

    /// <summary>A plain UDP message without EDNS (RFC 1035 section 4.2.1).</summary>
    public const int ClassicUdpPayload = 512;

    /// <summary>The payload size we advertise and honour at most over UDP: DNS Flag Day 2020's value, which no path
    /// fragments.</summary>
    public const int MaxUdpPayload = 1232;

    /// <summary>Longest query accepted on either transport: a real query (one question, maybe an OPT record with a
    /// few options) is well under 300 bytes; anything longer is dropped before it is parsed.</summary>
    public const int MaxQueryLength = 4096;

    /// <summary>Longest message on TCP (the 2-byte length prefix), and so the largest answer we relay.</summary>
    public const int MaxTcpMessage = ushort.MaxValue;

    /// <summary>Time to live of the answers the proxy makes itself (Istio's ztunnel: 30 s).</summary>
    public const uint AnswerTtlSeconds = 30;

    // The flags word (bytes 2-3).
    public const ushort QrFlag = 0x8000;
    public const ushort AuthoritativeFlag = 0x0400;
    public const ushort TruncatedFlag = 0x0200;
    public const ushort RecursionDesiredFlag = 0x0100;
    public const ushort RecursionAvailableFlag = 0x0080;
    public const ushort CheckingDisabledFlag = 0x0010;
    private const int OpcodeShift = 11;
    private const ushort OpcodeMask = 0x7800;

    // Response codes (RCODE; BADVERS is 16, carried as extended RCODE 1 in the OPT record).
    public const int NoError = 0;
    public const int FormatError = 1;
    public const int ServerFailure = 2;
    public const int NameError = 3;
    public const int NotImplemented = 4;
    public const int BadVersionExtended = 1;

    // Types and classes.
    public const ushort TypeA = 1;
    public const ushort TypeAaaa = 28;
    public const ushort TypeOpt = 41;
    public const ushort ClassIn = 1;

    public static ushort ReadId(ReadOnlySpan<byte> message) => BinaryPrimitives.ReadUInt16BigEndian(message);

    public static ushort ReadFlags(ReadOnlySpan<byte> message) => BinaryPrimitives.ReadUInt16BigEndian(message[2..]);

    public static int Opcode(ushort flags) => (flags & OpcodeMask) >> OpcodeShift;

    public static int ResponseCode(ReadOnlySpan<byte> message) => message[3] & 0x0F;

    public static ushort QuestionCount(ReadOnlySpan<byte> message) => BinaryPrimitives.ReadUInt16BigEndian(message[4..]);

    public static ushort AnswerCount(ReadOnlySpan<byte> message) => BinaryPrimitives.ReadUInt16BigEndian(message[6..]);

    public static ushort AuthorityCount(ReadOnlySpan<byte> message) => BinaryPrimitives.ReadUInt16BigEndian(message[8..]);

    public static ushort AdditionalCount(ReadOnlySpan<byte> message) => BinaryPrimitives.ReadUInt16BigEndian(message[10..]);
}

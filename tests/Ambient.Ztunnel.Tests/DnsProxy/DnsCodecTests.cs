using Ambient.Ztunnel.DnsProxy;

namespace Ambient.Ztunnel.Tests.DnsProxy;

/// <summary>The query parser and response writer against bytes written out by hand from RFC 1035's layouts.</summary>
public class DnsCodecTests
{
    // ID 0xBEEF; flags 0x0100 (RD); QDCOUNT 1; AN/NS/AR 0; QNAME "echo" "demo" root; QTYPE A; QCLASS IN.
    private static readonly byte[] EchoDemoQuery =
    [
        0xBE, 0xEF, 0x01, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
        4, (byte)'e', (byte)'c', (byte)'h', (byte)'o', 4, (byte)'D', (byte)'e', (byte)'M', (byte)'o', 0,
        0x00, 0x01, 0x00, 0x01,
    ];

    [Fact]
    public void Query_Parses_NameLowerCased_TypeClass_AndQuestionEnd()
    {
        var name = new char[DnsQueryParser.NameBufferLength];
        Assert.Equal(DnsParseOutcome.Query, DnsQueryParser.Parse(EchoDemoQuery, name, out var query));
        Assert.Equal(0xBEEF, query.Id);
        Assert.Equal(0x0100, query.Flags);
        Assert.Equal("echo.demo", new string(name, 0, query.NameLength));
        Assert.Equal(2, query.LabelCount);
        Assert.True(query.NameIsHostname);
        Assert.Equal(1, query.Type);
        Assert.Equal(1, query.Class);
        Assert.Equal(EchoDemoQuery.Length, query.QuestionEnd);
        Assert.False(query.HasEdns);
        Assert.Equal(512, query.MaxUdpResponse);
    }

    [Fact]
    public void Response_WithOneARecord_MatchesTheLayoutByteForByte()
    {
        var name = new char[DnsQueryParser.NameBufferLength];
        DnsQueryParser.Parse(EchoDemoQuery, name, out var query);
        var response = new byte[512];
        var written = DnsResponseWriter.WriteHeaderAndQuestion(response, EchoDemoQuery, query, 0, authoritative: true, answerCount: 1, truncated: false);
        written += DnsResponseWriter.WriteAddressRecord(response.AsSpan(written), [10, 96, 0, 10]);
        byte[] expected =
        [
            // ID; QR=1 opcode 0 AA=1 TC=0 RD=1 | RA=1 Z=0 RCODE=0; QDCOUNT 1, ANCOUNT 1, NSCOUNT 0, ARCOUNT 0.
            0xBE, 0xEF, 0x85, 0x80, 0x00, 0x01, 0x00, 0x01, 0x00, 0x00, 0x00, 0x00,
            // The question as asked (mixed case kept).
            4, (byte)'e', (byte)'c', (byte)'h', (byte)'o', 4, (byte)'D', (byte)'e', (byte)'M', (byte)'o', 0, 0x00, 0x01, 0x00, 0x01,
            // NAME = pointer to offset 12; TYPE A; CLASS IN; TTL 30; RDLENGTH 4; RDATA.
            0xC0, 0x0C, 0x00, 0x01, 0x00, 0x01, 0x00, 0x00, 0x00, 0x1E, 0x00, 0x04, 10, 96, 0, 10,
        ];
        Assert.Equal(expected, response[..written]);
    }

    [Fact]
    public void Aaaa_Record_And_Opt_Record_MatchTheLayout()
    {
        var record = new byte[28];
        byte[] v6 = [0xFD, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x11];
        Assert.Equal(28, DnsResponseWriter.WriteAddressRecord(record, v6));
        Assert.Equal(new byte[] { 0xC0, 0x0C, 0x00, 0x1C, 0x00, 0x01, 0x00, 0x00, 0x00, 0x1E, 0x00, 0x10 }, record[..12]);
        Assert.Equal(v6, record[12..]);

        var opt = new byte[11];
        Assert.Equal(11, DnsResponseWriter.WriteOpt(opt, extendedResponseCode: 1));
        // Root name; TYPE 41; CLASS = our payload size 1232; TTL = ext-rcode 1, version 0, flags 0; RDLENGTH 0.
        Assert.Equal(new byte[] { 0, 0x00, 0x29, 0x04, 0xD0, 0x01, 0x00, 0x00, 0x00, 0x00, 0x00 }, opt);
    }

    [Fact]
    public void HeaderOnly_Error_KeepsIdOpcodeAndRd()
    {
        var response = new byte[12];
        // A NOTIFY (opcode 4) with RD: the answer keeps opcode 4 and RD, sets QR and RA, RCODE 4, all counts 0.
        DnsResponseWriter.WriteHeaderOnly(response, 0x0102, 0x2100, 4);
        Assert.Equal(new byte[] { 0x01, 0x02, 0xA1, 0x84, 0, 0, 0, 0, 0, 0, 0, 0 }, response);
    }

    [Fact]
    public void Edns_Opt_IsRead_AndSetsTheUdpLimit()
    {
        var name = new char[DnsQueryParser.NameBufferLength];
        Assert.Equal(DnsParseOutcome.Query, DnsQueryParser.Parse(DnsTestKit.Query("echo.demo", ednsPayload: 4096, ednsVersion: 0), name, out var q));
        Assert.True(q.HasEdns);
        Assert.Equal(4096, q.EdnsPayloadSize);
        Assert.Equal(1232, q.MaxUdpResponse);
        DnsQueryParser.Parse(DnsTestKit.Query("echo.demo", ednsPayload: 100), name, out q);
        Assert.Equal(512, q.MaxUdpResponse);
    }

    [Fact]
    public void CompressionPointer_BackwardsInTheAdditionalSection_IsFollowed()
    {
        // An OPT-less additional record whose name points back at the question name (offset 12).
        var message = new List<byte>(DnsTestKit.Query("echo.demo"));
        message[11] = 1;
        message.AddRange([0xC0, 12, 0, 16, 0, 1, 0, 0, 0, 0, 0, 1, 0]);
        var name = new char[DnsQueryParser.NameBufferLength];
        Assert.Equal(DnsParseOutcome.Query, DnsQueryParser.Parse(message.ToArray(), name, out _));
    }

    public static TheoryData<string, byte[]> Malformed => new()
    {
        { "QDCOUNT 0", Patch(DnsTestKit.Query("a.b"), 5, 0) },
        { "QDCOUNT 2", Patch(DnsTestKit.Query("a.b"), 5, 2) },
        { "ANCOUNT 1 in a query", Patch(DnsTestKit.Query("a.b"), 7, 1) },
        { "label runs past the end", DnsTestKit.Query("a.b")[..14] },
        { "no QTYPE/QCLASS", DnsTestKit.Query("a.b")[..17] },
        { "label length 64 (01 prefix)", Patch(DnsTestKit.Query("a.b"), 12, 0x40) },
        { "label type 10", Patch(DnsTestKit.Query("a.b"), 12, 0x80) },
        { "pointer to itself", [.. Header(1, 0), 0xC0, 12, 0, 1, 0, 1] },
        { "pointer loop", [.. Header(1, 0), 1, (byte)'a', 0xC0, 12, 0, 1, 0, 1] },
        { "pointer forwards", [.. Header(1, 0), 0xC0, 16, 0, 1, 0, 1, 1, (byte)'a', 0] },
        { "pointer into the header", [.. Header(1, 0), 0xC0, 2, 0, 1, 0, 1] },
        { "pointer cut in half", [.. Header(1, 0), 0xC0] },
        { "name over 255 bytes", [.. Header(1, 0), .. LongName(5), 0, 1, 0, 1] },
        { "additional record past the end", [.. Patch(DnsTestKit.Query("a.b"), 11, 1), 0, 0, 41, 4, 0, 0, 0, 0, 0, 0, 9] },
        { "two OPT records", [.. Patch(DnsTestKit.Query("a.b", ednsPayload: 1232), 11, 2), 0, 0, 41, 4, 0, 0, 0, 0, 0, 0, 0] },
    };

    [Theory]
    [MemberData(nameof(Malformed))]
    public void Malformed_Queries_AreFormatErrors(string what, byte[] message)
    {
        var name = new char[DnsQueryParser.NameBufferLength];
        Assert.True(DnsParseOutcome.FormatError == DnsQueryParser.Parse(message, name, out _), what);
    }

    [Fact]
    public void Runts_Responses_AndOversize_AreDropped_OtherOpcodes_NotImplemented()
    {
        var name = new char[DnsQueryParser.NameBufferLength];
        Assert.Equal(DnsParseOutcome.Drop, DnsQueryParser.Parse(new byte[11], name, out _));
        Assert.Equal(DnsParseOutcome.Drop, DnsQueryParser.Parse(Patch(DnsTestKit.Query("a.b"), 2, 0x81), name, out _));
        Assert.Equal(DnsParseOutcome.Drop, DnsQueryParser.Parse(new byte[4097], name, out _));
        Assert.Equal(DnsParseOutcome.NotImplemented, DnsQueryParser.Parse(Patch(DnsTestKit.Query("a.b"), 2, 0x28), name, out _));
    }

    [Fact]
    public void Labels_WithADotOrBinary_AreNoHostname()
    {
        var name = new char[DnsQueryParser.NameBufferLength];
        byte[] dotted = [.. Header(1, 0), 3, (byte)'a', (byte)'.', (byte)'b', 0, 0, 1, 0, 1];
        Assert.Equal(DnsParseOutcome.Query, DnsQueryParser.Parse(dotted, name, out var q));
        Assert.False(q.NameIsHostname);
        byte[] binary = [.. Header(1, 0), 2, 0xFF, 0x00, 0, 0, 1, 0, 1];
        Assert.Equal(DnsParseOutcome.Query, DnsQueryParser.Parse(binary, name, out q));
        Assert.False(q.NameIsHostname);
    }

    private static byte[] Header(int questions, int additional) =>
        [0x12, 0x34, 0x01, 0x00, 0, (byte)questions, 0, 0, 0, 0, 0, (byte)additional];

    /// <summary><paramref name="labels"/> labels of 63 bytes: 64 * 5 = 320 bytes of name.</summary>
    private static byte[] LongName(int labels)
    {
        var bytes = new List<byte>();
        for (var i = 0; i < labels; i++)
        {
            bytes.Add(63);
            bytes.AddRange(Enumerable.Repeat((byte)'x', 63));
        }
        return [.. bytes];
    }

    private static byte[] Patch(byte[] message, int index, byte value)
    {
        var copy = (byte[])message.Clone();
        copy[index] = value;
        return copy;
    }
}

using System.Buffers;
using System.Net;
using System.Text;
using Ambient.Ztunnel.Proxy.Outbound;
using Ambient.Ztunnel.Proxy.Socks5;

namespace Ambient.Ztunnel.Tests.Socks5;

public class Socks5ParserTests
{
    private static readonly byte[] IPv4Request = [5, 1, 0, 1, 10, 1, 2, 3, 0x1F, 0x90];

    private static readonly byte[] IPv6Request =
        [5, 1, 0, 4, 0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x01, 0x01, 0xBB];

    private static readonly byte[] DomainRequest = Socks5Wire.ConnectDomain("reviews.default.svc.cluster.local", 9080);

    [Fact]
    public void Greeting_WithNoAuthAmongMethods_IsAccepted()
    {
        byte[] greeting = [5, 3, 2, 1, 0, 0xAA];
        var status = Socks5Parser.ParseGreeting(new ReadOnlySequence<byte>(greeting), out var consumed);
        Assert.Equal(Socks5ParseStatus.Ok, status);
        // Only the greeting is consumed; 0xAA belongs to whatever comes next.
        Assert.Equal(5, new ReadOnlySequence<byte>(greeting).Slice(0, consumed).Length);
    }

    [Theory]
    [InlineData(new byte[] { 5, 1, 2 })]
    [InlineData(new byte[] { 5, 2, 1, 2 })]
    [InlineData(new byte[] { 5, 0 })]
    public void Greeting_WithoutNoAuth_HasNoAcceptableMethod(byte[] greeting)
    {
        var sequence = new ReadOnlySequence<byte>(greeting);
        Assert.Equal(Socks5ParseStatus.NoAcceptableMethod, Socks5Parser.ParseGreeting(sequence, out var consumed));
        Assert.Equal(sequence.End, consumed);
    }

    [Theory]
    [InlineData(new byte[] { 4, 1, 0 })]
    [InlineData(new byte[] { (byte)'G', (byte)'E', (byte)'T' })]
    public void Greeting_WrongVersion_IsRejectedOnFirstByte(byte[] greeting)
    {
        Assert.Equal(Socks5ParseStatus.BadVersion, Socks5Parser.ParseGreeting(new ReadOnlySequence<byte>(greeting), out _));
        Assert.Equal(Socks5ParseStatus.BadVersion, Socks5Parser.ParseGreeting(new ReadOnlySequence<byte>(greeting, 0, 1), out _));
    }

    [Fact]
    public void Greeting_EveryPrefix_IsIncomplete_AndEverySplitParses()
    {
        byte[] greeting = [5, 2, 2, 0];
        for (int length = 0; length < greeting.Length; length++)
        {
            var prefix = new ReadOnlySequence<byte>(greeting, 0, length);
            Assert.Equal(Socks5ParseStatus.Incomplete, Socks5Parser.ParseGreeting(prefix, out var consumed));
            Assert.Equal(prefix.Start, consumed);
        }

        for (int cut = 1; cut < greeting.Length; cut++)
        {
            var split = TestSegment.Split(greeting, cut);
            Assert.Equal(Socks5ParseStatus.Ok, Socks5Parser.ParseGreeting(split, out var consumed));
            Assert.Equal(split.End, consumed);
        }
    }

    [Fact]
    public void Request_IPv4()
    {
        var sequence = new ReadOnlySequence<byte>(IPv4Request);
        Assert.Equal(Socks5ParseStatus.Ok, Socks5Parser.ParseRequest(sequence, out var consumed, out var request));
        Assert.Equal(sequence.End, consumed);
        Assert.Equal(Socks5Command.Connect, request.Command);
        Assert.Equal(Socks5AddressType.IPv4, request.AddressType);
        Assert.Null(request.Host);
        Assert.Equal(8080, request.Port);
        Assert.Equal(new OriginalDestination(IPAddress.Parse("10.1.2.3"), null, 8080), request.ToDestination());
    }

    [Fact]
    public void Request_IPv6()
    {
        Assert.Equal(Socks5ParseStatus.Ok, Socks5Parser.ParseRequest(new ReadOnlySequence<byte>(IPv6Request), out _, out var request));
        Assert.Equal(Socks5AddressType.IPv6, request.AddressType);
        Assert.Equal(new OriginalDestination(IPAddress.Parse("2001:db8::1"), null, 443), request.ToDestination());
    }

    [Fact]
    public void Request_Domain()
    {
        Assert.Equal(Socks5ParseStatus.Ok, Socks5Parser.ParseRequest(new ReadOnlySequence<byte>(DomainRequest), out _, out var request));
        Assert.Equal(Socks5AddressType.DomainName, request.AddressType);
        Assert.Equal(new OriginalDestination(null, "reviews.default.svc.cluster.local", 9080), request.ToDestination());
    }

    public static TheoryData<string> RequestNames => ["ipv4", "ipv6", "domain"];

    private static byte[] RequestBytes(string name) => name switch
    {
        "ipv4" => IPv4Request,
        "ipv6" => IPv6Request,
        _ => DomainRequest,
    };

    [Theory]
    [MemberData(nameof(RequestNames))]
    public void Request_EveryPrefix_IsIncomplete(string name)
    {
        byte[] bytes = RequestBytes(name);
        for (int length = 0; length < bytes.Length; length++)
        {
            var prefix = TestSegment.OneBytePerSegment(bytes[..length]);
            var status = Socks5Parser.ParseRequest(prefix, out var consumed, out _);
            Assert.True(status == Socks5ParseStatus.Incomplete, $"{name}: prefix of {length} bytes gave {status}");
            Assert.Equal(prefix.Start, consumed);
        }
    }

    [Theory]
    [MemberData(nameof(RequestNames))]
    public void Request_SplitAtEveryByteBoundary_ParsesTheSame(string name)
    {
        byte[] bytes = RequestBytes(name);
        Assert.Equal(Socks5ParseStatus.Ok, Socks5Parser.ParseRequest(new ReadOnlySequence<byte>(bytes), out _, out var expected));

        var sequences = new List<ReadOnlySequence<byte>> { TestSegment.OneBytePerSegment(bytes) };
        for (int cut = 1; cut < bytes.Length; cut++)
        {
            sequences.Add(TestSegment.Split(bytes, cut));
        }

        foreach (var sequence in sequences)
        {
            Assert.Equal(Socks5ParseStatus.Ok, Socks5Parser.ParseRequest(sequence, out var consumed, out var request));
            Assert.Equal(sequence.End, consumed);
            Assert.Equal(expected.ToDestination(), request.ToDestination());
        }
    }

    [Fact]
    public void Request_FollowedByData_ConsumesOnlyTheRequest()
    {
        byte[] bytes = [.. IPv4Request, (byte)'h', (byte)'i'];
        var sequence = TestSegment.Split(bytes, 3, 9);
        Assert.Equal(Socks5ParseStatus.Ok, Socks5Parser.ParseRequest(sequence, out var consumed, out _));
        Assert.Equal("hi", Encoding.ASCII.GetString(sequence.Slice(consumed).ToArray()));
    }

    [Theory]
    [InlineData(new byte[] { 4, 1, 0, 1, 1, 2, 3, 4, 0, 80 }, (int)Socks5ParseStatus.BadVersion)]
    [InlineData(new byte[] { 5, 2, 0, 1, 1, 2, 3, 4, 0, 80 }, (int)Socks5ParseStatus.UnsupportedCommand)]
    [InlineData(new byte[] { 5, 3, 0, 1, 1, 2, 3, 4, 0, 80 }, (int)Socks5ParseStatus.UnsupportedCommand)]
    [InlineData(new byte[] { 5, 9 }, (int)Socks5ParseStatus.UnsupportedCommand)]
    [InlineData(new byte[] { 5, 1, 7, 1, 1, 2, 3, 4, 0, 80 }, (int)Socks5ParseStatus.ReservedNotZero)]
    [InlineData(new byte[] { 5, 1, 0, 5 }, (int)Socks5ParseStatus.UnsupportedAddressType)]
    [InlineData(new byte[] { 5, 1, 0, 2, 1, 2, 3, 4, 0, 80 }, (int)Socks5ParseStatus.UnsupportedAddressType)]
    [InlineData(new byte[] { 5, 1, 0, 3, 0, 0, 80 }, (int)Socks5ParseStatus.EmptyDomainName)]
    [InlineData(new byte[] { 5, 1, 0, 3, 254 }, (int)Socks5ParseStatus.DomainNameTooLong)]
    [InlineData(new byte[] { 5, 1, 0, 3, 3, (byte)'a', (byte)' ', (byte)'b', 0, 80 }, (int)Socks5ParseStatus.DomainNameNotPrintable)]
    [InlineData(new byte[] { 5, 1, 0, 3, 3, (byte)'a', 0, (byte)'b', 0, 80 }, (int)Socks5ParseStatus.DomainNameNotPrintable)]
    [InlineData(new byte[] { 5, 1, 0, 3, 2, 0xC3, 0xA9, 0, 80 }, (int)Socks5ParseStatus.DomainNameNotPrintable)]
    [InlineData(new byte[] { 5, 1, 0, 1, 1, 2, 3, 4, 0, 0 }, (int)Socks5ParseStatus.PortZero)]
    [InlineData(new byte[] { 5, 1, 0, 3, 1, (byte)'a', 0, 0 }, (int)Socks5ParseStatus.PortZero)]
    public void Request_Errors(byte[] bytes, int expectedStatus)
    {
        var expected = (Socks5ParseStatus)expectedStatus;
        Assert.Equal(expected, Socks5Parser.ParseRequest(new ReadOnlySequence<byte>(bytes), out _, out _));
        Assert.Equal(expected, Socks5Parser.ParseRequest(TestSegment.OneBytePerSegment(bytes), out _, out _));
        Assert.NotEqual(expected.ToString(), Socks5Parser.Describe(expected));
    }

    [Fact]
    public void Request_DomainOfMaximumLength_IsAccepted_AndOneMoreIsNot()
    {
        string longest = new string('a', 63) + "." + new string('b', 63) + "." + new string('c', 63) + "." + new string('d', 61);
        Assert.Equal(253, longest.Length);
        var ok = Socks5Wire.ConnectDomain(longest, 80);
        Assert.Equal(Socks5ParseStatus.Ok, Socks5Parser.ParseRequest(new ReadOnlySequence<byte>(ok), out _, out var request));
        Assert.Equal(longest, request.Host);

        var tooLong = Socks5Wire.ConnectDomain(longest + "e", 80);
        Assert.Equal(Socks5ParseStatus.DomainNameTooLong, Socks5Parser.ParseRequest(new ReadOnlySequence<byte>(tooLong), out _, out _));
    }

    [Fact]
    public void Request_IPDestination_ParsesWithoutAllocating()
    {
        var sequence = TestSegment.Split(IPv6Request, 7);
        Socks5Parser.ParseRequest(sequence, out _, out _); // warm up (JIT)
        long before = GC.GetAllocatedBytesForCurrentThread();
        for (int i = 0; i < 100; i++)
        {
            Socks5Parser.ParseRequest(sequence, out _, out _);
            Socks5Parser.ParseRequest(new ReadOnlySequence<byte>(IPv4Request), out _, out _);
        }

        Assert.Equal(0, GC.GetAllocatedBytesForCurrentThread() - before);
    }

    [Fact]
    public void ReplyCodes_MatchTheRfc()
    {
        Assert.Equal(Socks5ReplyCode.CommandNotSupported, Socks5Parser.ReplyFor(Socks5ParseStatus.UnsupportedCommand));
        Assert.Equal(Socks5ReplyCode.AddressTypeNotSupported, Socks5Parser.ReplyFor(Socks5ParseStatus.UnsupportedAddressType));
        Assert.Equal(Socks5ReplyCode.HostUnreachable, Socks5Parser.ReplyFor(Socks5ParseStatus.DomainNameNotPrintable));
        Assert.Null(Socks5Parser.ReplyFor(Socks5ParseStatus.BadVersion));
        Assert.Equal(7, (int)Socks5ReplyCode.CommandNotSupported);
        Assert.Equal(8, (int)Socks5ReplyCode.AddressTypeNotSupported);
        Assert.Equal(4, (int)Socks5ReplyCode.HostUnreachable);
    }

    [Fact]
    public void Reply_Layouts()
    {
        var buffer = new byte[Socks5Reply.MaxReplyLength];

        int length = Socks5Reply.Write(buffer, Socks5ReplyCode.Succeeded, new IPEndPoint(IPAddress.Parse("127.0.0.9"), 0x1234));
        Assert.Equal(new byte[] { 5, 0, 0, 1, 127, 0, 0, 9, 0x12, 0x34 }, buffer[..length]);

        length = Socks5Reply.Write(buffer, Socks5ReplyCode.HostUnreachable, null);
        Assert.Equal(new byte[] { 5, 4, 0, 1, 0, 0, 0, 0, 0, 0 }, buffer[..length]);

        length = Socks5Reply.Write(buffer, Socks5ReplyCode.Succeeded, new IPEndPoint(IPAddress.IPv6Loopback, 443));
        Assert.Equal(22, length);
        Assert.Equal(new byte[] { 5, 0, 0, 4 }, buffer[..4]);
        Assert.Equal(IPAddress.IPv6Loopback.GetAddressBytes(), buffer[4..20]);
        Assert.Equal(new byte[] { 0x01, 0xBB }, buffer[20..22]);

        // A dual-stack socket reports IPv4 peers as ::ffff:a.b.c.d; clients expect the plain IPv4 form.
        length = Socks5Reply.Write(buffer, Socks5ReplyCode.Succeeded, new IPEndPoint(IPAddress.Parse("::ffff:10.0.0.1"), 80));
        Assert.Equal(new byte[] { 5, 0, 0, 1, 10, 0, 0, 1, 0, 80 }, buffer[..length]);

        Assert.Equal(2, Socks5Reply.WriteMethodSelection(buffer, 0xFF));
        Assert.Equal(new byte[] { 5, 0xFF }, buffer[..2]);
    }
}

using System.Buffers;
using System.Buffers.Binary;
using System.Text;

namespace Ambient.Ztunnel.Proxy.Socks5;

/// <summary>Result of parsing one SOCKS5 message. Everything except Incomplete and Ok ends the conversation.</summary>
internal enum Socks5ParseStatus
{
    /// <summary>More bytes are needed; nothing was consumed.</summary>
    Incomplete,
    Ok,
    BadVersion,
    NoAcceptableMethod,
    UnsupportedCommand,
    ReservedNotZero,
    UnsupportedAddressType,
    EmptyDomainName,
    DomainNameTooLong,
    DomainNameNotPrintable,
    PortZero,
}

/// <summary>
/// Kestrel-style parsers for the two client messages of RFC 1928 over a <see cref="ReadOnlySequence{T}"/> that may
/// be split anywhere. Each returns <see cref="Socks5ParseStatus.Incomplete"/> until the whole message is there, then
/// reports the end of the message in <c>consumed</c>. Errors are reported in wire order as soon as the offending
/// byte is seen, so a garbage stream is rejected without waiting for more input.
/// </summary>
internal static class Socks5Parser
{
    public const byte Version = 5;
    public const byte MethodNoAuthentication = 0x00;
    public const byte MethodNoAcceptable = 0xFF;

    // RFC 1035 caps a presentation-form name at 253 characters; the one-byte length field alone would allow 255.
    public const int MaxDomainNameLength = 253;

    // RFC 1928 section 3, client greeting (version identifier / method selection message):
    // +----+----------+----------+
    // |VER | NMETHODS | METHODS  |
    // +----+----------+----------+
    // | 1  |    1     | 1 to 255 |
    // +----+----------+----------+
    // VER = X'05'. We only offer METHOD X'00' (no authentication): in local mode the listener address already names
    // the source pod, and the mesh authenticates on the HBONE hop, so there is nothing for a password to add.
    public static Socks5ParseStatus ParseGreeting(in ReadOnlySequence<byte> buffer, out SequencePosition consumed)
    {
        consumed = buffer.Start;
        var reader = new SequenceReader<byte>(buffer);

        if (!reader.TryRead(out byte version))
        {
            return Socks5ParseStatus.Incomplete;
        }

        if (version != Version)
        {
            return Socks5ParseStatus.BadVersion;
        }

        if (!reader.TryRead(out byte methodCount) || reader.Remaining < methodCount)
        {
            return Socks5ParseStatus.Incomplete;
        }

        bool noAuthOffered = false;
        for (int i = 0; i < methodCount; i++)
        {
            reader.TryRead(out byte method);
            noAuthOffered |= method == MethodNoAuthentication;
        }

        // The whole greeting is consumed even when refused: the caller answers X'FF' and the RFC then has the
        // client close, so nothing that follows is ours to parse.
        consumed = reader.Position;
        return noAuthOffered ? Socks5ParseStatus.Ok : Socks5ParseStatus.NoAcceptableMethod;
    }

    // RFC 1928 section 4, client request:
    // +----+-----+-------+------+----------+----------+
    // |VER | CMD |  RSV  | ATYP | DST.ADDR | DST.PORT |
    // +----+-----+-------+------+----------+----------+
    // | 1  |  1  | X'00' |  1   | Variable |    2     |
    // +----+-----+-------+------+----------+----------+
    // CMD:  X'01' CONNECT, X'02' BIND, X'03' UDP ASSOCIATE (only CONNECT is served).
    // ATYP: X'01' IPv4 (4 octets), X'03' domain name (1 octet length, then the name, no terminating NUL),
    //       X'04' IPv6 (16 octets).
    // DST.PORT in network (big-endian) octet order.
    public static Socks5ParseStatus ParseRequest(in ReadOnlySequence<byte> buffer, out SequencePosition consumed, out Socks5Request request)
    {
        consumed = buffer.Start;
        request = default;
        var reader = new SequenceReader<byte>(buffer);

        if (!reader.TryRead(out byte version))
        {
            return Socks5ParseStatus.Incomplete;
        }

        if (version != Version)
        {
            return Socks5ParseStatus.BadVersion;
        }

        if (!reader.TryRead(out byte commandByte))
        {
            return Socks5ParseStatus.Incomplete;
        }

        var command = (Socks5Command)commandByte;
        if (command != Socks5Command.Connect)
        {
            request = new Socks5Request(command, default, default, null, 0);
            return Socks5ParseStatus.UnsupportedCommand;
        }

        if (!reader.TryRead(out byte reserved))
        {
            return Socks5ParseStatus.Incomplete;
        }

        if (reserved != 0)
        {
            return Socks5ParseStatus.ReservedNotZero;
        }

        if (!reader.TryRead(out byte addressTypeByte))
        {
            return Socks5ParseStatus.Incomplete;
        }

        var addressType = (Socks5AddressType)addressTypeByte;
        UInt128 address = default;
        string? host = null;
        switch (addressType)
        {
            case Socks5AddressType.IPv4:
                if (!reader.TryReadBigEndian(out int v4))
                {
                    return Socks5ParseStatus.Incomplete;
                }

                address = (uint)v4;
                break;

            case Socks5AddressType.IPv6:
                Span<byte> v6 = stackalloc byte[16];
                if (!reader.TryCopyTo(v6))
                {
                    return Socks5ParseStatus.Incomplete;
                }

                reader.Advance(16);
                address = BinaryPrimitives.ReadUInt128BigEndian(v6);
                break;

            case Socks5AddressType.DomainName:
                var status = ReadDomainName(ref reader, out host);
                if (status != Socks5ParseStatus.Ok)
                {
                    return status;
                }

                break;

            default:
                return Socks5ParseStatus.UnsupportedAddressType;
        }

        if (!reader.TryReadBigEndian(out short portBits))
        {
            return Socks5ParseStatus.Incomplete;
        }

        var port = (ushort)portBits;
        request = new Socks5Request(command, addressType, address, host, port);
        if (port == 0)
        {
            return Socks5ParseStatus.PortZero;
        }

        consumed = reader.Position;
        return Socks5ParseStatus.Ok;
    }

    private static Socks5ParseStatus ReadDomainName(ref SequenceReader<byte> reader, out string? host)
    {
        host = null;
        if (!reader.TryRead(out byte length))
        {
            return Socks5ParseStatus.Incomplete;
        }

        if (length == 0)
        {
            return Socks5ParseStatus.EmptyDomainName;
        }

        if (length > MaxDomainNameLength)
        {
            return Socks5ParseStatus.DomainNameTooLong;
        }

        Span<byte> name = stackalloc byte[MaxDomainNameLength];
        name = name[..length];
        if (!reader.TryCopyTo(name))
        {
            return Socks5ParseStatus.Incomplete;
        }

        // Only visible ASCII: the name becomes a lookup key and a log field, and a space, control byte or non-ASCII
        // byte can only be a confused or hostile client (internationalised names travel as punycode).
        if (name.ContainsAnyExceptInRange((byte)0x21, (byte)0x7E))
        {
            return Socks5ParseStatus.DomainNameNotPrintable;
        }

        // Port bytes are checked by the caller; the name is only materialised once it is known to be complete.
        if (reader.Remaining < length + 2)
        {
            return Socks5ParseStatus.Incomplete;
        }

        reader.Advance(length);
        host = Encoding.ASCII.GetString(name);
        return Socks5ParseStatus.Ok;
    }

    /// <summary>The reply a refused request gets; null when the RFC defines no reply (wrong protocol version).</summary>
    public static Socks5ReplyCode? ReplyFor(Socks5ParseStatus status) => status switch
    {
        Socks5ParseStatus.UnsupportedCommand => Socks5ReplyCode.CommandNotSupported,
        Socks5ParseStatus.UnsupportedAddressType => Socks5ReplyCode.AddressTypeNotSupported,
        // A malformed name can never be resolved, which is what "host unreachable" tells the client.
        Socks5ParseStatus.EmptyDomainName or Socks5ParseStatus.DomainNameTooLong or Socks5ParseStatus.DomainNameNotPrintable
            => Socks5ReplyCode.HostUnreachable,
        Socks5ParseStatus.ReservedNotZero or Socks5ParseStatus.PortZero => Socks5ReplyCode.GeneralFailure,
        _ => null,
    };

    /// <summary>A human-readable reason for logs.</summary>
    public static string Describe(Socks5ParseStatus status) => status switch
    {
        Socks5ParseStatus.Incomplete => "message incomplete",
        Socks5ParseStatus.Ok => "ok",
        Socks5ParseStatus.BadVersion => "VER is not 5 (not a SOCKS5 client)",
        Socks5ParseStatus.NoAcceptableMethod => "client does not offer method 0x00 (no authentication)",
        Socks5ParseStatus.UnsupportedCommand => "CMD is not CONNECT (BIND and UDP ASSOCIATE are not supported)",
        Socks5ParseStatus.ReservedNotZero => "RSV byte is not 0",
        Socks5ParseStatus.UnsupportedAddressType => "ATYP is not 1 (IPv4), 3 (domain name) or 4 (IPv6)",
        Socks5ParseStatus.EmptyDomainName => "domain name is empty",
        Socks5ParseStatus.DomainNameTooLong => "domain name is longer than 253 characters",
        Socks5ParseStatus.DomainNameNotPrintable => "domain name contains a byte outside printable ASCII",
        Socks5ParseStatus.PortZero => "DST.PORT is 0",
        _ => status.ToString(),
    };
}

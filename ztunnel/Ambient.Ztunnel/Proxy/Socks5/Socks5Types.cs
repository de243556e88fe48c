using System.Buffers.Binary;
using System.Net;
using Ambient.Ztunnel.Proxy.Outbound;

namespace Ambient.Ztunnel.Proxy.Socks5;

/// <summary>CMD field of a SOCKS5 request (RFC 1928 section 4). Only CONNECT is served.</summary>
internal enum Socks5Command : byte
{
    Connect = 1,
    Bind = 2,
    UdpAssociate = 3,
}

/// <summary>ATYP field of a SOCKS5 request or reply (RFC 1928 section 5).</summary>
internal enum Socks5AddressType : byte
{
    IPv4 = 1,
    DomainName = 3,
    IPv6 = 4,
}

/// <summary>REP field of a SOCKS5 reply (RFC 1928 section 6).</summary>
internal enum Socks5ReplyCode : byte
{
    Succeeded = 0,
    GeneralFailure = 1,
    NotAllowed = 2,
    NetworkUnreachable = 3,
    HostUnreachable = 4,
    ConnectionRefused = 5,
    TtlExpired = 6,
    CommandNotSupported = 7,
    AddressTypeNotSupported = 8,
}

/// <summary>
/// A parsed CONNECT/BIND/UDP request. IP destinations stay as an inline 128-bit value so parsing allocates nothing;
/// <see cref="ToDestination"/> materialises the <see cref="IPAddress"/> only once the request is accepted.
/// </summary>
internal readonly struct Socks5Request
{
    // Big-endian address bytes; an IPv4 address sits in the low 32 bits.
    private readonly UInt128 _address;

    public Socks5Request(Socks5Command command, Socks5AddressType addressType, UInt128 address, string? host, ushort port)
    {
        Command = command;
        AddressType = addressType;
        _address = address;
        Host = host;
        Port = port;
    }

    public Socks5Command Command { get; }
    public Socks5AddressType AddressType { get; }
    public string? Host { get; }
    public ushort Port { get; }

    /// <summary>Writes the raw address (4 or 16 bytes) and returns its length; 0 for a domain name.</summary>
    public int WriteAddress(Span<byte> destination)
    {
        switch (AddressType)
        {
            case Socks5AddressType.IPv4:
                BinaryPrimitives.WriteUInt32BigEndian(destination, (uint)_address);
                return 4;
            case Socks5AddressType.IPv6:
                BinaryPrimitives.WriteUInt128BigEndian(destination, _address);
                return 16;
            default:
                return 0;
        }
    }

    public OriginalDestination ToDestination()
    {
        if (AddressType == Socks5AddressType.DomainName)
        {
            return new OriginalDestination(null, Host, Port);
        }

        Span<byte> bytes = stackalloc byte[16];
        int length = WriteAddress(bytes);
        return new OriginalDestination(new IPAddress(bytes[..length]), null, Port);
    }
}

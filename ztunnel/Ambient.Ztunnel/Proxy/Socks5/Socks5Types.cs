using System.Buffers.Binary;
using System.Net;

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

/// <summary>Where the client asked to go: exactly one of <see cref="Address"/> and <see cref="Host"/> is set.</summary>
internal readonly record struct Socks5Destination(IPAddress? Address, string? Host, int Port)
{
    public override string ToString() => Address is not null
        ? new IPEndPoint(Address, Port).ToString()
        : $"{Host}:{Port}";
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

    public Socks5Destination ToDestination()
    {
        if (AddressType == Socks5AddressType.DomainName)
        {
            return new Socks5Destination(null, Host, Port);
        }

        Span<byte> bytes = stackalloc byte[16];
        int length = WriteAddress(bytes);
        return new Socks5Destination(new IPAddress(bytes[..length]), null, Port);
    }
}

/// <summary>
/// The routing seam: the outbound proxy resolves the destination and connects (HBONE or direct). The listener owns the
/// SOCKS5 conversation, the reply and the byte relay.
/// </summary>
internal interface ISocks5ConnectHandler
{
    // Resolve + connect. Return a connected duplex stream (or a reply code on failure). The listener writes the reply,
    // then relays bytes both ways between the client and the returned stream with half-close kept (client FIN ->
    // Stream shutdown of the write side; upstream EOF -> Socket.Shutdown(Send) on the client), then disposes both.
    ValueTask<Socks5ConnectResult> ConnectAsync(IPEndPoint listener, IPEndPoint client, Socks5Destination destination, CancellationToken ct);
}

/// <summary>
/// Outcome of <see cref="ISocks5ConnectHandler.ConnectAsync"/>. On <see cref="Socks5ReplyCode.Succeeded"/>,
/// <see cref="Upstream"/> must be set; the listener owns and disposes it from then on.
/// </summary>
internal readonly record struct Socks5ConnectResult(Socks5ReplyCode Code, Stream? Upstream, IPEndPoint? BoundAddress)
{
    /// <summary>
    /// How to half-close the upstream's write side when the client sends FIN. Optional: a NetworkStream is shut down
    /// with Socket.Shutdown(Send) and an SslStream with close_notify without it; streams of other kinds (an HBONE
    /// CONNECT stream: END_STREAM) need it, or the upstream never learns that the client finished sending.
    /// </summary>
    public Func<ValueTask>? CompleteWrites { get; init; }

    public static Socks5ConnectResult Failed(Socks5ReplyCode code) => new(code, null, null);
}

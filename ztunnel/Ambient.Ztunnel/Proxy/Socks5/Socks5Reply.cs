using System.Buffers.Binary;
using System.Net;
using System.Net.Sockets;
using Ambient.Ztunnel.Proxy.Outbound;

namespace Ambient.Ztunnel.Proxy.Socks5;

/// <summary>Writers for the two server messages of RFC 1928. Both write into a caller-provided span.</summary>
internal static class Socks5Reply
{
    /// <summary>Largest reply: 4 header bytes + 16 (IPv6) + 2 port bytes.</summary>
    public const int MaxReplyLength = 22;

    public const int MethodSelectionLength = 2;

    /// <summary>The REP code that tells a SOCKS5 client about an outbound outcome (RFC 1928 section 6).</summary>
    public static Socks5ReplyCode CodeFor(OutboundError error) => error switch
    {
        OutboundError.None => Socks5ReplyCode.Succeeded,
        OutboundError.NoRoute or OutboundError.Unreachable => Socks5ReplyCode.HostUnreachable,
        OutboundError.PortNotExposed or OutboundError.ConnectionRefused => Socks5ReplyCode.ConnectionRefused,
        OutboundError.MeshEndpoint or OutboundError.SourceNotInMesh or OutboundError.Denied => Socks5ReplyCode.NotAllowed,
        _ => Socks5ReplyCode.GeneralFailure,
    };

    // RFC 1928 section 3, server method selection:
    // +----+--------+
    // |VER | METHOD |
    // +----+--------+
    // | 1  |   1    |
    // +----+--------+
    // METHOD X'FF' = no acceptable methods; the client must then close the connection.
    public static int WriteMethodSelection(Span<byte> destination, byte method)
    {
        destination[0] = Socks5Parser.Version;
        destination[1] = method;
        return MethodSelectionLength;
    }

    // RFC 1928 section 6, server reply:
    // +----+-----+-------+------+----------+----------+
    // |VER | REP |  RSV  | ATYP | BND.ADDR | BND.PORT |
    // +----+-----+-------+------+----------+----------+
    // | 1  |  1  | X'00' |  1   | Variable |    2     |
    // +----+-----+-------+------+----------+----------+
    // We always answer with an IP ATYP: a bound address is never a name. With no bound address (every failure, or a
    // handler that does not know it) the reply carries 0.0.0.0:0, which clients treat as "unspecified".
    public static int Write(Span<byte> destination, Socks5ReplyCode code, IPEndPoint? bound)
    {
        destination[0] = Socks5Parser.Version;
        destination[1] = (byte)code;
        destination[2] = 0;

        int offset = 4;
        if (bound is null)
        {
            destination[3] = (byte)Socks5AddressType.IPv4;
            destination.Slice(offset, 4).Clear();
            offset += 4;
        }
        else
        {
            var address = bound.Address;
            if (address.IsIPv4MappedToIPv6)
            {
                address = address.MapToIPv4();
            }

            destination[3] = address.AddressFamily == AddressFamily.InterNetworkV6
                ? (byte)Socks5AddressType.IPv6
                : (byte)Socks5AddressType.IPv4;
            if (!address.TryWriteBytes(destination[offset..], out int written))
            {
                throw new ArgumentException("Destination span is too small for a SOCKS5 reply.", nameof(destination));
            }

            offset += written;
        }

        BinaryPrimitives.WriteUInt16BigEndian(destination[offset..], (ushort)(bound?.Port ?? 0));
        return offset + 2;
    }
}

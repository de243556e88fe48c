using System.Net;

namespace Ambient.Core.Authz;

/// <summary>
/// What the L4 evaluator knows about one inbound connection (istio/ztunnel's <c>rbac::Connection</c>): the peer's
/// SPIFFE identity from its mTLS certificate (null for plaintext), the source address, and the destination address
/// and port on the workload.
/// </summary>
internal readonly struct L4Connection
{
    public L4Connection(string? sourceIdentity, IPAddress source, IPAddress destination, int destinationPort)
    {
        ArgumentNullException.ThrowIfNull(source);
        ArgumentNullException.ThrowIfNull(destination);
        SourceIdentity = sourceIdentity;
        Source = IpKey.From(source);
        Destination = IpKey.From(destination);
        DestinationPort = destinationPort;
    }

    /// <summary>
    /// A connection that arrived without mTLS (the plaintext inbound listener, 15006): no peer identity. Under an
    /// effective PeerAuthentication STRICT mode istiod pushes a DENY with <c>not_principals: [presence]</c>, which
    /// matches exactly such a connection; identity-based ALLOW rules never match it.
    /// </summary>
    public static L4Connection Plaintext(IPAddress source, IPAddress destination, int destinationPort) =>
        new(sourceIdentity: null, source, destination, destinationPort);

    /// <summary><c>spiffe://td/ns/N/sa/S</c>, or null when the peer presented no certificate.</summary>
    public string? SourceIdentity { get; }

    public IpKey Source { get; }

    public IpKey Destination { get; }

    public int DestinationPort { get; }
}

/// <summary>An address as one 128-bit number and its family, so a CIDR test is one mask and one compare.
/// IPv4-mapped IPv6 addresses count as IPv4, as ztunnel canonicalizes socket addresses.</summary>
internal readonly record struct IpKey(UInt128 Value, bool IsV4)
{
    public static IpKey From(IPAddress address)
    {
        Span<byte> bytes = stackalloc byte[16];
        address.TryWriteBytes(bytes, out int written);
        if (written == 16 && address.IsIPv4MappedToIPv6)
        {
            return new IpKey(Read(bytes[12..16]), IsV4: true);
        }
        return new IpKey(Read(bytes[..written]), IsV4: written == 4);
    }

    /// <summary>Big-endian bytes (4 or 16) to a number; null for any other length.</summary>
    public static IpKey? FromBytes(ReadOnlySpan<byte> bytes)
        => bytes.Length is 4 or 16 ? new IpKey(Read(bytes), bytes.Length == 4) : null;

    private static UInt128 Read(ReadOnlySpan<byte> bytes)
    {
        UInt128 value = 0;
        foreach (var b in bytes)
        {
            value = (value << 8) | b;
        }
        return value;
    }
}

/// <summary>A CIDR with its mask computed once (ztunnel's <c>IpNet::contains</c>): never matches the other family.</summary>
internal readonly record struct IpCidr(UInt128 Network, UInt128 Mask, bool IsV4)
{
    /// <summary>Null when the address or prefix length is invalid; ztunnel drops such entries.</summary>
    public static IpCidr? From(ReadOnlySpan<byte> address, uint length)
    {
        if (IpKey.FromBytes(address) is not { } key)
        {
            return null;
        }
        int bits = key.IsV4 ? 32 : 128;
        if (length > bits)
        {
            return null;
        }
        UInt128 all = key.IsV4 ? uint.MaxValue : UInt128.MaxValue;
        UInt128 mask = length == 0 ? 0 : (all << (bits - (int)length)) & all;
        return new IpCidr(key.Value & mask, mask, key.IsV4);
    }

    public bool Contains(IpKey address) => address.IsV4 == IsV4 && (address.Value & Mask) == Network;
}

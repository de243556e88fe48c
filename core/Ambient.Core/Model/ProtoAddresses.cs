using System.Net;
using Google.Protobuf;

namespace Ambient.Core.Model;

/// <summary>IP addresses and ports as the workload API carries them: raw 4- or 16-byte network-order bytes, uint32 ports.</summary>
internal static class ProtoAddresses
{
    public static ByteString ToBytes(IPAddress address)
    {
        Span<byte> bytes = stackalloc byte[16];
        if (!address.TryWriteBytes(bytes, out var written))
        {
            throw new ArgumentException($"address {address} does not fit 16 bytes", nameof(address));
        }
        return ByteString.CopyFrom(bytes[..written]);
    }

    public static IPAddress FromBytes(ReadOnlySpan<byte> bytes, string what)
    {
        if (bytes.Length != 4 && bytes.Length != 16)
        {
            throw new InvalidDataException($"{what}: {bytes.Length} address bytes; expected 4 (IPv4) or 16 (IPv6)");
        }
        return new IPAddress(bytes);
    }

    public static int CheckPort(uint port, string what)
    {
        if (port > 65535)
        {
            throw new InvalidDataException($"{what}: port {port} is out of range 0-65535");
        }
        return (int)port;
    }

    /// <summary>Resource alias for an address, as istiod writes it: <c>&lt;network&gt;/&lt;ip&gt;</c>.</summary>
    public static string Alias(string network, IPAddress address) => network + "/" + address.ToString();
}

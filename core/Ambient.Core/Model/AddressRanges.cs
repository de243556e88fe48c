using System.Globalization;
using System.Net;
using System.Net.Sockets;

namespace Ambient.Core.Model;

/// <summary>Where a local mesh's pods live: processes on loopback addresses, or each pod in a network namespace of its own.</summary>
internal enum NetworkMode
{
    Loopback,
    Netns,
}

/// <summary>
/// The address plan of a mesh, one value shared by every component that computes addresses (istiod-lite publishes
/// them, ambientctl binds and routes them), so the allocator gives all of them the same answer.
/// <list type="bullet">
/// <item><b>loopback</b>: pods in 127.1-127.127.x.x, Service VIPs in 127.128-127.254.x.x, nodes 127.0.N.1, 127.0.N.2, ...</item>
/// <item><b>netns</b>: node i (nodes in name order, from 0) owns the i-th /24 of <see cref="PodCidr"/> (10.244.i.0/24 by
/// default): .1 is the node's bridge in the host namespace (the node's address: its ztunnel listens there) and its pods get
/// .2-.254; Service VIPs come from <see cref="ServiceCidr"/> (10.96.0.0/16), whose tenth address is the cluster DNS VIP
/// (as kube-dns' 10.96.0.10) and is never given to a Service.</item>
/// </list>
/// </summary>
internal sealed record AddressRanges(NetworkMode Mode, IPNetwork PodCidr, IPNetwork ServiceCidr, byte FirstNodeOctet)
{
    public static readonly IPNetwork DefaultPodCidr = IPNetwork.Parse("10.244.0.0/16");
    public static readonly IPNetwork DefaultServiceCidr = IPNetwork.Parse("10.96.0.0/16");

    /// <summary>Today's mode: everything on loopback.</summary>
    public static readonly AddressRanges Loopback = LoopbackFrom(LoopbackAddressAllocator.DefaultFirstNodeOctet);

    public static AddressRanges LoopbackFrom(byte firstNodeOctet) =>
        new(NetworkMode.Loopback, IPNetwork.Parse("127.0.0.0/8"), IPNetwork.Parse("127.128.0.0/9"), firstNodeOctet);

    public static AddressRanges Netns(IPNetwork podCidr, IPNetwork serviceCidr) => new(NetworkMode.Netns, podCidr, serviceCidr, 0);

    /// <summary>How many nodes the pod CIDR has room for (one /24 each).</summary>
    public int MaxNodes => 1 << (24 - PodCidr.PrefixLength);

    /// <summary>The /24 of node <paramref name="index"/> (netns mode).</summary>
    public IPNetwork NodePodCidr(int index) => new(LoopbackAddressAllocator.ToIPAddress(NodeBlock(index)), 24);

    /// <summary>Node <paramref name="index"/>'s address: its bridge's, the gateway of its pods (netns mode).</summary>
    public IPAddress NodeGateway(int index) => LoopbackAddressAllocator.ToIPAddress(NodeBlock(index) + 1);

    /// <summary>The cluster DNS VIP that every pod's resolv.conf names (netns mode): the service CIDR's tenth address.</summary>
    public IPAddress DnsVip => LoopbackAddressAllocator.ToIPAddress(Network(ServiceCidr) + 10);

    internal uint NodeBlock(int index) => Network(PodCidr) + ((uint)index << 8);

    internal static uint Network(IPNetwork cidr)
    {
        LoopbackAddressAllocator.TryToUInt32(cidr.BaseAddress, out var v);
        return v;
    }

    public override string ToString() => Mode == NetworkMode.Loopback
        ? "loopback"
        : string.Create(CultureInfo.InvariantCulture, $"netns (pods {PodCidr}, services {ServiceCidr})");

    /// <summary>
    /// Parses an IPv4 CIDR for the pod or service range: a network address (no host bits) with a prefix of /8 to /24, so
    /// the range is whole /24 blocks (one per node, or 254 VIPs each).
    /// </summary>
    public static IPNetwork? ParseCidr(string text, string flag, out string? error)
    {
        error = null;
        if (!IPNetwork.TryParse(text, out var cidr) || cidr.BaseAddress.AddressFamily != AddressFamily.InterNetwork || !text.Contains('/'))
        {
            error = $"{flag}: '{text}' is not an IPv4 CIDR such as 10.244.0.0/16";
            return null;
        }
        if (cidr.ToString() != text)
        {
            // IPNetwork.TryParse drops host bits silently; a typo such as 10.244.1.0/16 must not become 10.244.0.0/16.
            error = $"{flag}: '{text}' has host bits set; did you mean {cidr}?";
            return null;
        }
        if (cidr.PrefixLength is < 8 or > 24)
        {
            error = $"{flag}: '{text}' must have a prefix from /8 to /24";
            return null;
        }
        if (IPAddress.IsLoopback(cidr.BaseAddress))
        {
            error = $"{flag}: '{text}' is a loopback range; network namespaces need a routable one";
            return null;
        }
        return cidr;
    }

    /// <summary>Builds the netns plan from flag values; the two ranges must not overlap.</summary>
    public static AddressRanges? ParseNetns(string podCidr, string serviceCidr, out string? error)
    {
        var pods = ParseCidr(podCidr, "--pod-cidr", out error);
        if (pods is null) return null;
        var services = ParseCidr(serviceCidr, "--service-cidr", out error);
        if (services is null) return null;
        if (pods.Value.Contains(services.Value.BaseAddress) || services.Value.Contains(pods.Value.BaseAddress))
        {
            error = $"--pod-cidr {pods} and --service-cidr {services} overlap";
            return null;
        }
        return Netns(pods.Value, services.Value);
    }
}

using System.Collections.Immutable;
using System.Net;
using Ambient.Core.Protos.Workload;

namespace Ambient.Core.Model;

/// <summary>A service named by namespace and hostname (istio.workload.NamespacedHostname).</summary>
internal readonly record struct NamespacedHost(string Namespace, string Hostname)
{
    public override string ToString() => Namespace + "/" + Hostname;
}

/// <summary>
/// Where a waypoint or network gateway is reached (istio.workload.GatewayAddress): either a service by
/// <see cref="Host"/>, or an IP <see cref="Address"/> on <see cref="Network"/>; plus its HBONE port.
/// </summary>
internal sealed record GatewayInfo(NamespacedHost? Host, string Network, IPAddress? Address, int HboneMtlsPort)
{
    /// <summary><c>ns/hostname</c> or <c>network/ip</c>, as Istio's ztunnel shows it in config_dump.</summary>
    public string Destination => Host is { } h ? h.ToString() : ProtoAddresses.Alias(Network, Address!);

    public GatewayAddress ToProto()
    {
        var g = new GatewayAddress { HboneMtlsPort = (uint)HboneMtlsPort };
        if (Host is { } h)
        {
            g.Hostname = new NamespacedHostname { Namespace = h.Namespace, Hostname = h.Hostname };
        }
        else
        {
            g.Address = new NetworkAddress { Network = Network, Address = ProtoAddresses.ToBytes(Address!) };
        }
        return g;
    }

    /// <summary>Null when the field is absent; throws <see cref="InvalidDataException"/> naming it when unusable.</summary>
    public static GatewayInfo? FromProto(GatewayAddress? g, StringPool pool, string what)
    {
        if (g is null)
        {
            return null;
        }
        var port = ProtoAddresses.CheckPort(g.HboneMtlsPort, what + ".hbone_mtls_port");
        return g.DestinationCase switch
        {
            GatewayAddress.DestinationOneofCase.Hostname when g.Hostname.Hostname.Length > 0
                => new GatewayInfo(new NamespacedHost(pool.Get(g.Hostname.Namespace), pool.Get(g.Hostname.Hostname)), "", null, port),
            GatewayAddress.DestinationOneofCase.Address
                => new GatewayInfo(null, pool.Get(g.Address.Network), ProtoAddresses.FromBytes(g.Address.Address.Span, what + ".address"), port),
            GatewayAddress.DestinationOneofCase.Hostname => throw new InvalidDataException($"{what}: hostname is empty"),
            _ => throw new InvalidDataException($"{what}: names neither a hostname nor an address"),
        };
    }
}

/// <summary>Where a workload runs (istio.workload.Locality).</summary>
internal readonly record struct LocalityInfo(string Region, string Zone, string Subzone)
{
    public Locality ToProto() => new() { Region = Region, Zone = Zone, Subzone = Subzone };

    public static LocalityInfo? FromProto(Locality? l, StringPool pool)
        => l is null ? null : new LocalityInfo(pool.Get(l.Region), pool.Get(l.Zone), pool.Get(l.Subzone));
}

/// <summary>How a service's endpoints are picked (istio.workload.LoadBalancing).</summary>
internal sealed record LoadBalancingInfo(
    ImmutableArray<LoadBalancing.Types.Scope> RoutingPreference,
    LoadBalancing.Types.Mode Mode,
    LoadBalancing.Types.HealthPolicy HealthPolicy)
{
    // ImmutableArray compares by reference; two equal policies must compare equal (WireEquals relies on it).
    public bool Equals(LoadBalancingInfo? other)
        => other is not null && Mode == other.Mode && HealthPolicy == other.HealthPolicy
            && RoutingPreference.AsSpan().SequenceEqual(other.RoutingPreference.AsSpan());

    public override int GetHashCode() => HashCode.Combine(Mode, HealthPolicy, RoutingPreference.Length);

    public LoadBalancing ToProto()
    {
        var lb = new LoadBalancing { Mode = Mode, HealthPolicy = HealthPolicy };
        lb.RoutingPreference.AddRange(RoutingPreference);
        return lb;
    }

    public static LoadBalancingInfo? FromProto(LoadBalancing? lb)
        => lb is null ? null : new LoadBalancingInfo([.. lb.RoutingPreference], lb.Mode, lb.HealthPolicy);
}

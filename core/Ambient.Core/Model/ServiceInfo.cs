using System.Collections.Immutable;
using System.Net;
using Ambient.Core.Protos.Workload;

namespace Ambient.Core.Model;

/// <summary>
/// A service port. <see cref="TargetPort"/> is 0 when the Kubernetes targetPort is a name: the number then
/// differs per pod and lives in each endpoint's Workload.services entry (as in Istio).
/// </summary>
internal readonly record struct ServicePortInfo(int Port, int TargetPort, AppProtocol AppProtocol, string? Name = null, string? TargetPortName = null);

/// <summary>
/// A service as the mesh sees it: the internal twin of istio.workload.Service. Name, namespace and hostname
/// are fixed at construction so <see cref="Key"/> (the xDS resource name) cannot go stale via <c>with</c>.
/// </summary>
internal sealed record ServiceInfo
{
    public ServiceInfo(string name, string @namespace, string hostname)
    {
        Name = name;
        Namespace = @namespace;
        Hostname = hostname;
        Key = @namespace + "/" + hostname;
    }

    public string Name { get; }
    public string Namespace { get; }

    /// <summary><c>&lt;name&gt;.&lt;ns&gt;.svc.&lt;domain suffix&gt;</c>.</summary>
    public string Hostname { get; }

    /// <summary><c>&lt;ns&gt;/&lt;hostname&gt;</c>: the xDS resource name and the key in Workload.services.</summary>
    public string Key { get; }

    /// <summary>Network of the VIPs ("" = default network).</summary>
    public string Network { get; init; } = "";

    /// <summary>Virtual IPs; empty for a headless service.</summary>
    public ImmutableArray<IPAddress> Vips { get; init; } = [];
    public ImmutableArray<ServicePortInfo> Ports { get; init; } = [];

    /// <summary>The waypoint all traffic to this service must go through; null when none.</summary>
    public GatewayInfo? Waypoint { get; init; }

    /// <summary>Endpoint selection policy; null means Istio's default (any healthy endpoint).</summary>
    public LoadBalancingInfo? LoadBalancing { get; init; }

    /// <summary>Service labels (istiod side only; empty when built from protos).</summary>
    public ImmutableSortedDictionary<string, string> Labels { get; init; } = ImmutableSortedDictionary<string, string>.Empty;

    /// <summary>Pod selector (istiod side only; empty when built from protos).</summary>
    public ImmutableSortedDictionary<string, string> Selector { get; init; } = ImmutableSortedDictionary<string, string>.Empty;

    public static string KubernetesHostname(string name, string @namespace, string domainSuffix) => name + "." + @namespace + ".svc." + domainSuffix;

    public bool TryGetPort(int port, out ServicePortInfo info)
    {
        foreach (var p in Ports)
        {
            if (p.Port == port)
            {
                info = p;
                return true;
            }
        }
        info = default;
        return false;
    }

    /// <summary>True when both serialize to the same Service (see <see cref="WorkloadInfo.WireEquals"/>).</summary>
    public bool WireEquals(ServiceInfo other)
    {
        if (ReferenceEquals(this, other))
        {
            return true;
        }
        if (!(Name == other.Name && Namespace == other.Namespace && Hostname == other.Hostname && Network == other.Network
            && Waypoint == other.Waypoint && LoadBalancing == other.LoadBalancing
            && Vips.Length == other.Vips.Length && Ports.Length == other.Ports.Length))
        {
            return false;
        }
        for (var i = 0; i < Vips.Length; i++)
        {
            if (!Vips[i].Equals(other.Vips[i]))
            {
                return false;
            }
        }
        for (var i = 0; i < Ports.Length; i++)
        {
            var a = Ports[i];
            var b = other.Ports[i];
            if (a.Port != b.Port || a.TargetPort != b.TargetPort || a.AppProtocol != b.AppProtocol)
            {
                return false;
            }
        }
        return true;
    }

    public Service ToProto()
    {
        var s = new Service
        {
            Name = Name,
            Namespace = Namespace,
            Hostname = Hostname,
            Waypoint = Waypoint?.ToProto(),
            LoadBalancing = LoadBalancing?.ToProto(),
        };
        foreach (var vip in Vips)
        {
            s.Addresses.Add(new NetworkAddress { Network = Network, Address = ProtoAddresses.ToBytes(vip) });
        }
        foreach (var p in Ports)
        {
            s.Ports.Add(new Port { ServicePort = (uint)p.Port, TargetPort = (uint)p.TargetPort, AppProtocol = p.AppProtocol });
        }
        return s;
    }

    /// <summary>
    /// Converts a received Service; throws <see cref="InvalidDataException"/> naming the service and field.
    /// A service keeps VIPs on one network: <paramref name="localNetwork"/> when it has any there, else the network
    /// of its first address. VIPs on other networks (a multi-network mesh) are left out and described in
    /// <paramref name="skipped"/>, so the rest of the service, and of the response, stays usable.
    /// </summary>
    public static ServiceInfo FromProto(Service s, StringPool? pool = null, string localNetwork = "", ICollection<string>? skipped = null)
    {
        pool ??= new StringPool();
        if (string.IsNullOrEmpty(s.Hostname))
        {
            throw new InvalidDataException($"service '{s.Namespace}/{s.Name}': hostname is empty");
        }
        var what = $"service '{s.Namespace}/{s.Hostname}'";
        var network = s.Addresses.Count > 0 ? s.Addresses[0].Network : "";
        foreach (var a in s.Addresses)
        {
            if (a.Network == localNetwork)
            {
                network = localNetwork;
                break;
            }
        }
        var vips = ImmutableArray.CreateBuilder<IPAddress>(s.Addresses.Count);
        for (var i = 0; i < s.Addresses.Count; i++)
        {
            var a = s.Addresses[i];
            var vip = ProtoAddresses.FromBytes(a.Address.Span, $"{what}: addresses[{i}]");
            if (a.Network != network)
            {
                skipped?.Add($"{what}: VIP {ProtoAddresses.Alias(a.Network, vip)} skipped: only network '{network}' is used");
                continue;
            }
            vips.Add(vip);
        }
        var ports = ImmutableArray.CreateBuilder<ServicePortInfo>(s.Ports.Count);
        for (var i = 0; i < s.Ports.Count; i++)
        {
            var p = s.Ports[i];
            ports.Add(new ServicePortInfo(
                ProtoAddresses.CheckPort(p.ServicePort, $"{what}: ports[{i}].service_port"),
                ProtoAddresses.CheckPort(p.TargetPort, $"{what}: ports[{i}].target_port"),
                p.AppProtocol));
        }
        return new ServiceInfo(s.Name, pool.Get(s.Namespace), s.Hostname)
        {
            Network = pool.Get(network),
            Vips = vips.ToImmutable(),
            Ports = ports.MoveToImmutable(),
            Waypoint = GatewayInfo.FromProto(s.Waypoint, pool, $"{what}: waypoint"),
            LoadBalancing = LoadBalancingInfo.FromProto(s.LoadBalancing),
        };
    }
}

using System.Collections.Immutable;
using System.Net;
using Ambient.Core.Config;
using Ambient.Core.Identity;
using Ambient.Core.Protos.Workload;

namespace Ambient.Core.Model;

/// <summary>A service port as seen from one workload: which pod port serves it.</summary>
internal readonly record struct PortMapping(int ServicePort, int TargetPort, AppProtocol AppProtocol);

/// <summary>One entry of Workload.services: the service key (<c>ns/hostname</c>) and the ports this workload serves for it.</summary>
internal readonly record struct WorkloadServicePorts(string ServiceKey, ImmutableArray<PortMapping> Ports)
{
    public bool TryGetTargetPort(int servicePort, out int targetPort)
    {
        foreach (var p in Ports)
        {
            if (p.ServicePort == servicePort)
            {
                targetPort = p.TargetPort;
                return true;
            }
        }
        targetPort = 0;
        return false;
    }
}

/// <summary>
/// One workload (a pod) as the mesh sees it: the internal twin of istio.workload.Workload plus the few config
/// facts istiod needs later (labels for policy/waypoint selection, container ports for named target ports).
/// Namespace, trust domain and service account are fixed at construction so <see cref="Identity"/> can never
/// go stale through a <c>with</c> expression.
/// </summary>
internal sealed record WorkloadInfo
{
    /// <param name="pool">Builders pass their pool: thousands of pods share a handful of (namespace, service
    /// account) identities, and one string per identity is cheaper than a string.Intern per pod.</param>
    public WorkloadInfo(string uid, string @namespace, string trustDomain, string serviceAccount, StringPool? pool = null)
    {
        Uid = uid;
        Namespace = @namespace;
        TrustDomain = trustDomain;
        ServiceAccount = serviceAccount;
        Identity = pool is not null
            ? pool.Identity(trustDomain, @namespace, serviceAccount)
            : string.Intern(SpiffeUri(trustDomain, @namespace, serviceAccount));
    }

    /// <summary><c>&lt;cluster&gt;//Pod/&lt;ns&gt;/&lt;name&gt;</c>; also the xDS resource name.</summary>
    public string Uid { get; }
    public string Namespace { get; }
    public string TrustDomain { get; }
    public string ServiceAccount { get; }

    /// <summary>SPIFFE URI <c>spiffe://td/ns/N/sa/S</c>: what the workload's certificate carries.</summary>
    public string Identity { get; }

    public required string Name { get; init; }
    public ImmutableArray<IPAddress> Addresses { get; init; } = [];
    public string Network { get; init; } = "";
    public TunnelProtocol TunnelProtocol { get; init; }
    public string Node { get; init; } = "";
    public required string CanonicalName { get; init; }
    public string CanonicalRevision { get; init; } = MeshLabels.DefaultRevision;
    public WorkloadType WorkloadType { get; init; } = WorkloadType.Pod;
    public required string WorkloadName { get; init; }
    public WorkloadStatus Status { get; init; } = WorkloadStatus.Healthy;
    public string ClusterId { get; init; } = "";

    /// <summary>DNS name the ztunnel resolves to reach the workload ("" when it has addresses only).</summary>
    public string Hostname { get; init; } = "";

    /// <summary>The waypoint all traffic to this workload must go through; null when none.</summary>
    public GatewayInfo? Waypoint { get; init; }

    /// <summary>The east-west gateway that reaches this workload from other networks; null when none.</summary>
    public GatewayInfo? NetworkGateway { get; init; }
    public LocalityInfo? Locality { get; init; }

    /// <summary>Services this workload is an endpoint of, sorted by key (ordinal) so serialization is deterministic.</summary>
    public ImmutableArray<WorkloadServicePorts> Services { get; init; } = [];
    public ImmutableArray<string> AuthorizationPolicies { get; init; } = [];

    /// <summary>Pod labels (istiod side only: not part of the wire Workload, empty when built from protos).</summary>
    public ImmutableSortedDictionary<string, string> Labels { get; init; } = ImmutableSortedDictionary<string, string>.Empty;

    /// <summary>Container ports of all containers (istiod side only).</summary>
    public ImmutableArray<ContainerPort> ContainerPorts { get; init; } = [];

    public bool IsInMesh => TunnelProtocol == TunnelProtocol.Hbone;

    public static string SpiffeUri(string trustDomain, string @namespace, string serviceAccount)
        => "spiffe://" + trustDomain + "/ns/" + @namespace + "/sa/" + serviceAccount;

    public static string PodUid(string clusterId, string @namespace, string name) => clusterId + "//Pod/" + @namespace + "/" + name;

    /// <summary>
    /// True when both serialize to the same Workload: every field <see cref="ToProto"/> writes, nothing else.
    /// Lets a rebuild reuse the previous push's serialized resource without serializing again; keep it in step
    /// with ToProto (a test mutates each wire field to check).
    /// </summary>
    public bool WireEquals(WorkloadInfo other)
    {
        if (ReferenceEquals(this, other))
        {
            return true;
        }
        if (!(Uid == other.Uid && Name == other.Name && Namespace == other.Namespace && Network == other.Network
            && TunnelProtocol == other.TunnelProtocol && TrustDomain == other.TrustDomain && ServiceAccount == other.ServiceAccount
            && Node == other.Node && CanonicalName == other.CanonicalName && CanonicalRevision == other.CanonicalRevision
            && WorkloadType == other.WorkloadType && WorkloadName == other.WorkloadName && Status == other.Status
            && ClusterId == other.ClusterId && Hostname == other.Hostname && Waypoint == other.Waypoint
            && NetworkGateway == other.NetworkGateway && Locality == other.Locality
            && Addresses.Length == other.Addresses.Length && Services.Length == other.Services.Length
            && AuthorizationPolicies.Length == other.AuthorizationPolicies.Length))
        {
            return false;
        }
        for (var i = 0; i < Addresses.Length; i++)
        {
            if (!Addresses[i].Equals(other.Addresses[i]))
            {
                return false;
            }
        }
        for (var i = 0; i < Services.Length; i++)
        {
            var a = Services[i];
            var b = other.Services[i];
            if (a.ServiceKey != b.ServiceKey || !a.Ports.AsSpan().SequenceEqual(b.Ports.AsSpan()))
            {
                return false;
            }
        }
        for (var i = 0; i < AuthorizationPolicies.Length; i++)
        {
            if (AuthorizationPolicies[i] != other.AuthorizationPolicies[i])
            {
                return false;
            }
        }
        return true;
    }

    public Workload ToProto()
    {
        var w = new Workload
        {
            Uid = Uid,
            Name = Name,
            Namespace = Namespace,
            Network = Network,
            TunnelProtocol = TunnelProtocol,
            TrustDomain = TrustDomain,
            ServiceAccount = ServiceAccount,
            Node = Node,
            CanonicalName = CanonicalName,
            CanonicalRevision = CanonicalRevision,
            WorkloadType = WorkloadType,
            WorkloadName = WorkloadName,
            Status = Status,
            ClusterId = ClusterId,
            Hostname = Hostname,
            Waypoint = Waypoint?.ToProto(),
            NetworkGateway = NetworkGateway?.ToProto(),
            Locality = Locality?.ToProto(),
        };
        foreach (var address in Addresses)
        {
            w.Addresses.Add(ProtoAddresses.ToBytes(address));
        }
        // MapField keeps insertion order and serializes in it; Services is sorted, so equal input gives equal bytes.
        foreach (var svc in Services)
        {
            var list = new PortList();
            foreach (var p in svc.Ports)
            {
                list.Ports.Add(new Port { ServicePort = (uint)p.ServicePort, TargetPort = (uint)p.TargetPort, AppProtocol = p.AppProtocol });
            }
            w.Services.Add(svc.ServiceKey, list);
        }
        foreach (var policy in AuthorizationPolicies)
        {
            w.AuthorizationPolicies.Add(policy);
        }
        return w;
    }

    /// <summary>
    /// Converts a received Workload. Empty trust domain / service account take Istio's defaults exactly as ztunnel
    /// does: the mesh's trust domain (istiod elides it when it is that) and <c>default</c>.
    /// Throws <see cref="InvalidDataException"/> naming the workload and field for anything we cannot use.
    /// </summary>
    public static WorkloadInfo FromProto(Workload w, StringPool? pool = null, string meshTrustDomain = SpiffeId.DefaultTrustDomain)
    {
        pool ??= new StringPool();
        if (string.IsNullOrEmpty(w.Uid))
        {
            throw new InvalidDataException($"workload '{w.Namespace}/{w.Name}': uid is empty");
        }
        var addresses = ImmutableArray.CreateBuilder<IPAddress>(w.Addresses.Count);
        for (var i = 0; i < w.Addresses.Count; i++)
        {
            addresses.Add(ProtoAddresses.FromBytes(w.Addresses[i].Span, $"workload '{w.Uid}': addresses[{i}]"));
        }
        var services = ImmutableArray.CreateBuilder<WorkloadServicePorts>(w.Services.Count);
        foreach (var (key, list) in w.Services)
        {
            var ports = ImmutableArray.CreateBuilder<PortMapping>(list.Ports.Count);
            foreach (var p in list.Ports)
            {
                ports.Add(new PortMapping(
                    ProtoAddresses.CheckPort(p.ServicePort, $"workload '{w.Uid}': services['{key}'].service_port"),
                    ProtoAddresses.CheckPort(p.TargetPort, $"workload '{w.Uid}': services['{key}'].target_port"),
                    p.AppProtocol));
            }
            services.Add(new WorkloadServicePorts(pool.Get(key), ports.MoveToImmutable()));
        }
        services.Sort(static (a, b) => string.CompareOrdinal(a.ServiceKey, b.ServiceKey));
        var policies = ImmutableArray.CreateBuilder<string>(w.AuthorizationPolicies.Count);
        foreach (var policy in w.AuthorizationPolicies)
        {
            policies.Add(pool.Get(policy));
        }
        var ns = pool.Get(w.Namespace);
        var trustDomain = pool.Get(w.TrustDomain.Length == 0 ? meshTrustDomain : w.TrustDomain);
        var serviceAccount = pool.Get(w.ServiceAccount.Length == 0 ? "default" : w.ServiceAccount);
        var name = w.Name;
        return new WorkloadInfo(w.Uid, ns, trustDomain, serviceAccount, pool)
        {
            Name = name,
            Addresses = addresses.MoveToImmutable(),
            Network = pool.Get(w.Network),
            TunnelProtocol = w.TunnelProtocol,
            Node = pool.Get(w.Node),
            CanonicalName = w.CanonicalName == name ? name : pool.Get(w.CanonicalName),
            CanonicalRevision = pool.Get(w.CanonicalRevision),
            WorkloadType = w.WorkloadType,
            WorkloadName = w.WorkloadName == name ? name : pool.Get(w.WorkloadName),
            Status = w.Status,
            ClusterId = pool.Get(w.ClusterId),
            Hostname = w.Hostname,
            Waypoint = GatewayInfo.FromProto(w.Waypoint, pool, $"workload '{w.Uid}': waypoint"),
            NetworkGateway = GatewayInfo.FromProto(w.NetworkGateway, pool, $"workload '{w.Uid}': network_gateway"),
            Locality = LocalityInfo.FromProto(w.Locality, pool),
            Services = services.MoveToImmutable(),
            AuthorizationPolicies = policies.MoveToImmutable(),
        };
    }
}

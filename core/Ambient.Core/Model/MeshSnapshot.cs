using System.Collections.Immutable;
using System.Net;
using System.Runtime.InteropServices;
using Ambient.Core.Config;
using Ambient.Core.Protos.Workload;

namespace Ambient.Core.Model;

/// <summary>A workload serving a service, with the ports it serves it on (its Workload.services entry).</summary>
internal readonly record struct ServiceEndpoint(WorkloadInfo Workload, ImmutableArray<PortMapping> Ports)
{
    /// <summary>
    /// The pod port behind <paramref name="servicePort"/>, resolved as ztunnel does: the workload's own mapping
    /// first, else the service's numeric target port; false when neither exists (a named target port the pod
    /// does not declare), in which case this endpoint cannot serve that port.
    /// </summary>
    public bool TryGetTargetPort(ServiceInfo service, int servicePort, out int targetPort)
    {
        foreach (var p in Ports)
        {
            if (p.ServicePort == servicePort)
            {
                targetPort = p.TargetPort;
                return targetPort != 0;
            }
        }
        if (service.TryGetPort(servicePort, out var sp) && sp.TargetPort != 0 && sp.TargetPortName is null)
        {
            targetPort = sp.TargetPort;
            return true;
        }
        targetPort = 0;
        return false;
    }
}

/// <summary>
/// One immutable view of the mesh (workloads, services) with every index built at most once, in the style of
/// ztunnel's ProxyState. istiod builds it from config (<see cref="MeshBuilder"/>), ztunnel from received
/// protos (<see cref="FromProtos"/>); a change produces a new snapshot, readers never lock.
/// </summary>
internal sealed class MeshSnapshot
{
    private static readonly IReadOnlyDictionary<string, IPAddress> NoNodes = new Dictionary<string, IPAddress>();

    // Built on first use: istiod publishes a snapshot per config generation and reads these rarely (a CA request, a
    // waypoint's endpoints), so at 10,000 pods a one-pod change does not rebuild four 10,000-entry maps for nothing.
    // Proxies build them at once (FromProtos): they look workloads up per connection.
    private WorkloadIndexes? _workloadIndexes;
    private readonly Dictionary<string, ServiceInfo> _servicesByKey;
    private readonly Dictionary<string, ServiceInfo[]> _servicesByHostname;
    private readonly Dictionary<IPAddress, ServiceInfo> _servicesByVip;
    private readonly Dictionary<ObjectKey, WaypointInfo> _waypointsByKey;
    private readonly Dictionary<NamespacedHost, WaypointInfo> _waypointsByService;
    private readonly Dictionary<string, WaypointInfo> _waypointsByPodUid;
    private readonly GatewayApiConfig _gatewayApi;
    private readonly Lazy<WaypointRouting> _routing;

    private MeshSnapshot(
        MeshOptions options,
        ImmutableArray<WorkloadInfo> workloads,
        ImmutableArray<ServiceInfo> services,
        IReadOnlyDictionary<string, IPAddress> nodeAddresses,
        ImmutableArray<ConfigError> problems,
        GatewayApiConfig gatewayApi)
    {
        _gatewayApi = gatewayApi;
        _waypointsByKey = new Dictionary<ObjectKey, WaypointInfo>(gatewayApi.Waypoints.Length);
        _waypointsByService = new Dictionary<NamespacedHost, WaypointInfo>(gatewayApi.Waypoints.Length);
        _waypointsByPodUid = new Dictionary<string, WaypointInfo>(gatewayApi.Waypoints.Length, StringComparer.Ordinal);
        foreach (var w in gatewayApi.Waypoints)
        {
            _waypointsByKey.TryAdd(new ObjectKey(w.Namespace, w.Name), w);
            _waypointsByService.TryAdd(w.Service, w);
            _waypointsByPodUid.TryAdd(w.WorkloadUid, w);
        }
        // Only istiod reads routes and status; built on first use, once per snapshot.
        _routing = new Lazy<WaypointRouting>(() => HttpRouteBinder.Bind(this), LazyThreadSafetyMode.ExecutionAndPublication);
        Options = options;
        Workloads = workloads;
        Services = services;
        NodeAddresses = nodeAddresses;
        Problems = problems;

        for (var i = 1; i < workloads.Length; i++)
        {
            // Sorted by uid: a uid given twice is two neighbours.
            if (string.Equals(workloads[i - 1].Uid, workloads[i].Uid, StringComparison.Ordinal))
            {
                throw new InvalidDataException($"duplicate workload uid '{workloads[i].Uid}'");
            }
        }
        _servicesByKey = new Dictionary<string, ServiceInfo>(services.Length, StringComparer.Ordinal);
        _servicesByVip = new Dictionary<IPAddress, ServiceInfo>(services.Length);
        var byHost = new Dictionary<string, List<ServiceInfo>>(services.Length, StringComparer.Ordinal);
        foreach (var s in services)
        {
            if (!_servicesByKey.TryAdd(s.Key, s))
            {
                throw new InvalidDataException($"duplicate service '{s.Key}'");
            }
            foreach (var vip in s.Vips)
            {
                _servicesByVip.TryAdd(vip, s);
            }
            if (!byHost.TryGetValue(s.Hostname, out var same))
            {
                byHost.Add(s.Hostname, same = new List<ServiceInfo>(1));
            }
            same.Add(s);
        }
        _servicesByHostname = new Dictionary<string, ServiceInfo[]>(byHost.Count, StringComparer.Ordinal);
        foreach (var (host, list) in byHost)
        {
            _servicesByHostname.Add(host, [.. list]);
        }
    }

    private WorkloadIndexes Indexes => Volatile.Read(ref _workloadIndexes) ?? IndexWorkloads();

    private WorkloadIndexes IndexWorkloads()
    {
        var workloads = Workloads;
        var byUid = new Dictionary<string, WorkloadInfo>(workloads.Length, StringComparer.Ordinal);
        var byAddress = new Dictionary<IPAddress, WorkloadInfo>(workloads.Length);
        var byNode = new Dictionary<string, List<WorkloadInfo>>(StringComparer.Ordinal);
        var endpoints = new Dictionary<string, List<ServiceEndpoint>>(Services.Length, StringComparer.Ordinal);
        foreach (var w in workloads)
        {
            byUid.Add(w.Uid, w);
            foreach (var a in w.Addresses)
            {
                // Workloads are in uid order, so when two claim one address the choice is deterministic.
                byAddress.TryAdd(a, w);
            }
            if (!byNode.TryGetValue(w.Node, out var onNode))
            {
                byNode.Add(w.Node, onNode = []);
            }
            onNode.Add(w);
            foreach (var s in w.Services)
            {
                if (!endpoints.TryGetValue(s.ServiceKey, out var list))
                {
                    endpoints.Add(s.ServiceKey, list = []);
                }
                list.Add(new ServiceEndpoint(w, s.Ports));
            }
        }
        var workloadsByNode = new Dictionary<string, WorkloadInfo[]>(byNode.Count, StringComparer.Ordinal);
        foreach (var (node, list) in byNode)
        {
            workloadsByNode.Add(node, [.. list]);
        }
        // Endpoints may name a service not (yet) in the snapshot; ztunnel keeps those too, so do we.
        var endpointsByServiceKey = new Dictionary<string, ServiceEndpoint[]>(endpoints.Count, StringComparer.Ordinal);
        foreach (var (key, list) in endpoints)
        {
            endpointsByServiceKey.Add(key, [.. list]);
        }
        var built = new WorkloadIndexes(byUid, byAddress, workloadsByNode, endpointsByServiceKey);
        // Readers may race to build them; either result is the same, one is kept.
        return Interlocked.CompareExchange(ref _workloadIndexes, built, null) ?? built;
    }

    private sealed record WorkloadIndexes(
        Dictionary<string, WorkloadInfo> ByUid,
        Dictionary<IPAddress, WorkloadInfo> ByAddress,
        Dictionary<string, WorkloadInfo[]> ByNode,
        Dictionary<string, ServiceEndpoint[]> EndpointsByServiceKey);

    public MeshOptions Options { get; }

    /// <summary>All workloads, sorted by uid (ordinal).</summary>
    public ImmutableArray<WorkloadInfo> Workloads { get; }

    /// <summary>All services, sorted by key (ordinal).</summary>
    public ImmutableArray<ServiceInfo> Services { get; }

    /// <summary>Loopback address of every declared node (empty when built from protos: nodes are not on the wire).</summary>
    public IReadOnlyDictionary<string, IPAddress> NodeAddresses { get; }

    /// <summary>Config problems found while building: the offending part was skipped or defaulted, never silently.</summary>
    public ImmutableArray<ConfigError> Problems { get; }

    public static MeshSnapshot Empty { get; } = Create([], [], MeshOptions.Default);

    /// <summary>Waypoints (Gateways of class istio-waypoint), in config order; empty when built from protos.</summary>
    public ImmutableArray<WaypointInfo> Waypoints => _gatewayApi.Waypoints;

    /// <summary>HTTPRoutes as configured, sorted by namespace/name; empty when built from protos.</summary>
    public ImmutableArray<HttpRouteResource> HttpRoutes => _gatewayApi.HttpRoutes;

    /// <summary>Routes bound to waypoints, what each waypoint is sent, and the Gateway API status of routes and waypoints.</summary>
    public WaypointRouting Routing => _routing.Value;

    public WaypointInfo? FindWaypoint(string @namespace, string name) => _waypointsByKey.GetValueOrDefault(new ObjectKey(@namespace, name));

    /// <summary>The waypoint whose Service is <paramref name="service"/> (what a GatewayAddress hostname names).</summary>
    public WaypointInfo? FindWaypointByService(NamespacedHost service) => _waypointsByService.GetValueOrDefault(service);

    /// <summary>The waypoint the pod <paramref name="namespace"/>/<paramref name="podName"/> runs, if it is a waypoint's pod.</summary>
    public WaypointInfo? FindWaypointByPod(string @namespace, string podName) =>
        _waypointsByPodUid.GetValueOrDefault(WorkloadInfo.PodUid(Options.ClusterId, @namespace, podName));

    public NamespaceResource? FindNamespace(string name) => _gatewayApi.Namespaces.GetValueOrDefault(name);

    /// <summary>ReferenceGrants as configured, sorted by namespace/name; empty when built from protos.</summary>
    public ImmutableArray<ReferenceGrantResource> ReferenceGrants => _gatewayApi.ReferenceGrants.IsDefault ? [] : _gatewayApi.ReferenceGrants;

    /// <summary>The Gateway API side as given to <see cref="Create"/>, for a snapshot derived from this one.</summary>
    internal GatewayApiConfig GatewayApi => _gatewayApi;

    /// <summary>Builds the indexes. Workloads and services are sorted here so any input order gives the same snapshot.</summary>
    public static MeshSnapshot Create(
        IEnumerable<WorkloadInfo> workloads,
        IEnumerable<ServiceInfo> services,
        MeshOptions options,
        IReadOnlyDictionary<string, IPAddress>? nodeAddresses = null,
        ImmutableArray<ConfigError> problems = default,
        GatewayApiConfig? gatewayApi = null)
    {
        var w = workloads.ToArray();
        // Builders mostly hand workloads over in uid order already (config sorted by key); checking is O(n), sorting is not.
        if (!IsSorted(w, static x => x.Uid))
        {
            Array.Sort(w, static (a, b) => string.CompareOrdinal(a.Uid, b.Uid));
        }
        var s = services.ToArray();
        if (!IsSorted(s, static x => x.Key))
        {
            Array.Sort(s, static (a, b) => string.CompareOrdinal(a.Key, b.Key));
        }
        return new MeshSnapshot(
            options,
            ImmutableCollectionsMarshal.AsImmutableArray(w),
            ImmutableCollectionsMarshal.AsImmutableArray(s),
            nodeAddresses ?? NoNodes,
            problems.IsDefault ? [] : problems,
            gatewayApi ?? GatewayApiConfig.Empty);
    }

    private static bool IsSorted<T>(T[] items, Func<T, string> key)
    {
        for (var i = 1; i < items.Length; i++)
        {
            if (string.CompareOrdinal(key(items[i - 1]), key(items[i])) > 0)
            {
                return false;
            }
        }
        return true;
    }

    /// <summary>
    /// The ztunnel side: a snapshot from received istio.workload.Address resources. Throws
    /// <see cref="InvalidDataException"/> naming the bad resource (the caller NACKs it).
    /// </summary>
    /// <param name="skipped">Receives a line for each part of a resource left out because it cannot be used here
    /// (see <see cref="ServiceInfo.FromProto"/>); the rest of that resource is kept.</param>
    public static MeshSnapshot FromProtos(IEnumerable<Address> addresses, MeshOptions? options = null, ICollection<string>? skipped = null)
    {
        options ??= MeshOptions.Default;
        var pool = new StringPool();
        var workloads = new List<WorkloadInfo>();
        var services = new List<ServiceInfo>();
        foreach (var a in addresses)
        {
            switch (a.TypeCase)
            {
                case Address.TypeOneofCase.Workload:
                    workloads.Add(WorkloadInfo.FromProto(a.Workload, pool, options.TrustDomain));
                    break;
                case Address.TypeOneofCase.Service:
                    services.Add(ServiceInfo.FromProto(a.Service, pool, options.Network, skipped));
                    break;
                default:
                    throw new InvalidDataException("Address resource carries neither a workload nor a service");
            }
        }
        var snapshot = Create(workloads, services, options);
        _ = snapshot.Indexes; // a proxy looks workloads up on every connection: index now, on the xDS thread
        return snapshot;
    }

    /// <summary>Every workload then every service as wire Address messages.</summary>
    public IEnumerable<Address> ToProtos()
    {
        foreach (var w in Workloads)
        {
            yield return new Address { Workload = w.ToProto() };
        }
        foreach (var s in Services)
        {
            yield return new Address { Service = s.ToProto() };
        }
    }

    public WorkloadInfo? FindWorkloadByUid(string uid) => Indexes.ByUid.GetValueOrDefault(uid);

    public WorkloadInfo? FindWorkloadByAddress(IPAddress address) => Indexes.ByAddress.GetValueOrDefault(Normalize(address));

    /// <summary>The Kubernetes pod <paramref name="namespace"/>/<paramref name="name"/> of this snapshot's cluster.</summary>
    public WorkloadInfo? FindPod(string @namespace, string name) => FindWorkloadByUid(WorkloadInfo.PodUid(Options.ClusterId, @namespace, name));

    /// <summary>The pod's address: its status.podIP or the stable loopback address allocated to it.</summary>
    public IPAddress? PodAddress(string @namespace, string name)
    {
        var w = FindPod(@namespace, name);
        return w is null || w.Addresses.IsEmpty ? null : w.Addresses[0];
    }

    public IPAddress? NodeAddress(string node) => NodeAddresses.GetValueOrDefault(node);

    public ImmutableArray<WorkloadInfo> WorkloadsOnNode(string node)
        => Indexes.ByNode.TryGetValue(node, out var list) ? ImmutableCollectionsMarshal.AsImmutableArray(list) : [];

    /// <summary>
    /// True when a pod of namespace/service account is scheduled on <paramref name="node"/>: the CA's check
    /// before a node proxy may obtain that identity.
    /// </summary>
    public bool HasPodOnNode(string node, string @namespace, string serviceAccount)
    {
        if (!Indexes.ByNode.TryGetValue(node, out var list))
        {
            return false;
        }
        foreach (var w in list)
        {
            if (string.Equals(w.Namespace, @namespace, StringComparison.Ordinal)
                && string.Equals(w.ServiceAccount, serviceAccount, StringComparison.Ordinal))
            {
                return true;
            }
        }
        return false;
    }

    /// <summary>By resource name <c>ns/hostname</c>.</summary>
    public ServiceInfo? FindServiceByKey(string key) => _servicesByKey.GetValueOrDefault(key);

    public ServiceInfo? FindServiceByVip(IPAddress vip) => _servicesByVip.GetValueOrDefault(Normalize(vip));

    /// <summary>
    /// Finds a service by DNS name the way a client in <paramref name="sourceNamespace"/> would resolve it:
    /// the full hostname, <c>name.ns.svc</c>, <c>name.ns</c>, or (with a source namespace) bare <c>name</c>.
    /// A trailing dot is ignored. When several namespaces export one hostname, the source namespace wins.
    /// </summary>
    public ServiceInfo? FindServiceByHostname(string hostname, string? sourceNamespace = null)
    {
        if (hostname.EndsWith('.'))
        {
            hostname = hostname[..^1];
        }
        if (hostname.Length == 0)
        {
            return null;
        }
        if (_servicesByHostname.TryGetValue(hostname, out var exact))
        {
            return Pick(exact, sourceNamespace);
        }
        var suffix = Options.DomainSuffix;
        string? full = hostname.AsSpan().Count('.') switch
        {
            0 when sourceNamespace is not null => hostname + "." + sourceNamespace + ".svc." + suffix,
            1 => hostname + ".svc." + suffix,
            2 when hostname.EndsWith(".svc", StringComparison.Ordinal) => hostname + "." + suffix,
            _ => null,
        };
        return full is not null && _servicesByHostname.TryGetValue(full, out var found) ? Pick(found, sourceNamespace) : null;
    }

    /// <summary>Every workload selected by the service, with its ports for it; empty for an unknown service.</summary>
    public ImmutableArray<ServiceEndpoint> EndpointsOf(ServiceInfo service)
        => Indexes.EndpointsByServiceKey.TryGetValue(service.Key, out var list) ? ImmutableCollectionsMarshal.AsImmutableArray(list) : [];

    /// <summary>Workloads that can serve <paramref name="servicePort"/>, each with its target port (allocates; for tooling and tests).</summary>
    public ImmutableArray<(WorkloadInfo Workload, int TargetPort)> EndpointsOf(ServiceInfo service, int servicePort)
    {
        var all = EndpointsOf(service);
        var result = ImmutableArray.CreateBuilder<(WorkloadInfo, int)>(all.Length);
        foreach (var ep in all)
        {
            if (ep.TryGetTargetPort(service, servicePort, out var target))
            {
                result.Add((ep.Workload, target));
            }
        }
        return result.DrainToImmutable();
    }

    private static ServiceInfo Pick(ServiceInfo[] candidates, string? sourceNamespace)
    {
        if (candidates.Length > 1 && sourceNamespace is not null)
        {
            foreach (var c in candidates)
            {
                if (string.Equals(c.Namespace, sourceNamespace, StringComparison.Ordinal))
                {
                    return c;
                }
            }
        }
        return candidates[0];
    }

    // An IPv4 peer accepted on a dual-stack socket shows up as ::ffff:a.b.c.d; the index holds the IPv4 form.
    private static IPAddress Normalize(IPAddress address) => address.IsIPv4MappedToIPv6 ? address.MapToIPv4() : address;
}

/// <summary>The Gateway API side of a config that a snapshot keeps for istiod: waypoints, routes, the namespaces
/// (their labels decide which namespaces a listener admits) and the ReferenceGrants (which cross-namespace backendRefs
/// are permitted).</summary>
internal sealed record GatewayApiConfig(
    ImmutableArray<WaypointInfo> Waypoints,
    ImmutableArray<HttpRouteResource> HttpRoutes,
    IReadOnlyDictionary<string, NamespaceResource> Namespaces,
    ImmutableArray<ReferenceGrantResource> ReferenceGrants = default)
{
    public static GatewayApiConfig Empty { get; } = new([], [], new Dictionary<string, NamespaceResource>());
}

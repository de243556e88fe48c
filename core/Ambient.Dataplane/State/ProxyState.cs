using System.Collections.Immutable;
using System.Net;
using Ambient.Core.Authz;
using Ambient.Core.Model;
using Authorization = Ambient.Core.Protos.Security.Authorization;
using Ambient.Core.Protos.Workload;

namespace Ambient.Dataplane.State;

/// <summary>This node's workloads in one snapshot: those in the mesh (HBONE) and those that are not.</summary>
internal sealed record LocalWorkloads(ImmutableArray<WorkloadInfo> InMesh, ImmutableArray<WorkloadInfo> NotInMesh)
{
    public static readonly LocalWorkloads Empty = new([], []);
}

/// <summary>
/// What the node proxy knows about the mesh (ztunnel's ProxyState): the current <see cref="MeshSnapshot"/>, swapped
/// whole when discovery delivers a new one, plus this node's view of it. Readers take one consistent view per
/// connection and never lock.
/// </summary>
internal sealed class ProxyState
{
    private View _view;
    private L4Authorizer _authorizer = L4Authorizer.Empty;
    private uint _roundRobin;

    public ProxyState(string nodeName, MeshSnapshot? initial = null)
    {
        ArgumentException.ThrowIfNullOrEmpty(nodeName);
        NodeName = nodeName;
        _view = new View(initial ?? MeshSnapshot.Empty, nodeName);
    }

    public string NodeName { get; }

    public MeshSnapshot Snapshot => Volatile.Read(ref _view).Snapshot;

    /// <summary>This node's workloads in the current snapshot (computed once per snapshot).</summary>
    public LocalWorkloads LocalWorkloads => Volatile.Read(ref _view).Local;

    /// <summary>Raised after every <see cref="Update"/>, on the updating thread.</summary>
    public event Action<ProxyState>? Changed;

    /// <summary>Installs a new snapshot (wire to DeltaXdsClient.SnapshotChanged).</summary>
    public void Update(MeshSnapshot snapshot)
    {
        ArgumentNullException.ThrowIfNull(snapshot);
        Interlocked.Exchange(ref _view, new View(snapshot, NodeName));
        Changed?.Invoke(this);
    }

    /// <summary>The authorization policies of the latest accepted push, compiled; swapped whole, read without a lock,
    /// so a connection accepted after an update is judged by it.</summary>
    public L4Authorizer Authorizer => Volatile.Read(ref _authorizer);

    /// <summary>Compiles and installs the pushed policies (wire to DeltaXdsClient.AuthorizationsChanged).</summary>
    public void UpdateAuthorizations(IEnumerable<Authorization> authorizations)
    {
        Volatile.Write(ref _authorizer, L4Authorizer.Build(authorizations));
    }

    public WorkloadInfo? FindWorkloadByAddress(IPAddress address) => Snapshot.FindWorkloadByAddress(address);

    /// <summary>
    /// Decides where a connection from <paramref name="source"/> to <paramref name="host"/>:<paramref name="port"/>
    /// goes. <paramref name="host"/> is an IP (service VIP, pod IP, or anything else) or a service hostname
    /// (<c>name.ns.svc.cluster.local</c>, <c>name.ns.svc</c>, <c>name.ns</c>, or bare <c>name</c> in the source's
    /// namespace). An IP outside the mesh is passed through as plain TCP, as Istio does. A service or workload with a
    /// waypoint is reached through the waypoint (unless the source is that waypoint), as Istio's ztunnel does.
    /// </summary>
    public DestinationResult ResolveDestination(WorkloadInfo? source, string host, int port)
    {
        ArgumentNullException.ThrowIfNull(host);
        if (port is <= 0 or > 65535)
        {
            return DestinationResult.Fail(ResolveFailure.PortNotExposed, $"port {port} is out of range 1-65535");
        }
        var snapshot = Snapshot;
        var trimmed = host.Length > 2 && host[0] == '[' && host[^1] == ']' ? host[1..^1] : host;
        if (IPAddress.TryParse(trimmed, out var ip))
        {
            return ResolveAddress(snapshot, source, ip, port);
        }
        var service = snapshot.FindServiceByHostname(host, source?.Namespace);
        if (service is null)
        {
            return DestinationResult.Fail(ResolveFailure.UnknownHost,
                $"host '{host}' is not a service of the mesh" + (source is null ? "" : $" (looked up from namespace '{source.Namespace}')"));
        }
        return ResolveService(snapshot, source, service, vip: null, port);
    }

    /// <summary>As <see cref="ResolveDestination(WorkloadInfo?, string, int)"/> for an address (the captured original destination).</summary>
    public DestinationResult ResolveDestination(WorkloadInfo? source, IPAddress address, int port)
    {
        ArgumentNullException.ThrowIfNull(address);
        if (port is <= 0 or > 65535)
        {
            return DestinationResult.Fail(ResolveFailure.PortNotExposed, $"port {port} is out of range 1-65535");
        }
        return ResolveAddress(Snapshot, source, address, port);
    }

    private DestinationResult ResolveAddress(MeshSnapshot snapshot, WorkloadInfo? source, IPAddress ip, int port)
    {
        if (ip.IsIPv4MappedToIPv6)
        {
            ip = ip.MapToIPv4();
        }
        if (snapshot.FindServiceByVip(ip) is { } service)
        {
            return ResolveService(snapshot, source, service, ip, port);
        }
        if (snapshot.FindWorkloadByAddress(ip) is { } workload)
        {
            // A pod addressed directly: any port, no service; health does not matter (the caller chose this pod).
            var target = new IPEndPoint(ip, port);
            if (workload.Waypoint is { } waypoint
                && ViaGateway(snapshot, source, RouteKind.Waypoint, waypoint, target, port, FormatAuthority(target), service: null) is { } viaWaypoint)
            {
                return viaWaypoint;
            }
            return ToWorkload(snapshot, source, workload, target, service: null);
        }
        return DestinationResult.Ok(ResolvedDestination.Plain(null, new IPEndPoint(ip, port), service: null));
    }

    /// <param name="vip">The VIP the app connected to; null when it named the service by hostname.</param>
    private DestinationResult ResolveService(MeshSnapshot snapshot, WorkloadInfo? source, ServiceInfo service, IPAddress? vip, int port)
    {
        if (!service.TryGetPort(port, out _))
        {
            return DestinationResult.Fail(ResolveFailure.PortNotExposed, $"service {service.Hostname} does not expose port {port}");
        }
        if (service.Waypoint is { } waypoint)
        {
            // The waypoint gets the original target and picks the endpoint itself. A service named by hostname is
            // named to the waypoint by its first VIP, or by hostname:port when it has none.
            vip ??= service.Vips.IsEmpty ? null : service.Vips[0];
            var original = vip is null ? null : new IPEndPoint(vip, port);
            if (ViaGateway(snapshot, source, RouteKind.Waypoint, waypoint, original, port,
                original is null ? $"{service.Hostname}:{port}" : FormatAuthority(original), service) is { } viaWaypoint)
            {
                return viaWaypoint;
            }
        }
        var pick = PickEndpoint(snapshot, service, port, out var targetPort, out var failure, out var error);
        return pick is null
            ? DestinationResult.Fail(failure, error!)
            : ToWorkload(snapshot, source, pick, new IPEndPoint(pick.Addresses[0], targetPort), service);
    }

    /// <summary>A healthy endpoint of <paramref name="service"/> that serves <paramref name="port"/>, round robin.</summary>
    private WorkloadInfo? PickEndpoint(MeshSnapshot snapshot, ServiceInfo service, int port, out int targetPort, out ResolveFailure failure, out string? error)
    {
        targetPort = 0;
        failure = ResolveFailure.None;
        error = null;
        var endpoints = snapshot.EndpointsOf(service);
        // Two passes without allocating: count the candidates, then pick the n-th (round robin over healthy ones).
        var healthy = 0;
        var servable = 0;
        foreach (var ep in endpoints)
        {
            if (CanServe(ep, service, port, out _))
            {
                servable++;
                if (ep.Workload.Status == WorkloadStatus.Healthy)
                {
                    healthy++;
                }
            }
        }
        if (healthy == 0)
        {
            if (servable == 0 && endpoints.Length > 0)
            {
                failure = ResolveFailure.PortNotExposed;
                error = $"no endpoint of service {service.Hostname} declares the target port of port {port}";
            }
            else
            {
                failure = ResolveFailure.NoHealthyEndpoint;
                error = $"service {service.Hostname} has no healthy endpoint ({endpoints.Length} endpoints, {servable} can serve port {port})";
            }
            return null;
        }
        var pick = (int)(Interlocked.Increment(ref _roundRobin) % (uint)healthy);
        foreach (var ep in endpoints)
        {
            if (ep.Workload.Status == WorkloadStatus.Healthy && CanServe(ep, service, port, out targetPort) && pick-- == 0)
            {
                return ep.Workload;
            }
        }
        throw new InvalidOperationException("unreachable: the healthy endpoint count changed within one snapshot");
    }

    private static bool CanServe(ServiceEndpoint ep, ServiceInfo service, int port, out int targetPort)
    {
        targetPort = 0;
        return !ep.Workload.Addresses.IsEmpty && ep.TryGetTargetPort(service, port, out targetPort);
    }

    private DestinationResult ToWorkload(MeshSnapshot snapshot, WorkloadInfo? source, WorkloadInfo workload, IPEndPoint target, ServiceInfo? service)
    {
        if (!workload.IsInMesh)
        {
            return DestinationResult.Ok(ResolvedDestination.Plain(workload, target, service));
        }
        // A pod on another network is not routable from here: its network's gateway takes the tunnel.
        if (workload.NetworkGateway is { } gateway && source is not null && workload.Network.Length > 0
            && source.Network.Length > 0 && workload.Network != source.Network)
        {
            return ViaGateway(snapshot, source, RouteKind.NetworkGateway, gateway, target, target.Port, FormatAuthority(target), service)
                ?? DestinationResult.Ok(ResolvedDestination.Direct(workload, target, service));
        }
        return DestinationResult.Ok(ResolvedDestination.Direct(workload, target, service));
    }

    /// <summary>
    /// HBONE to a waypoint or network gateway (<see cref="GatewayInfo"/>: a service, of which one healthy endpoint is
    /// picked, or an address, which must be a workload of the mesh so its identity is known) with
    /// <paramref name="authority"/>. Null when <paramref name="source"/> is that gateway itself: its own traffic must
    /// not loop back into it, so the caller routes it as if there were no gateway.
    /// </summary>
    /// <param name="target">The original target; null for a service named by hostname that has no VIP.</param>
    /// <param name="port">The original port (the target's, or the one asked of the VIP-less service).</param>
    private DestinationResult? ViaGateway(MeshSnapshot snapshot, WorkloadInfo? source, RouteKind route, GatewayInfo gateway,
        IPEndPoint? target, int port, string authority, ServiceInfo? service)
    {
        WorkloadInfo? via = null;
        if (gateway.Host is { } host)
        {
            if (snapshot.FindServiceByKey(host.ToString()) is not { } gatewayService)
            {
                return DestinationResult.Fail(ResolveFailure.NoHealthyEndpoint, $"{Describe(route)} {gateway.Destination} is not a service of the mesh");
            }
            foreach (var ep in snapshot.EndpointsOf(gatewayService))
            {
                if (source is not null && ep.Workload.Uid == source.Uid)
                {
                    return null;
                }
            }
            via = PickEndpoint(snapshot, gatewayService, gateway.HboneMtlsPort, out _, out _, out _) ?? FirstHealthy(snapshot, gatewayService);
            if (via is null)
            {
                return DestinationResult.Fail(ResolveFailure.NoHealthyEndpoint, $"{Describe(route)} {gateway.Destination} has no healthy endpoint");
            }
        }
        else
        {
            via = snapshot.FindWorkloadByAddress(gateway.Address!);
            if (via is null)
            {
                return DestinationResult.Fail(ResolveFailure.NoHealthyEndpoint, $"{Describe(route)} {gateway.Destination} is not a workload of the mesh");
            }
            if (source is not null && via.Uid == source.Uid)
            {
                return null;
            }
        }
        var address = gateway.Address ?? via.Addresses[0];
        var tunnel = new IPEndPoint(address, gateway.HboneMtlsPort);
        return DestinationResult.Ok(new ResolvedDestination(route, via, target ?? new IPEndPoint(IPAddress.None, port), tunnel, via.Identity, service)
        {
            Authority = authority,
        });
    }

    /// <summary>A waypoint service's ports need not list the HBONE port: any healthy endpoint with an address will do.</summary>
    private static WorkloadInfo? FirstHealthy(MeshSnapshot snapshot, ServiceInfo service)
    {
        foreach (var ep in snapshot.EndpointsOf(service))
        {
            if (ep.Workload.Status == WorkloadStatus.Healthy && !ep.Workload.Addresses.IsEmpty)
            {
                return ep.Workload;
            }
        }
        return null;
    }

    private static string Describe(RouteKind route) => route == RouteKind.Waypoint ? "waypoint" : "network gateway";

    private static string FormatAuthority(IPEndPoint target) => ResolvedDestination.FormatAuthority(target);

    /// <summary>One snapshot and what this node derives from it, replaced together.</summary>
    private sealed class View
    {
        public View(MeshSnapshot snapshot, string node)
        {
            Snapshot = snapshot;
            var onNode = snapshot.WorkloadsOnNode(node);
            if (onNode.IsEmpty)
            {
                Local = LocalWorkloads.Empty;
                return;
            }
            var inMesh = ImmutableArray.CreateBuilder<WorkloadInfo>();
            var notInMesh = ImmutableArray.CreateBuilder<WorkloadInfo>();
            foreach (var w in onNode)
            {
                (w.IsInMesh ? inMesh : notInMesh).Add(w);
            }
            Local = new LocalWorkloads(inMesh.ToImmutable(), notInMesh.ToImmutable());
        }

        public MeshSnapshot Snapshot { get; }
        public LocalWorkloads Local { get; }
    }
}

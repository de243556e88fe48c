using System.Collections.Immutable;
using System.Net;
using Ambient.Core.Model;
using Ambient.Core.Protos.Workload;

namespace Ambient.Ztunnel.State;

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

    public WorkloadInfo? FindWorkloadByAddress(IPAddress address) => Snapshot.FindWorkloadByAddress(address);

    /// <summary>
    /// Decides where a connection from <paramref name="source"/> to <paramref name="host"/>:<paramref name="port"/>
    /// goes. <paramref name="host"/> is an IP (service VIP, pod IP, or anything else) or a service hostname
    /// (<c>name.ns.svc.cluster.local</c>, <c>name.ns.svc</c>, <c>name.ns</c>, or bare <c>name</c> in the source's
    /// namespace). An IP outside the mesh is passed through as plain TCP, as Istio does.
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
            return ResolveAddress(snapshot, ip, port);
        }
        var service = snapshot.FindServiceByHostname(host, source?.Namespace);
        if (service is null)
        {
            return DestinationResult.Fail(ResolveFailure.UnknownHost,
                $"host '{host}' is not a service of the mesh" + (source is null ? "" : $" (looked up from namespace '{source.Namespace}')"));
        }
        return ResolveService(snapshot, service, port);
    }

    /// <summary>As <see cref="ResolveDestination(WorkloadInfo?, string, int)"/> for an address (the captured original destination).</summary>
    public DestinationResult ResolveDestination(WorkloadInfo? source, IPAddress address, int port)
    {
        _ = source;
        ArgumentNullException.ThrowIfNull(address);
        if (port is <= 0 or > 65535)
        {
            return DestinationResult.Fail(ResolveFailure.PortNotExposed, $"port {port} is out of range 1-65535");
        }
        return ResolveAddress(Snapshot, address, port);
    }

    private DestinationResult ResolveAddress(MeshSnapshot snapshot, IPAddress ip, int port)
    {
        if (ip.IsIPv4MappedToIPv6)
        {
            ip = ip.MapToIPv4();
        }
        if (snapshot.FindServiceByVip(ip) is { } service)
        {
            return ResolveService(snapshot, service, port);
        }
        if (snapshot.FindWorkloadByAddress(ip) is { } workload)
        {
            // A pod addressed directly: any port, no service; health does not matter (the caller chose this pod).
            return DestinationResult.Ok(ToWorkload(workload, ip, port, service: null));
        }
        return DestinationResult.Ok(new ResolvedDestination(null, new IPEndPoint(ip, port), UseHbone: false, ExpectedIdentity: null, Service: null));
    }

    private DestinationResult ResolveService(MeshSnapshot snapshot, ServiceInfo service, int port)
    {
        if (!service.TryGetPort(port, out _))
        {
            return DestinationResult.Fail(ResolveFailure.PortNotExposed, $"service {service.Hostname} does not expose port {port}");
        }
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
            return servable == 0 && endpoints.Length > 0
                ? DestinationResult.Fail(ResolveFailure.PortNotExposed,
                    $"no endpoint of service {service.Hostname} declares the target port of port {port}")
                : DestinationResult.Fail(ResolveFailure.NoHealthyEndpoint,
                    $"service {service.Hostname} has no healthy endpoint ({endpoints.Length} endpoints, {servable} can serve port {port})");
        }
        var pick = (int)(Interlocked.Increment(ref _roundRobin) % (uint)healthy);
        foreach (var ep in endpoints)
        {
            if (ep.Workload.Status == WorkloadStatus.Healthy && CanServe(ep, service, port, out var targetPort) && pick-- == 0)
            {
                return DestinationResult.Ok(ToWorkload(ep.Workload, ep.Workload.Addresses[0], targetPort, service));
            }
        }
        throw new InvalidOperationException("unreachable: the healthy endpoint count changed within one snapshot");
    }

    private static bool CanServe(ServiceEndpoint ep, ServiceInfo service, int port, out int targetPort)
    {
        targetPort = 0;
        return !ep.Workload.Addresses.IsEmpty && ep.TryGetTargetPort(service, port, out targetPort);
    }

    private static ResolvedDestination ToWorkload(WorkloadInfo workload, IPAddress ip, int port, ServiceInfo? service)
    {
        var hbone = workload.IsInMesh;
        return new ResolvedDestination(workload, new IPEndPoint(ip, port), hbone, hbone ? workload.Identity : null, service);
    }

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

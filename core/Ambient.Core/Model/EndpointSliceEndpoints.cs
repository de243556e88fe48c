using System.Collections.Immutable;
using System.Net;
using System.Net.Sockets;
using Ambient.Core.Config;
using Ambient.Core.Protos.Workload;

namespace Ambient.Core.Model;

/// <summary>
/// The endpoints of Services without a selector, read from their EndpointSlices as istiod's ambient index does
/// (pilot/pkg/serviceregistry/kube/controller/ambient/workloads.go): an endpoint naming a Pod (<c>targetRef</c>) makes
/// that pod's workload an endpoint of the Service; any other endpoint becomes a workload of its own, named after the slice,
/// outside the mesh, healthy unless <c>conditions.ready</c> is false. Slices of Services with a selector are left to pod
/// selection (Kubernetes writes exactly the selected pods into them), and slices naming no Service, of address type FQDN,
/// or of an unknown Service are ignored.
/// </summary>
/// <remarks>
/// One difference: an endpoint without a targetRef whose address is a known pod's address counts as that pod, where
/// Istio would publish a second workload with the pod's address (marked host-network, a field this model does not
/// carry). One workload per address keeps every address lookup unambiguous.
/// The result is applied after the per-pod <see cref="MeshBuildCache"/> (memberships are added to the cached workload in
/// each build), so a changed slice can never leave a stale workload behind.
/// </remarks>
internal sealed class EndpointSliceEndpoints
{
    private const string EndpointSliceUidInfix = "/discovery.k8s.io/EndpointSlice/";

    private readonly Dictionary<ObjectKey, List<WorkloadServicePorts>> _byPod = [];

    public static EndpointSliceEndpoints Empty { get; } = new();

    /// <summary>Workloads for endpoints that are no pod.</summary>
    public List<WorkloadInfo> Workloads { get; } = [];

    /// <param name="selectorless">The Services without a selector, by (namespace, name).</param>
    /// <param name="pods">Every pod of the build, for endpoints naming a pod or a pod's address.</param>
    public static EndpointSliceEndpoints Build(
        List<EndpointSliceResource> slices, Dictionary<ObjectKey, ServiceInfo>? selectorless, List<PodResource> pods,
        LoopbackAssignment assignment, MeshOptions options, StringPool pool, List<ConfigError> problems)
    {
        if (slices.Count == 0 || selectorless is null)
        {
            return Empty;
        }
        var result = new EndpointSliceEndpoints();
        HashSet<ObjectKey>? podKeys = null;
        Dictionary<IPAddress, ObjectKey>? podsByAddress = null;
        var seen = new HashSet<string>(StringComparer.Ordinal);
        foreach (var slice in slices)
        {
            var ns = slice.Metadata.Namespace;
            if (slice.ServiceName is not { } serviceName || string.Equals(slice.AddressType, "FQDN", StringComparison.Ordinal)
                || !selectorless.TryGetValue(new ObjectKey(ns, serviceName), out var service))
            {
                continue;
            }
            podKeys ??= PodKeys(pods);
            podsByAddress ??= PodsByAddress(pods, assignment);
            var ports = PortsOf(slice, service);
            seen.Clear();
            foreach (var endpoint in slice.Endpoints)
            {
                if (endpoint.TargetPod is { } target)
                {
                    // Istio builds the pod's workload from the pod; a slice naming a pod that is gone adds nothing.
                    var key = new ObjectKey(target.Namespace, target.Name);
                    if (podKeys.Contains(key))
                    {
                        result.AddMembership(key, service.Key, ports);
                    }
                    continue;
                }
                if (endpoint.Addresses.IsDefaultOrEmpty || !TryParseAll(endpoint.Addresses, out var addresses))
                {
                    problems.Add(new ConfigError(slice.Source, "endpoints[].addresses",
                        $"endpoint [{string.Join(", ", endpoint.Addresses.IsDefault ? [] : endpoint.Addresses)}] has an address that is not an IP; it is left out"));
                    continue;
                }
                if (podsByAddress.TryGetValue(addresses[0], out var pod))
                {
                    result.AddMembership(pod, service.Key, ports);
                    continue;
                }
                // Istio keys the workload by the slice and the endpoint's first address.
                if (!seen.Add(endpoint.Addresses[0]))
                {
                    continue;
                }
                var name = pool.Get(slice.Metadata.Name);
                var nsName = pool.Get(ns);
                result.Workloads.Add(new WorkloadInfo(options.ClusterId + EndpointSliceUidInfix + nsName + "/" + name + "/" + endpoint.Addresses[0],
                    nsName, pool.Get(options.TrustDomain), "default", pool)
                {
                    Name = name,
                    Addresses = addresses,
                    Network = pool.Get(options.Network),
                    // Nothing says it runs a ztunnel: traffic to it leaves the mesh as plain TCP.
                    TunnelProtocol = TunnelProtocol.None,
                    CanonicalName = service.Name,
                    WorkloadType = WorkloadType.Pod,
                    WorkloadName = name,
                    Status = endpoint.Ready ? WorkloadStatus.Healthy : WorkloadStatus.Unhealthy,
                    ClusterId = pool.Get(options.ClusterId),
                    Services = [new WorkloadServicePorts(service.Key, ports)],
                });
            }
        }
        return result;
    }

    /// <summary>The pod's workload with the Services whose slices name it added (Workload.services stays sorted by key).</summary>
    public WorkloadInfo AddTo(WorkloadInfo workload, string @namespace, string name)
    {
        if (_byPod.Count == 0 || !_byPod.TryGetValue(new ObjectKey(@namespace, name), out var extra))
        {
            return workload;
        }
        var services = ImmutableArray.CreateBuilder<WorkloadServicePorts>(workload.Services.Length + extra.Count);
        services.AddRange(workload.Services);
        foreach (var entry in extra)
        {
            // A Service with a selector never gets here (its slices are ignored), so a key is never both.
            if (!HasService(workload, entry.ServiceKey))
            {
                services.Add(entry);
            }
        }
        services.Sort(static (a, b) => string.CompareOrdinal(a.ServiceKey, b.ServiceKey));
        return workload with { Services = services.DrainToImmutable() };
    }

    private static bool HasService(WorkloadInfo workload, string serviceKey)
    {
        foreach (var s in workload.Services)
        {
            if (s.ServiceKey == serviceKey)
            {
                return true;
            }
        }
        return false;
    }

    private void AddMembership(ObjectKey pod, string serviceKey, ImmutableArray<PortMapping> ports)
    {
        if (!_byPod.TryGetValue(pod, out var list))
        {
            _byPod.Add(pod, list = new List<WorkloadServicePorts>(1));
        }
        for (var i = 0; i < list.Count; i++)
        {
            if (list[i].ServiceKey == serviceKey)
            {
                // A dual-stack Service has a slice per family, both naming the pod: one entry with the ports of both.
                list[i] = new WorkloadServicePorts(serviceKey, Union(list[i].Ports, ports));
                return;
            }
        }
        list.Add(new WorkloadServicePorts(serviceKey, ports));
    }

    private static ImmutableArray<PortMapping> Union(ImmutableArray<PortMapping> a, ImmutableArray<PortMapping> b)
    {
        var all = ImmutableArray.CreateBuilder<PortMapping>(a.Length + b.Length);
        all.AddRange(a);
        foreach (var p in b)
        {
            if (!all.Contains(p))
            {
                all.Add(p);
            }
        }
        return all.DrainToImmutable();
    }

    /// <summary>
    /// The slice's ports as the Service's: a slice port carries the Service port's name and the endpoints' port number,
    /// so each is joined to the Service port of that name. Only TCP, as Istio.
    /// </summary>
    private static ImmutableArray<PortMapping> PortsOf(EndpointSliceResource slice, ServiceInfo service)
    {
        var ports = ImmutableArray.CreateBuilder<PortMapping>(slice.Ports.Length);
        foreach (var p in slice.Ports)
        {
            if (!string.Equals(p.Protocol, "TCP", StringComparison.Ordinal))
            {
                continue;
            }
            foreach (var sp in service.Ports)
            {
                if (string.Equals(sp.Name ?? "", p.Name ?? "", StringComparison.Ordinal))
                {
                    ports.Add(new PortMapping(sp.Port, p.Port, sp.AppProtocol));
                    break;
                }
            }
        }
        return ports.DrainToImmutable();
    }

    private static HashSet<ObjectKey> PodKeys(List<PodResource> pods)
    {
        var keys = new HashSet<ObjectKey>(pods.Count);
        foreach (var p in pods)
        {
            keys.Add(new ObjectKey(p.Metadata.Namespace, p.Metadata.Name));
        }
        return keys;
    }

    private static Dictionary<IPAddress, ObjectKey> PodsByAddress(List<PodResource> pods, LoopbackAssignment assignment)
    {
        var byAddress = new Dictionary<IPAddress, ObjectKey>(pods.Count);
        foreach (var p in pods)
        {
            var key = new ObjectKey(p.Metadata.Namespace, p.Metadata.Name);
            if (assignment.PodAddress(key.Namespace, key.Name) is { } address)
            {
                byAddress.TryAdd(address, key);
            }
            foreach (var text in p.SecondaryPodIPs)
            {
                if (IPAddress.TryParse(text, out var secondary))
                {
                    byAddress.TryAdd(secondary, key);
                }
            }
        }
        return byAddress;
    }

    private static bool TryParseAll(ImmutableArray<string> texts, out ImmutableArray<IPAddress> addresses)
    {
        var parsed = new IPAddress[texts.Length];
        for (var i = 0; i < texts.Length; i++)
        {
            if (!IPAddress.TryParse(texts[i], out var ip) || texts[i].Contains('/')
                || (ip.AddressFamily == AddressFamily.InterNetwork && ip.ToString() != texts[i]))
            {
                addresses = default;
                return false;
            }
            parsed[i] = ip;
        }
        addresses = [.. parsed];
        return true;
    }
}

/// <summary>Dual-stack pods and Services: Istio publishes every address Kubernetes lists (status.podIPs, spec.clusterIPs).</summary>
internal static class DualStackAddresses
{
    /// <summary><paramref name="first"/> followed by the parsed <paramref name="secondary"/> addresses (a dual-stack pod or
    /// Service), in the order Kubernetes lists them; text that is no IP address is skipped (the source reported it).</summary>
    internal static ImmutableArray<IPAddress> WithSecondary(IPAddress first, ImmutableArray<string> secondary)
    {
        if (secondary.IsDefaultOrEmpty)
        {
            return [first];
        }
        var all = ImmutableArray.CreateBuilder<IPAddress>(1 + secondary.Length);
        all.Add(first);
        foreach (var text in secondary)
        {
            if (IPAddress.TryParse(text, out var ip) && !all.Contains(ip))
            {
                all.Add(ip);
            }
        }
        return all.DrainToImmutable();
    }
}

using System.Collections.Immutable;
using System.Net;
using System.Runtime.InteropServices;
using Ambient.Core.Config;
using Ambient.Core.Protos.Workload;

namespace Ambient.Core.Model;

/// <summary>
/// Turns config resources into a <see cref="MeshSnapshot"/> the way istiod's ambient index does for Kubernetes:
/// enrollment by the istio.io/dataplane-mode labels, uid/canonical names as Istio derives them, service
/// endpoints by label selector with named target ports resolved per pod. A pure function of its input, so
/// equal config gives an equal snapshot (and equal xDS versions) across rebuilds and restarts.
/// </summary>
internal static class MeshBuilder
{
    public static MeshSnapshot Build(IReadOnlyList<Resource> resources, MeshOptions? options = null)
    {
        options ??= MeshOptions.Default;
        var problems = new List<ConfigError>();
        var assignment = LoopbackAddressAllocator.AssignAll(resources);
        problems.AddRange(assignment.Problems);
        // Config records carry their own copy of every namespace/node/service-account string; pooling them keeps
        // one instance per distinct value in the snapshot.
        var pool = new StringPool(256);

        var namespaces = new Dictionary<string, NamespaceResource>(StringComparer.Ordinal);
        var pods = new List<PodResource>(resources.Count);
        var services = new List<ServiceResource>();
        var firstSeen = new Dictionary<(string Kind, string Namespace, string Name), SourceLocation>(resources.Count);
        foreach (var r in resources)
        {
            if (r is not (NamespaceResource or PodResource or ServiceResource))
            {
                continue;
            }
            var key = (r.Kind, r.Metadata.Namespace, r.Metadata.Name);
            if (!firstSeen.TryAdd(key, r.Source))
            {
                problems.Add(new ConfigError(r.Source, "metadata.name",
                    $"duplicate {r.Kind} '{QualifiedName(r)}' (first defined at {firstSeen[key]}); this definition is ignored"));
                continue;
            }
            switch (r)
            {
                case NamespaceResource ns:
                    namespaces.Add(ns.Metadata.Name, ns);
                    break;
                case PodResource pod:
                    pods.Add(pod);
                    break;
                case ServiceResource svc:
                    services.Add(svc);
                    break;
            }
        }

        var serviceInfos = new List<ServiceInfo>(services.Count);
        var matchersByNamespace = new Dictionary<string, List<ServiceMatcher>>(StringComparer.Ordinal);
        foreach (var svc in services)
        {
            if (LoopbackAddressAllocator.IsExternalName(svc))
            {
                problems.Add(new ConfigError(svc.Source, "spec.type", $"ExternalName service '{QualifiedName(svc)}' is not supported; ignored"));
                continue;
            }
            var info = BuildService(svc, options, assignment, pool);
            serviceInfos.Add(info);
            if (svc.Selector.Count == 0)
            {
                continue; // Kubernetes: an empty selector selects nothing (endpoints are managed by hand).
            }
            if (!matchersByNamespace.TryGetValue(info.Namespace, out var list))
            {
                matchersByNamespace.Add(info.Namespace, list = []);
            }
            list.Add(new ServiceMatcher(info));
        }
        foreach (var list in matchersByNamespace.Values)
        {
            // Workload.services is serialized in this order: keep it sorted for deterministic bytes.
            list.Sort(static (a, b) => string.CompareOrdinal(a.Service.Key, b.Service.Key));
        }

        var workloads = new List<WorkloadInfo>(pods.Count);
        foreach (var pod in pods)
        {
            var ns = pool.Get(pod.Metadata.Namespace);
            matchersByNamespace.TryGetValue(ns, out var matchers);
            workloads.Add(BuildWorkload(pod, ns, namespaces.GetValueOrDefault(ns), matchers, options, assignment, pool));
        }

        return MeshSnapshot.Create(workloads, serviceInfos, options, assignment.Nodes, [.. problems]);
    }

    /// <summary>
    /// Istio's rule: the pod label wins (<c>none</c> opts out, <c>ambient</c> opts in even in an unlabelled
    /// namespace); without it the namespace label decides. A pod whose Namespace resource is missing is treated as
    /// being in an unlabelled namespace.
    /// </summary>
    public static bool IsEnrolled(PodResource pod, NamespaceResource? ns)
    {
        var podMode = pod.Metadata.Label(MeshLabels.DataplaneMode);
        if (podMode == MeshLabels.DataplaneModeNone)
        {
            return false;
        }
        if (podMode == MeshLabels.DataplaneModeAmbient)
        {
            return true;
        }
        return ns?.Metadata.Label(MeshLabels.DataplaneMode) == MeshLabels.DataplaneModeAmbient;
    }

    private static ServiceInfo BuildService(ServiceResource svc, MeshOptions options, LoopbackAssignment assignment, StringPool pool)
    {
        var ns = pool.Get(svc.Metadata.Namespace);
        var name = svc.Metadata.Name;
        var vip = assignment.ServiceVip(ns, name);
        var ports = ImmutableArray.CreateBuilder<ServicePortInfo>(svc.Ports.Length);
        foreach (var p in svc.Ports)
        {
            // Kubernetes defaults an absent targetPort to the port itself; a named one is resolved per pod.
            var target = p.TargetPort.IsNamed ? 0 : p.TargetPort.Number == 0 ? p.Port : p.TargetPort.Number;
            ports.Add(new ServicePortInfo(p.Port, target, AppProtocols.Parse(p.AppProtocol), p.Name, p.TargetPort.Name));
        }
        return new ServiceInfo(name, ns, ServiceInfo.KubernetesHostname(name, ns, options.DomainSuffix))
        {
            Network = pool.Get(options.Network),
            Vips = vip is null ? [] : [vip],
            Ports = ports.MoveToImmutable(),
            Labels = svc.Metadata.Labels,
            Selector = svc.Selector,
        };
    }

    private static WorkloadInfo BuildWorkload(
        PodResource pod, string ns, NamespaceResource? nsResource, List<ServiceMatcher>? matchers,
        MeshOptions options, LoopbackAssignment assignment, StringPool pool)
    {
        var meta = pod.Metadata;
        var name = meta.Name;
        var address = assignment.PodAddress(ns, name);
        var containerPorts = ContainerPortsOf(pod);

        var services = ImmutableArray<WorkloadServicePorts>.Empty;
        if (matchers is not null)
        {
            // Most pods match zero or one service: count first, then fill an exact-size array.
            var count = 0;
            foreach (var m in matchers)
            {
                count += m.Selects(meta.Labels) ? 1 : 0;
            }
            if (count > 0)
            {
                var matched = new WorkloadServicePorts[count];
                var i = 0;
                foreach (var m in matchers)
                {
                    if (m.Selects(meta.Labels))
                    {
                        matched[i++] = new WorkloadServicePorts(m.Service.Key, m.PortsFor(containerPorts));
                    }
                }
                services = ImmutableCollectionsMarshal.AsImmutableArray(matched);
            }
        }

        var serviceAccount = pool.Get(string.IsNullOrEmpty(pod.ServiceAccountName) ? "default" : pod.ServiceAccountName);
        return new WorkloadInfo(WorkloadInfo.PodUid(options.ClusterId, ns, name), ns, pool.Get(options.TrustDomain), serviceAccount, pool)
        {
            Name = name,
            Addresses = address is null ? [] : [address],
            Network = pool.Get(options.Network),
            TunnelProtocol = IsEnrolled(pod, nsResource) ? TunnelProtocol.Hbone : TunnelProtocol.None,
            Node = pool.Get(pod.NodeName ?? ""),
            CanonicalName = meta.Label(MeshLabels.CanonicalName) ?? meta.Label(MeshLabels.AppKubernetesName) ?? meta.Label(MeshLabels.App) ?? name,
            CanonicalRevision = meta.Label(MeshLabels.CanonicalRevision) ?? meta.Label(MeshLabels.AppKubernetesVersion)
                ?? meta.Label(MeshLabels.Version) ?? MeshLabels.DefaultRevision,
            WorkloadType = WorkloadType.Pod,
            // A bare pod has no owning Deployment: Istio then reports the pod name as the workload name.
            WorkloadName = name,
            Status = WorkloadStatus.Healthy,
            ClusterId = pool.Get(options.ClusterId),
            Services = services,
            Labels = meta.Labels,
            ContainerPorts = containerPorts,
        };
    }

    private static ImmutableArray<ContainerPort> ContainerPortsOf(PodResource pod)
    {
        if (pod.Containers.IsDefaultOrEmpty)
        {
            return [];
        }
        if (pod.Containers.Length == 1)
        {
            var only = pod.Containers[0].Ports;
            return only.IsDefault ? [] : only; // shared with the config record, no copy
        }
        var all = ImmutableArray.CreateBuilder<ContainerPort>();
        foreach (var c in pod.Containers)
        {
            if (!c.Ports.IsDefault)
            {
                all.AddRange(c.Ports);
            }
        }
        return all.DrainToImmutable();
    }

    private static string QualifiedName(Resource r) => r is NamespaceResource ? r.Metadata.Name : r.Metadata.Namespace + "/" + r.Metadata.Name;

    /// <summary>A service's selector and port mapping, prepared once per build and applied to every pod of its namespace.</summary>
    private sealed class ServiceMatcher
    {
        private readonly KeyValuePair<string, string>[] _selector;
        // When no target port is named every endpoint maps ports identically: share one array.
        private readonly ImmutableArray<PortMapping> _sharedPorts;

        public ServiceMatcher(ServiceInfo service)
        {
            Service = service;
            _selector = [.. service.Selector];
            var named = false;
            var ports = ImmutableArray.CreateBuilder<PortMapping>(service.Ports.Length);
            foreach (var p in service.Ports)
            {
                named |= p.TargetPortName is not null;
                ports.Add(new PortMapping(p.Port, p.TargetPort, p.AppProtocol));
            }
            _sharedPorts = named ? default : ports.MoveToImmutable();
        }

        public ServiceInfo Service { get; }

        public bool Selects(ImmutableSortedDictionary<string, string> labels)
        {
            foreach (var (key, value) in _selector)
            {
                if (!labels.TryGetValue(key, out var actual) || !string.Equals(actual, value, StringComparison.Ordinal))
                {
                    return false;
                }
            }
            return true;
        }

        /// <summary>
        /// The service's ports for one pod. A named target port the pod does not declare is left out (Istio:
        /// "port not present for this workload"), so the pod is no endpoint for that port.
        /// </summary>
        public ImmutableArray<PortMapping> PortsFor(ImmutableArray<ContainerPort> containerPorts)
        {
            if (!_sharedPorts.IsDefault)
            {
                return _sharedPorts;
            }
            Span<PortMapping> scratch = stackalloc PortMapping[Math.Min(Service.Ports.Length, 64)];
            var result = Service.Ports.Length <= 64 ? scratch : new PortMapping[Service.Ports.Length];
            var n = 0;
            foreach (var p in Service.Ports)
            {
                if (p.TargetPortName is null)
                {
                    result[n++] = new PortMapping(p.Port, p.TargetPort, p.AppProtocol);
                }
                else if (TryResolve(containerPorts, p.TargetPortName, out var number))
                {
                    result[n++] = new PortMapping(p.Port, number, p.AppProtocol);
                }
            }
            return ImmutableCollectionsMarshal.AsImmutableArray(result[..n].ToArray());
        }

        private static bool TryResolve(ImmutableArray<ContainerPort> ports, string name, out int number)
        {
            foreach (var cp in ports)
            {
                if (string.Equals(cp.Name, name, StringComparison.Ordinal))
                {
                    number = cp.Port;
                    return true;
                }
            }
            number = 0;
            return false;
        }
    }
}

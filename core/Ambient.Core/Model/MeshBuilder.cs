using System.Collections.Immutable;
using System.Net;
using System.Runtime.InteropServices;
using Ambient.Core.Config;
using Ambient.Core.Protos.Workload;
using Ambient.Core.Telemetry;

namespace Ambient.Core.Model;

/// <summary>
/// Turns config resources into a <see cref="MeshSnapshot"/> the way istiod's ambient index does for Kubernetes:
/// enrollment by the istio.io/dataplane-mode labels, uid/canonical names as Istio derives them, service
/// endpoints by label selector with named target ports resolved per pod. A pure function of its input, so
/// equal config gives an equal snapshot (and equal xDS versions) across rebuilds and restarts.
/// </summary>
internal static class MeshBuilder
{
    public static MeshSnapshot Build(IReadOnlyList<Resource> resources, MeshOptions? options = null) => Build(resources, options, cache: null);

    /// <summary>
    /// The same, reusing from <paramref name="cache"/> the workloads of the previous build whose inputs are unchanged
    /// (see <see cref="MeshBuildCache"/>): the snapshot is equal to one built without it.
    /// </summary>
    public static MeshSnapshot Build(IReadOnlyList<Resource> resources, MeshOptions? options, MeshBuildCache? cache)
    {
        options ??= MeshOptions.Default;
        cache?.Begin(options);
        var problems = new List<ConfigError>();
        // The cache is reset when the options change, so WaypointsDeployed is the same for every build it reuses.
        var assignment = cache?.Assignment(resources, options.Addresses, options.WaypointsDeployed)
            ?? LoopbackAddressAllocator.AssignAll(resources, options.Addresses, options.WaypointsDeployed);
        problems.AddRange(assignment.Problems);
        // Config records carry their own copy of every namespace/node/service-account string; pooling them keeps
        // one instance per distinct value in the snapshot.
        var pool = new StringPool(256);

        var namespaces = new Dictionary<string, NamespaceResource>(StringComparer.Ordinal);
        var pods = new List<PodResource>(resources.Count);
        var services = new List<ServiceResource>();
        var routes = new List<HttpRouteResource>();
        var grants = new List<ReferenceGrantResource>();
        var slices = new List<EndpointSliceResource>();
        // A source that hands resources over sorted by key (the Kubernetes one) cannot repeat one: then no 11,000-entry map
        // is built per generation to find duplicates.
        var firstSeen = KeysStrictlyIncreasing(resources) ? null
            : new Dictionary<(string Kind, string Namespace, string Name), SourceLocation>(resources.Count);
        foreach (var r in resources)
        {
            if (r is not (NamespaceResource or PodResource or ServiceResource or HttpRouteResource or ReferenceGrantResource or EndpointSliceResource))
            {
                continue;
            }
            var key = (r.Kind, r.Metadata.Namespace, r.Metadata.Name);
            if (firstSeen is not null && !firstSeen.TryAdd(key, r.Source))
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
                case HttpRouteResource route:
                    routes.Add(route);
                    break;
                case ReferenceGrantResource grant:
                    grants.Add(grant);
                    break;
                case EndpointSliceResource slice:
                    slices.Add(slice);
                    break;
            }
        }

        var waypoints = AddWaypoints(assignment, options, pods, services, problems);
        var resolver = new WaypointResolver(waypoints, namespaces, problems);

        var serviceInfos = new List<ServiceInfo>(services.Count);
        var selectorsByNamespace = new Dictionary<string, SelectorIndex>(StringComparer.Ordinal);
        // What the cache compares per namespace: the Services whose selectors its pods are matched against.
        var selectingByNamespace = cache is null ? null : new Dictionary<string, List<ServiceResource>>(StringComparer.Ordinal);
        Dictionary<ObjectKey, ServiceInfo>? selectorless = null;
        foreach (var svc in services)
        {
            if (LoopbackAddressAllocator.IsExternalName(svc))
            {
                problems.Add(new ConfigError(svc.Source, "spec.type", $"ExternalName service '{QualifiedName(svc)}' is not supported; ignored"));
                continue;
            }
            var info = BuildService(svc, options, assignment, pool) with { Waypoint = resolver.ForService(svc)?.GatewayAddress };
            serviceInfos.Add(info);
            if (svc.Selector.Count == 0)
            {
                // Kubernetes: an empty selector selects nothing; the endpoints are the Service's EndpointSlices.
                (selectorless ??= []).TryAdd(new ObjectKey(info.Namespace, info.Name), info);
                continue;
            }
            if (!selectorsByNamespace.TryGetValue(info.Namespace, out var index))
            {
                selectorsByNamespace.Add(info.Namespace, index = new SelectorIndex());
            }
            index.Add(new ServiceMatcher(info));
            if (selectingByNamespace is not null)
            {
                if (!selectingByNamespace.TryGetValue(info.Namespace, out var selecting))
                {
                    selectingByNamespace.Add(info.Namespace, selecting = []);
                }
                selecting.Add(svc);
            }
        }

        var sliceEndpoints = EndpointSliceEndpoints.Build(slices, selectorless, pods, assignment, options, pool, problems);
        var workloads = new List<WorkloadInfo>(pods.Count);
        var matched = new List<ServiceMatcher>();
        foreach (var pod in pods)
        {
            var ns = pool.Get(pod.Metadata.Namespace);
            var nsResource = namespaces.GetValueOrDefault(ns);
            var address = assignment.PodAddress(ns, pod.Metadata.Name);
            if (cache is null || !cache.TryReuse(pod, ns, nsResource, selectingByNamespace!.GetValueOrDefault(ns), address, out var workload))
            {
                selectorsByNamespace.TryGetValue(ns, out var selectors);
                workload = BuildWorkload(pod, ns, nsResource, selectors, matched, options, address, pool);
                cache?.Remember(pod, address, workload);
            }
            // After the cache: what the slices add is never cached, so a changed slice cannot leave a stale workload.
            workload = sliceEndpoints.AddTo(workload, ns, pod.Metadata.Name);
            if (resolver.ForPod(pod) is { } waypoint)
            {
                workload = workload with { Waypoint = waypoint.GatewayAddress };
            }
            else if (workload.Labels.TryGetValue(WaypointLabels.GatewayName, out var gateway)
                && resolver.Find(ns, gateway) is { } runs && runs.PodName == pod.Metadata.Name)
            {
                // Istio runs a waypoint as a Deployment named after the Gateway: that is the workload name metrics show.
                workload = workload with { WorkloadName = runs.Name, WorkloadType = WorkloadType.Deployment };
            }
            workloads.Add(workload);
        }
        workloads.AddRange(sliceEndpoints.Workloads);

        routes.Sort(static (a, b) => ObjectKey.CompareJoined(new ObjectKey(a.Metadata.Namespace, a.Metadata.Name), new ObjectKey(b.Metadata.Namespace, b.Metadata.Name)));
        grants.Sort(static (a, b) => ObjectKey.CompareJoined(new ObjectKey(a.Metadata.Namespace, a.Metadata.Name), new ObjectKey(b.Metadata.Namespace, b.Metadata.Name)));
        var gatewayApi = new GatewayApiConfig([.. waypoints], [.. routes], namespaces, [.. grants]);
        var snapshot = MeshSnapshot.Create(workloads, serviceInfos, options, assignment.Nodes, [.. problems], gatewayApi);
        cache?.Complete();
        return snapshot;
    }

    /// <summary>True when the built kinds come in strictly increasing <see cref="Resource.Key"/> order (ordinal), so no key repeats.</summary>
    private static bool KeysStrictlyIncreasing(IReadOnlyList<Resource> resources)
    {
        Resource? last = null;
        for (var i = 0; i < resources.Count; i++)
        {
            var r = resources[i];
            if (r is not (NamespaceResource or PodResource or ServiceResource or HttpRouteResource or ReferenceGrantResource))
            {
                continue;
            }
            if (last is not null && CompareKeys(last, r) >= 0)
            {
                return false;
            }
            last = r;
        }
        return true;
    }

    /// <summary>Ordinal order of <see cref="Resource.Key"/> (<c>kind/namespace/name</c>), without concatenating.</summary>
    internal static int CompareKeys(Resource x, Resource y)
    {
        if (string.Equals(x.Kind, y.Kind, StringComparison.Ordinal))
        {
            return ObjectKey.CompareJoined(new ObjectKey(x.Metadata.Namespace, x.Metadata.Name), new ObjectKey(y.Metadata.Namespace, y.Metadata.Name));
        }
        // Different kinds: decided within "kind/" (a kind never contains '/').
        var common = Math.Min(x.Kind.Length, y.Kind.Length) + 1;
        for (var i = 0; i < common; i++)
        {
            var cx = i < x.Kind.Length ? x.Kind[i] : '/';
            var cy = i < y.Kind.Length ? y.Kind[i] : '/';
            if (cx != cy)
            {
                return cx - cy;
            }
        }
        return 0;
    }

    /// <summary>
    /// Each waypoint Gateway becomes a pod and a Service, as Istio's deployment controller creates them; they then go
    /// through the same steps as declared ones. A declared Service or Pod with the waypoint's name is reported and
    /// left out (the waypoint owns that name, as the controller would overwrite it).
    /// </summary>
    private static List<WaypointInfo> AddWaypoints(
        LoopbackAssignment assignment, MeshOptions options, List<PodResource> pods, List<ServiceResource> services, List<ConfigError> problems)
    {
        var result = new List<WaypointInfo>(assignment.Waypoints.Count);
        if (assignment.Waypoints.Count == 0)
        {
            return result;
        }
        var taken = new HashSet<(string Kind, ObjectKey Key)>();
        foreach (var planned in assignment.Waypoints)
        {
            var placement = planned;
            if (options.WaypointsDeployed)
            {
                // The cluster runs the waypoint: its pod is the one its Deployment labels with the Gateway's name.
                placement = DeployedPlacement(planned, pods);
            }
            var gateway = placement.Gateway;
            var trafficType = WaypointObjects.TrafficType(gateway);
            if (trafficType is not (WaypointLabels.ForService or WaypointLabels.ForWorkload or WaypointLabels.ForAll or WaypointLabels.None))
            {
                problems.Add(new ConfigError(gateway.Source, "metadata.labels[" + WaypointLabels.WaypointFor + "]",
                    $"'{trafficType}' is not one of service, workload, all, none; waypoint {placement.Namespace}/{placement.Name} takes no traffic"));
            }
            if (!options.WaypointsDeployed)
            {
                taken.Add(("Service", new ObjectKey(placement.Namespace, placement.Name)));
                taken.Add(("Pod", new ObjectKey(placement.Namespace, placement.PodName)));
            }
            result.Add(new WaypointInfo(placement, trafficType,
                WorkloadInfo.PodUid(options.ClusterId, placement.Namespace, placement.PodName),
                new NamespacedHost(placement.Namespace, ServiceInfo.KubernetesHostname(placement.Name, placement.Namespace, options.DomainSuffix)),
                placement.PodName.Length == 0 ? null : assignment.PodAddress(placement.Namespace, placement.PodName)));
        }
        if (options.WaypointsDeployed)
        {
            return result;
        }
        services.RemoveAll(s => Clashes(s, "Service", taken, problems));
        pods.RemoveAll(p => Clashes(p, "Pod", taken, problems));
        foreach (var placement in assignment.Waypoints)
        {
            pods.Add(WaypointObjects.Pod(placement));
            services.Add(WaypointObjects.Service(placement));
        }
        return result;

        // Of the pods labelled gateway.networking.k8s.io/gateway-name in the Gateway's namespace: a running one with an
        // address first (a rollout's new pod before the old one goes), then by name, so the choice is stable.
        static WaypointPlacement DeployedPlacement(WaypointPlacement planned, List<PodResource> pods)
        {
            PodResource? best = null;
            foreach (var pod in pods)
            {
                if (pod.Metadata.Namespace != planned.Namespace || pod.Metadata.Label(WaypointLabels.GatewayName) != planned.Name)
                {
                    continue;
                }
                if (best is null || Better(pod, best))
                {
                    best = pod;
                }
            }
            return best is null
                ? planned with { PodName = "", Node = "" }
                : planned with { PodName = best.Metadata.Name, Node = best.NodeName ?? "" };

            static bool Better(PodResource a, PodResource b) =>
                Runs(a) != Runs(b) ? Runs(a) : string.CompareOrdinal(a.Metadata.Name, b.Metadata.Name) < 0;

            static bool Runs(PodResource pod) => !string.IsNullOrEmpty(pod.PodIP) && !string.IsNullOrEmpty(pod.NodeName);
        }

        static bool Clashes(Resource r, string kind, HashSet<(string, ObjectKey)> taken, List<ConfigError> problems)
        {
            if (!taken.Contains((kind, new ObjectKey(r.Metadata.Namespace, r.Metadata.Name))))
            {
                return false;
            }
            problems.Add(new ConfigError(r.Source, "metadata.name",
                $"{kind} {QualifiedName(r)} has the name of a waypoint's {kind}; the waypoint's own is used and this one is ignored"));
            return true;
        }
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
            Vips = vip is null ? [] : svc.ClusterIP is null ? [vip] : DualStackAddresses.WithSecondary(vip, svc.SecondaryClusterIPs),
            Ports = ports.MoveToImmutable(),
            Labels = svc.Metadata.Labels,
            Selector = svc.Selector,
        };
    }

    private static WorkloadInfo BuildWorkload(
        PodResource pod, string ns, NamespaceResource? nsResource, SelectorIndex? selectors, List<ServiceMatcher> matched,
        MeshOptions options, IPAddress? address, StringPool pool)
    {
        var meta = pod.Metadata;
        var name = meta.Name;
        var containerPorts = ContainerPortsOf(pod);

        var services = ImmutableArray<WorkloadServicePorts>.Empty;
        if (selectors is not null && selectors.Match(meta.Labels, matched) > 0)
        {
            var entries = new WorkloadServicePorts[matched.Count];
            for (var i = 0; i < entries.Length; i++)
            {
                entries[i] = new WorkloadServicePorts(matched[i].Service.Key, matched[i].PortsFor(containerPorts));
            }
            services = ImmutableCollectionsMarshal.AsImmutableArray(entries);
        }

        var serviceAccount = pool.Get(string.IsNullOrEmpty(pod.ServiceAccountName) ? "default" : pod.ServiceAccountName);
        return new WorkloadInfo(WorkloadInfo.PodUid(options.ClusterId, ns, name), ns, pool.Get(options.TrustDomain), serviceAccount, pool)
        {
            Name = name,
            Addresses = address is null ? [] : pod.PodIP is null ? [address] : DualStackAddresses.WithSecondary(address, pod.SecondaryPodIPs),
            Network = pool.Get(options.Network),
            TunnelProtocol = IsEnrolled(pod, nsResource) ? TunnelProtocol.Hbone : TunnelProtocol.None,
            Node = pool.Get(pod.NodeName ?? ""),
            CanonicalName = CanonicalService.Name(meta.Labels, name),
            CanonicalRevision = CanonicalService.Revision(meta.Labels),
            WorkloadType = WorkloadType.Pod,
            // A bare pod has no owning Deployment: Istio then reports the pod name as the workload name.
            WorkloadName = name,
            Status = pod.Ready ? WorkloadStatus.Healthy : WorkloadStatus.Unhealthy,
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

    /// <summary>
    /// The selectors of one namespace's services, indexed by each selector's first (key, value) pair: a pod is tested
    /// only against the services whose first pair its labels carry, not against every service of its namespace (at
    /// 1,000 pods and 100 services per namespace that is two lookups per pod instead of 100 selector tests).
    /// </summary>
    private sealed class SelectorIndex
    {
        private readonly Dictionary<string, Dictionary<string, List<ServiceMatcher>>> _byFirstKey = new(StringComparer.Ordinal);

        public void Add(ServiceMatcher matcher)
        {
            var (key, value) = matcher.FirstPair;
            if (!_byFirstKey.TryGetValue(key, out var byValue))
            {
                _byFirstKey.Add(key, byValue = new Dictionary<string, List<ServiceMatcher>>(StringComparer.Ordinal));
            }
            if (!byValue.TryGetValue(value, out var list))
            {
                byValue.Add(value, list = new List<ServiceMatcher>(1));
            }
            list.Add(matcher);
        }

        /// <summary>Fills <paramref name="matched"/> with the services selecting <paramref name="labels"/>, sorted by key
        /// (Workload.services is serialized in this order, so equal input gives equal bytes); returns how many.</summary>
        public int Match(ImmutableSortedDictionary<string, string> labels, List<ServiceMatcher> matched)
        {
            matched.Clear();
            if (labels.Count == 0)
            {
                return 0;
            }
            // Each matcher sits under exactly one pair, so each selecting service is found exactly once. Walk the smaller
            // side: usually the index has one key ("app") and the pod a few labels.
            if (_byFirstKey.Count <= labels.Count)
            {
                foreach (var (key, byValue) in _byFirstKey)
                {
                    if (labels.TryGetValue(key, out var value))
                    {
                        AddSelecting(byValue, value, labels, matched);
                    }
                }
            }
            else
            {
                foreach (var (key, value) in labels)
                {
                    if (_byFirstKey.TryGetValue(key, out var byValue))
                    {
                        AddSelecting(byValue, value, labels, matched);
                    }
                }
            }
            if (matched.Count > 1)
            {
                matched.Sort(static (a, b) => string.CompareOrdinal(a.Service.Key, b.Service.Key));
            }
            return matched.Count;
        }

        private static void AddSelecting(Dictionary<string, List<ServiceMatcher>> byValue, string value,
            ImmutableSortedDictionary<string, string> labels, List<ServiceMatcher> matched)
        {
            if (!byValue.TryGetValue(value, out var candidates))
            {
                return;
            }
            foreach (var m in candidates)
            {
                if (m.Selects(labels))
                {
                    matched.Add(m);
                }
            }
        }
    }

    /// <summary>A service's selector and port mapping, prepared once per build and applied to the pods of its namespace.</summary>
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

        /// <summary>The selector's first pair (by key, ordinal); the selector is never empty here.</summary>
        public KeyValuePair<string, string> FirstPair => _selector[0];

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

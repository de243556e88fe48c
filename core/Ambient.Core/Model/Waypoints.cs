using System.Collections.Immutable;
using System.Net;
using Ambient.Core.Config;

namespace Ambient.Core.Model;

/// <summary>Label and annotation keys of waypoints, exactly as Istio and the Gateway API spell them.</summary>
internal static class WaypointLabels
{
    public const string UseWaypoint = "istio.io/use-waypoint";
    public const string UseWaypointNamespace = "istio.io/use-waypoint-namespace";
    public const string WaypointFor = "istio.io/waypoint-for";

    /// <summary>Reserved value of <see cref="UseWaypoint"/>: opt this object out of its namespace's waypoint.</summary>
    public const string None = "none";

    public const string ForService = "service";
    public const string ForWorkload = "workload";
    public const string ForAll = "all";

    public const string GatewayName = "gateway.networking.k8s.io/gateway-name";
    public const string GatewayClassName = "gateway.networking.k8s.io/gateway-class-name";
    public const string Managed = "gateway.istio.io/managed";
    public const string ManagedByMeshController = "istio.io-mesh-controller";
    public const string SidecarInject = "sidecar.istio.io/inject";

    /// <summary>Local mode only: the node a waypoint runs on (Kubernetes schedules it; a folder mesh must say).</summary>
    public const string NodeAnnotation = "ambient.dev/node";

    /// <summary>The waypoint's HBONE port (Istio hard-codes it in the GatewayAddress too).</summary>
    public const int HbonePort = 15008;
}

/// <summary>
/// Where a waypoint Gateway runs. Computed by <see cref="LoopbackAddressAllocator.AssignAll"/> from the config alone,
/// so ambientctl (which starts the waypoint process) and istiod-lite (which publishes it) agree without talking.
/// </summary>
internal sealed record WaypointPlacement(GatewayResource Gateway, string PodName, string Node)
{
    public string Namespace => Gateway.Metadata.Namespace;
    public string Name => Gateway.Metadata.Name;

    // Kubernetes' SafeEncodeString alphabet: no vowels (no words) and no look-alike characters.
    private const string SafeAlphabet = "bcdfghjklmnpqrstvwxz2456789";

    /// <summary>
    /// The waypoint pod's name, shaped like a Deployment's pod (Istio runs each waypoint as a Deployment named after
    /// the Gateway): <c>&lt;gateway&gt;-&lt;10 chars&gt;-&lt;5 chars&gt;</c>, derived from namespace/name so it is stable.
    /// </summary>
    public static string PodNameFor(string @namespace, string gateway)
    {
        var hash = StableHash.Fnv1a64Joined(@namespace, '/', gateway);
        Span<char> chars = stackalloc char[17];
        chars[0] = '-';
        Encode(hash, chars.Slice(1, 10));
        chars[11] = '-';
        Encode(StableHash.Fnv1a64(hash.ToString(System.Globalization.CultureInfo.InvariantCulture)), chars.Slice(12, 4));
        // The fifth suffix character from the first hash's top bits keeps it to two hash computations.
        chars[16] = SafeAlphabet[(int)(hash >> 59) % SafeAlphabet.Length];
        return gateway + new string(chars);

        static void Encode(ulong value, Span<char> into)
        {
            for (var i = 0; i < into.Length; i++)
            {
                into[i] = SafeAlphabet[(int)(value % (ulong)SafeAlphabet.Length)];
                value /= (ulong)SafeAlphabet.Length;
            }
        }
    }
}

/// <summary>
/// A waypoint as the mesh sees it: a Gateway of class <c>istio-waypoint</c>, the pod that runs it and the Service
/// that fronts it (as Istio's deployment controller creates for every waypoint).
/// </summary>
internal sealed record WaypointInfo(WaypointPlacement Placement, string TrafficType, string WorkloadUid, NamespacedHost Service, IPAddress? Address)
{
    public GatewayResource Gateway => Placement.Gateway;
    public string Namespace => Placement.Namespace;
    public string Name => Placement.Name;
    public string PodName => Placement.PodName;
    public string Node => Placement.Node;

    /// <summary><c>ns/name</c> of the Gateway.</summary>
    public string Key => Namespace + "/" + Name;

    /// <summary>What Services and Workloads that use this waypoint carry: the waypoint Service by hostname.</summary>
    public GatewayInfo GatewayAddress { get; } = new(Service, "", null, WaypointLabels.HbonePort);

    public bool ForServices => TrafficType is WaypointLabels.ForService or WaypointLabels.ForAll;

    public bool ForWorkloads => TrafficType is WaypointLabels.ForWorkload or WaypointLabels.ForAll;

    /// <summary>
    /// Istio's attachment rule: the <c>allowedRoutes.namespaces</c> of the waypoint's HBONE listener (port 15008) says
    /// which namespaces may use it; without such a listener, or without allowedRoutes, only its own namespace.
    /// </summary>
    public bool AllowsNamespace(string @namespace, NamespaceResource? namespaceResource)
    {
        foreach (var l in Gateway.Listeners.IsDefault ? [] : Gateway.Listeners)
        {
            if (l.Protocol == "HBONE" && l.Port == WaypointLabels.HbonePort)
            {
                return ListenerAllows(l, Namespace, @namespace, namespaceResource);
            }
        }
        return @namespace == Namespace;
    }

    /// <summary>A listener's <c>allowedRoutes.namespaces</c> (Same, All, Selector) applied to <paramref name="namespace"/>.</summary>
    public static bool ListenerAllows(GatewayListener listener, string gatewayNamespace, string @namespace, NamespaceResource? namespaceResource) =>
        listener.AllowedNamespacesFrom switch
        {
            "All" => true,
            "Selector" => namespaceResource is not null && SelectorMatches(listener.AllowedNamespacesSelector, namespaceResource.Metadata.Labels),
            _ => @namespace == gatewayNamespace,
        };

    private static bool SelectorMatches(ImmutableSortedDictionary<string, string> selector, ImmutableSortedDictionary<string, string> labels)
    {
        foreach (var (key, value) in selector)
        {
            if (!labels.TryGetValue(key, out var actual) || actual != value)
            {
                return false;
            }
        }
        return true;
    }
}

/// <summary>
/// Resolves <c>istio.io/use-waypoint</c> as istiod does (pilot/pkg/serviceregistry/kube/controller/ambient/waypoints.go):
/// the object's own label first (<c>none</c> opts out), else its namespace's; <c>istio.io/use-waypoint-namespace</c>
/// names another namespace; the waypoint must exist and admit the object's namespace; its
/// <c>istio.io/waypoint-for</c> must cover the object's kind. Services consider the Service's labels, workloads the
/// Pod's (Istio never reads a Service's label for its endpoints). Anything that names a waypoint in vain is reported.
/// </summary>
internal sealed class WaypointResolver
{
    private const string LabelField = "metadata.labels[" + WaypointLabels.UseWaypoint + "]";
    private readonly Dictionary<ObjectKey, WaypointInfo> _waypoints;
    private readonly Dictionary<string, NamespaceResource> _namespaces;
    private readonly List<ConfigError> _problems;
    private readonly HashSet<string> _reported = new(StringComparer.Ordinal);

    public WaypointResolver(IEnumerable<WaypointInfo> waypoints, Dictionary<string, NamespaceResource> namespaces, List<ConfigError> problems)
    {
        _waypoints = [];
        foreach (var w in waypoints)
        {
            _waypoints[new ObjectKey(w.Namespace, w.Name)] = w;
        }
        _namespaces = namespaces;
        _problems = problems;
    }

    public WaypointInfo? Find(string @namespace, string name) => _waypoints.GetValueOrDefault(new ObjectKey(@namespace, name));

    public WaypointInfo? ForService(ServiceResource service)
    {
        // The waypoint's own Service never gets a waypoint.
        if (service.Metadata.Label(WaypointLabels.Managed) == WaypointLabels.ManagedByMeshController)
        {
            return null;
        }
        var w = ForTarget(service, "Service", out var ownLabel);
        if (w is null || w.ForServices)
        {
            return w;
        }
        if (ownLabel)
        {
            Report(service, $"Service {Name(service)} names waypoint {w.Key}, which takes {w.TrafficType} traffic only ({WaypointLabels.WaypointFor}); the Service gets no waypoint");
        }
        return null;
    }

    public WaypointInfo? ForPod(PodResource pod)
    {
        // An instance of a waypoint (Istio: fetchWaypointForInstance) never gets a waypoint itself.
        if (pod.Metadata.Label(WaypointLabels.GatewayName) is { } gateway && Find(pod.Metadata.Namespace, gateway) is not null)
        {
            return null;
        }
        var w = ForTarget(pod, "Pod", out var ownLabel);
        if (w is null || w.ForWorkloads)
        {
            return w;
        }
        if (ownLabel)
        {
            Report(pod, $"Pod {Name(pod)} names waypoint {w.Key}, which takes {w.TrafficType} traffic only ({WaypointLabels.WaypointFor}); the pod gets no waypoint");
        }
        return null;
    }

    private WaypointInfo? ForTarget(Resource target, string kind, out bool ownLabel)
    {
        var ns = target.Metadata.Namespace;
        ownLabel = false;
        var named = UseWaypoint(target.Metadata, ns, out var optedOut);
        if (optedOut)
        {
            return null;
        }
        if (named is { } own)
        {
            ownLabel = true;
            return Attach(target, $"{kind} {Name(target)}", own, ns, _namespaces.GetValueOrDefault(ns));
        }
        if (_namespaces.TryGetValue(ns, out var namespaceResource) && UseWaypoint(namespaceResource.Metadata, ns, out _) is { } fromNamespace)
        {
            return Attach(namespaceResource, $"Namespace {ns}", fromNamespace, ns, namespaceResource);
        }
        return null;
    }

    private WaypointInfo? Attach(Resource labelled, string who, ObjectKey named, string @namespace, NamespaceResource? namespaceResource)
    {
        if (Find(named.Namespace, named.Name) is not { } w)
        {
            Report(labelled, $"{who} names waypoint {named}, which does not exist (no Gateway of class {GatewayResource.WaypointClass}); no waypoint is used");
            return null;
        }
        if (!w.AllowsNamespace(@namespace, namespaceResource))
        {
            Report(labelled, $"{who} names waypoint {w.Key}, whose HBONE listener does not allow namespace {@namespace} (allowedRoutes.namespaces); no waypoint is used");
            return null;
        }
        return w;
    }

    /// <summary>Istio's getUseWaypoint: the label's waypoint, in the label's namespace override or the object's namespace.</summary>
    private static ObjectKey? UseWaypoint(ObjectMeta meta, string defaultNamespace, out bool optedOut)
    {
        optedOut = false;
        if (meta.Label(WaypointLabels.UseWaypoint) is not { } value)
        {
            return null;
        }
        // Istio reserves "none": a waypoint named "none" cannot be used.
        if (value == WaypointLabels.None)
        {
            optedOut = true;
            return null;
        }
        return new ObjectKey(meta.Label(WaypointLabels.UseWaypointNamespace) ?? defaultNamespace, value);
    }

    private void Report(Resource labelled, string message)
    {
        // A namespace label is read for every object in it: say it once.
        if (_reported.Add(labelled.Key + "\n" + message))
        {
            _problems.Add(new ConfigError(labelled.Source, LabelField, message));
        }
    }

    private static string Name(Resource r) => r.Metadata.Namespace + "/" + r.Metadata.Name;
}

/// <summary>The Pod and Service Istio's deployment controller would create for a waypoint Gateway.</summary>
internal static class WaypointObjects
{
    private static readonly ImmutableSortedDictionary<string, string> NoAnnotations = ImmutableSortedDictionary<string, string>.Empty;

    /// <summary>Labels of the waypoint pod, as Istio's waypoint template sets them (not captured: dataplane-mode none).</summary>
    public static PodResource Pod(WaypointPlacement placement)
    {
        var gw = placement.Gateway;
        var labels = ImmutableSortedDictionary.CreateRange(StringComparer.Ordinal, [
            KeyValuePair.Create(WaypointLabels.SidecarInject, "false"),
            KeyValuePair.Create(MeshLabels.DataplaneMode, MeshLabels.DataplaneModeNone),
            KeyValuePair.Create(MeshLabels.CanonicalName, placement.Name),
            KeyValuePair.Create(MeshLabels.CanonicalRevision, MeshLabels.DefaultRevision),
            KeyValuePair.Create(WaypointLabels.GatewayName, placement.Name),
            KeyValuePair.Create(WaypointLabels.GatewayClassName, GatewayResource.WaypointClass),
            KeyValuePair.Create(WaypointLabels.Managed, WaypointLabels.ManagedByMeshController),
        ]);
        var container = new ContainerSpec("istio-proxy", Image: null, [], [], [new ContainerPort("mesh", WaypointLabels.HbonePort, "TCP")],
            ImmutableSortedDictionary<string, string>.Empty);
        return new PodResource("v1", new ObjectMeta(placement.PodName, placement.Namespace, labels, NoAnnotations), gw.Source,
            ServiceAccountName: placement.Name, NodeName: placement.Node.Length == 0 ? null : placement.Node, [container], PodIP: null);
    }

    /// <summary>The waypoint's Service: named after the Gateway, selecting its pod, HBONE on 15008.</summary>
    public static ServiceResource Service(WaypointPlacement placement)
    {
        var labels = ImmutableSortedDictionary.CreateRange(StringComparer.Ordinal, [
            KeyValuePair.Create(WaypointLabels.GatewayName, placement.Name),
            KeyValuePair.Create(WaypointLabels.GatewayClassName, GatewayResource.WaypointClass),
            KeyValuePair.Create(WaypointLabels.Managed, WaypointLabels.ManagedByMeshController),
        ]);
        var selector = ImmutableSortedDictionary<string, string>.Empty.Add(WaypointLabels.GatewayName, placement.Name);
        return new ServiceResource("v1", new ObjectMeta(placement.Name, placement.Namespace, labels, NoAnnotations), placement.Gateway.Source,
            "ClusterIP", ClusterIP: null, selector,
            [new ServicePortSpec("mesh", WaypointLabels.HbonePort, TargetPort.FromNumber(WaypointLabels.HbonePort), AppProtocol: null, "TCP")]);
    }

    /// <summary>The Gateway's <c>istio.io/waypoint-for</c>, Istio's default <c>service</c> when absent.</summary>
    public static string TrafficType(GatewayResource gateway) => gateway.Metadata.Label(WaypointLabels.WaypointFor) ?? WaypointLabels.ForService;
}

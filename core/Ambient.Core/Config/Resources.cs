using System.Collections.Immutable;

namespace Ambient.Core.Config;

// Typed forms of the Kubernetes-style resources users write. The folder source and (later) the
// Kubernetes API source both produce these; the model builder turns them into a MeshSnapshot.
// Records are immutable and compared by value, so an unchanged file yields equal resources. The records
// holding collections define Equals/GetHashCode because ImmutableArray/ImmutableSortedDictionary compare
// by reference.

/// <summary>
/// Where a resource (or an error) came from: file path and 1-based line of its document; for an object read from the
/// Kubernetes API, its kind and namespace/name with line 0 (<see cref="ForObject"/>), shown without a line.
/// </summary>
public sealed record SourceLocation(string File, int Line)
{
    /// <summary>An API object: "Pod default/web" (a cluster-scoped object: "Namespace web").</summary>
    public static SourceLocation ForObject(string kind, string @namespace, string name) =>
        new(@namespace.Length == 0 ? kind + " " + name : kind + " " + @namespace + "/" + name, 0);

    public override string ToString() => Line == 0 && File.Length > 0 ? File : $"{File}:{Line}";
}

public sealed record ObjectMeta(
    string Name,
    string Namespace,
    ImmutableSortedDictionary<string, string> Labels,
    ImmutableSortedDictionary<string, string> Annotations)
{
    public string? Label(string key) => Labels.TryGetValue(key, out var v) ? v : null;

    // Value equality over the maps' contents (the collections themselves compare by reference).
    public bool Equals(ObjectMeta? other) =>
        ReferenceEquals(this, other)
        || (other is not null && Name == other.Name && Namespace == other.Namespace
            && ValueEquality.Equal(Labels, other.Labels) && ValueEquality.Equal(Annotations, other.Annotations));

    public override int GetHashCode() =>
        HashCode.Combine(Name, Namespace, ValueEquality.Hash(Labels), ValueEquality.Hash(Annotations));
}

public abstract record Resource(string ApiVersion, string Kind, ObjectMeta Metadata, SourceLocation Source)
{
    /// <summary>Identity of the resource within a config set: kind/namespace/name.</summary>
    public string Key => Kind + "/" + Metadata.Namespace + "/" + Metadata.Name;
}

public sealed record NamespaceResource(string ApiVersion, ObjectMeta Metadata, SourceLocation Source)
    : Resource(ApiVersion, "Namespace", Metadata, Source);

public sealed record ServiceAccountResource(string ApiVersion, ObjectMeta Metadata, SourceLocation Source)
    : Resource(ApiVersion, "ServiceAccount", Metadata, Source);

public sealed record ContainerPort(string? Name, int Port, string Protocol);

public sealed record ContainerSpec(
    string Name,
    string? Image,
    ImmutableArray<string> Command,
    ImmutableArray<string> Args,
    ImmutableArray<ContainerPort> Ports,
    ImmutableSortedDictionary<string, string> Env)
{
    public bool Equals(ContainerSpec? other) =>
        ReferenceEquals(this, other)
        || (other is not null && Name == other.Name && Image == other.Image
            && ValueEquality.Equal(Command, other.Command) && ValueEquality.Equal(Args, other.Args)
            && ValueEquality.Equal(Ports, other.Ports) && ValueEquality.Equal(Env, other.Env));

    public override int GetHashCode() =>
        HashCode.Combine(Name, Image, ValueEquality.Hash(Command), ValueEquality.Hash(Args), ValueEquality.Hash(Ports), ValueEquality.Hash(Env));
}

public sealed record PodResource(
    string ApiVersion,
    ObjectMeta Metadata,
    SourceLocation Source,
    string ServiceAccountName,
    string? NodeName,
    ImmutableArray<ContainerSpec> Containers,
    string? PodIP)
    : Resource(ApiVersion, "Pod", Metadata, Source)
{
    /// <summary>
    /// <c>metadata.uid</c>, when the source knows it (the Kubernetes API always does; a YAML file may give one). The CA
    /// compares it with the pod uid a service-account token was bound to, so a pod re-created under the same name
    /// cannot use its predecessor's token.
    /// </summary>
    public string? Uid { get; init; }

    /// <summary>The pod's Ready condition. A config folder has no kubelet, so its pods are ready; a not-ready pod from
    /// the Kubernetes API stays a workload but is published unhealthy, as Istio does, so no traffic is sent to it.</summary>
    public bool Ready { get; init; } = true;

    /// <summary>The addresses after <see cref="PodIP"/> in <c>status.podIPs</c>: a dual-stack pod's address of the other
    /// family. Empty for a single-stack pod (and always for a config folder, whose pods get one address).</summary>
    public ImmutableArray<string> SecondaryPodIPs { get; init; } = [];

    public bool Equals(PodResource? other) =>
        ReferenceEquals(this, other)
        || (other is not null && base.Equals(other) && ServiceAccountName == other.ServiceAccountName
            && NodeName == other.NodeName && PodIP == other.PodIP && Ready == other.Ready && Uid == other.Uid && ValueEquality.Equal(Containers, other.Containers)
            && ValueEquality.Equal(SecondaryPodIPs, other.SecondaryPodIPs));

    public override int GetHashCode() =>
        HashCode.Combine(base.GetHashCode(), ServiceAccountName, NodeName, PodIP, Ready, Uid, ValueEquality.Hash(Containers), ValueEquality.Hash(SecondaryPodIPs));
}

/// <summary>
/// A Deployment (<c>apps/v1</c>): <see cref="Replicas"/> copies of a pod template. A config folder has no
/// controller, so the folder source expands each Deployment into ordinary <see cref="PodResource"/>s named
/// <c>&lt;name&gt;-&lt;template hash&gt;-&lt;suffix&gt;</c> (as a ReplicaSet would) and keeps this record for display.
/// </summary>
public sealed record DeploymentResource(
    string ApiVersion,
    ObjectMeta Metadata,
    SourceLocation Source,
    int Replicas,
    ImmutableSortedDictionary<string, string> Selector,
    ImmutableSortedDictionary<string, string> TemplateLabels,
    ImmutableSortedDictionary<string, string> TemplateAnnotations,
    string ServiceAccountName,
    string? NodeName,
    ImmutableArray<ContainerSpec> Containers)
    : Resource(ApiVersion, "Deployment", Metadata, Source)
{
    public bool Equals(DeploymentResource? other) =>
        ReferenceEquals(this, other)
        || (other is not null && base.Equals(other) && Replicas == other.Replicas
            && ServiceAccountName == other.ServiceAccountName && NodeName == other.NodeName
            && ValueEquality.Equal(Selector, other.Selector) && ValueEquality.Equal(TemplateLabels, other.TemplateLabels)
            && ValueEquality.Equal(TemplateAnnotations, other.TemplateAnnotations) && ValueEquality.Equal(Containers, other.Containers));

    public override int GetHashCode() =>
        HashCode.Combine(base.GetHashCode(), Replicas, ServiceAccountName, NodeName, ValueEquality.Hash(Selector),
            ValueEquality.Hash(TemplateLabels), ValueEquality.Hash(Containers));
}

/// <summary>A Service targetPort: either a number or the name of a container port.</summary>
public readonly record struct TargetPort(int Number, string? Name)
{
    public static TargetPort FromNumber(int n) => new(n, null);
    public static TargetPort FromName(string name) => new(0, name);
    public bool IsNamed => Name is not null;
    public override string ToString() => Name ?? Number.ToString(System.Globalization.CultureInfo.InvariantCulture);
}

public sealed record ServicePortSpec(string? Name, int Port, TargetPort TargetPort, string? AppProtocol, string Protocol);

public sealed record ServiceResource(
    string ApiVersion,
    ObjectMeta Metadata,
    SourceLocation Source,
    string Type,
    string? ClusterIP,
    ImmutableSortedDictionary<string, string> Selector,
    ImmutableArray<ServicePortSpec> Ports)
    : Resource(ApiVersion, "Service", Metadata, Source)
{
    /// <summary>The addresses after <see cref="ClusterIP"/> in <c>spec.clusterIPs</c>: a dual-stack Service's VIP of the
    /// other family (<c>spec.ipFamilies</c>). Empty for a single-stack Service.</summary>
    public ImmutableArray<string> SecondaryClusterIPs { get; init; } = [];

    public bool Equals(ServiceResource? other) =>
        ReferenceEquals(this, other)
        || (other is not null && base.Equals(other) && Type == other.Type && ClusterIP == other.ClusterIP
            && ValueEquality.Equal(Selector, other.Selector) && ValueEquality.Equal(Ports, other.Ports)
            && ValueEquality.Equal(SecondaryClusterIPs, other.SecondaryClusterIPs));

    public override int GetHashCode() =>
        HashCode.Combine(base.GetHashCode(), Type, ClusterIP, ValueEquality.Hash(Selector), ValueEquality.Hash(Ports), ValueEquality.Hash(SecondaryClusterIPs));
}

/// <summary>
/// A <c>discovery.k8s.io/v1</c> EndpointSlice: the endpoints Kubernetes (or a user, for a Service without a selector)
/// lists for the Service named by its <c>kubernetes.io/service-name</c> label (<see cref="ServiceName"/>).
/// </summary>
public sealed record EndpointSliceResource(
    string ApiVersion,
    ObjectMeta Metadata,
    SourceLocation Source,
    string AddressType,
    ImmutableArray<EndpointSliceEndpoint> Endpoints,
    ImmutableArray<EndpointSlicePort> Ports)
    : Resource(ApiVersion, "EndpointSlice", Metadata, Source)
{
    public const string ServiceNameLabel = "kubernetes.io/service-name";

    /// <summary>The Service the slice belongs to; null for a slice that names none (Istio ignores those, so do we).</summary>
    public string? ServiceName => Metadata.Label(ServiceNameLabel);

    public bool Equals(EndpointSliceResource? other) =>
        ReferenceEquals(this, other)
        || (other is not null && base.Equals(other) && AddressType == other.AddressType
            && ValueEquality.Equal(Endpoints, other.Endpoints) && ValueEquality.Equal(Ports, other.Ports));

    public override int GetHashCode() =>
        HashCode.Combine(base.GetHashCode(), AddressType, ValueEquality.Hash(Endpoints), ValueEquality.Hash(Ports));
}

/// <summary>One endpoint of a slice: its addresses, <c>conditions.ready</c> (absent means ready), and the Pod it names
/// through <c>targetRef</c> (null when it names none, or something else than a Pod).</summary>
public sealed record EndpointSliceEndpoint(ImmutableArray<string> Addresses, bool Ready, ObjectKeyRef? TargetPod)
{
    public bool Equals(EndpointSliceEndpoint? other) =>
        ReferenceEquals(this, other)
        || (other is not null && Ready == other.Ready && TargetPod == other.TargetPod && ValueEquality.Equal(Addresses, other.Addresses));

    public override int GetHashCode() => HashCode.Combine(Ready, TargetPod, ValueEquality.Hash(Addresses));
}

/// <summary>A namespaced object reference (namespace, name).</summary>
public sealed record ObjectKeyRef(string Namespace, string Name);

/// <summary>A slice port: <see cref="Name"/> is the Service port's name (null for an unnamed one), <see cref="Port"/>
/// the endpoints' port number.</summary>
public sealed record EndpointSlicePort(string? Name, int Port, string Protocol);

/// <summary>A kind we do not understand yet: kept so nothing is silently lost, reported once as ignored.</summary>
public sealed record UnknownResource(string ApiVersion, string Kind, ObjectMeta Metadata, SourceLocation Source)
    : Resource(ApiVersion, Kind, Metadata, Source);

/// <summary>A rejected document or field, named precisely enough to fix: file:line, field path, what is wrong.</summary>
public sealed record ConfigError(SourceLocation Source, string Field, string Message)
{
    // A problem with the file as a whole (a YAML syntax error) names no field: no empty "file:24: : message" then.
    public override string ToString() => Field.Length == 0 ? $"{Source}: {Message}" : $"{Source}: {Field}: {Message}";
}

/// <summary>A Gateway API listener (<c>spec.listeners[]</c>).</summary>
public sealed record GatewayListener(string Name, int Port, string Protocol)
{
    /// <summary><c>allowedRoutes.namespaces.from</c>: <c>Same</c> (the API default), <c>All</c> or <c>Selector</c>.
    /// For a waypoint it also decides which namespaces may use it (Istio's rule for <c>istio.io/use-waypoint</c>).</summary>
    public string AllowedNamespacesFrom { get; init; } = "Same";

    /// <summary><c>allowedRoutes.namespaces.selector.matchLabels</c>, used when <see cref="AllowedNamespacesFrom"/> is <c>Selector</c>.</summary>
    public ImmutableSortedDictionary<string, string> AllowedNamespacesSelector { get; init; } = ImmutableSortedDictionary<string, string>.Empty;

    public bool Equals(GatewayListener? other) =>
        ReferenceEquals(this, other)
        || (other is not null && Name == other.Name && Port == other.Port && Protocol == other.Protocol
            && AllowedNamespacesFrom == other.AllowedNamespacesFrom && ValueEquality.Equal(AllowedNamespacesSelector, other.AllowedNamespacesSelector));

    public override int GetHashCode() => HashCode.Combine(Name, Port, Protocol, AllowedNamespacesFrom, ValueEquality.Hash(AllowedNamespacesSelector));
}

/// <summary>
/// A Gateway (<c>gateway.networking.k8s.io/v1</c>). The mesh acts on class <c>istio-waypoint</c> only: each such
/// Gateway is a waypoint named after it, with identity <c>sa/&lt;name&gt;</c>; <c>istio.io/waypoint-for</c> (label)
/// says what traffic it takes.
/// </summary>
public sealed record GatewayResource(
    string ApiVersion,
    ObjectMeta Metadata,
    SourceLocation Source,
    string GatewayClassName,
    ImmutableArray<GatewayListener> Listeners)
    : Resource(ApiVersion, "Gateway", Metadata, Source)
{
    public const string WaypointClass = "istio-waypoint";

    public bool IsWaypoint => GatewayClassName == WaypointClass;

    public bool Equals(GatewayResource? other) =>
        ReferenceEquals(this, other)
        || (other is not null && base.Equals(other) && GatewayClassName == other.GatewayClassName
            && ValueEquality.Equal(Listeners, other.Listeners));

    public override int GetHashCode() => HashCode.Combine(base.GetHashCode(), GatewayClassName, ValueEquality.Hash(Listeners));
}

/// <summary>
/// An HTTPRoute (<c>gateway.networking.k8s.io/v1</c>). <see cref="Spec"/> is the validated spec with the API's
/// defaults applied, in the form pushed to waypoints (route.proto): the parser fills it, istiod-lite resolves
/// backend references against the mesh and sends it. Protobuf messages compare by value.
/// </summary>
public sealed record HttpRouteResource(
    string ApiVersion,
    ObjectMeta Metadata,
    SourceLocation Source,
    Ambient.Core.Protos.Waypoint.HTTPRoute Spec)
    : Resource(ApiVersion, "HTTPRoute", Metadata, Source);

/// <summary>One <c>spec.from</c> entry of a ReferenceGrant: the kind of object (and its namespace) trusted to refer in.</summary>
public sealed record ReferenceGrantFrom(string Group, string Kind, string Namespace);

/// <summary>One <c>spec.to</c> entry of a ReferenceGrant: the kind of object that may be referred to, all of that kind
/// in the grant's namespace when <see cref="Name"/> is null.</summary>
public sealed record ReferenceGrantTo(string Group, string Kind, string? Name);

/// <summary>
/// A ReferenceGrant (<c>gateway.networking.k8s.io/v1beta1</c> or <c>v1</c>), in the namespace of the objects it opens:
/// an object of a <see cref="From"/> kind and namespace may refer to an object of a <see cref="To"/> kind here. Entries
/// of each list are ORed; a reference needs one grant matching it on both sides. Groups are as written ("" is core).
/// </summary>
public sealed record ReferenceGrantResource(
    string ApiVersion,
    ObjectMeta Metadata,
    SourceLocation Source,
    ImmutableArray<ReferenceGrantFrom> From,
    ImmutableArray<ReferenceGrantTo> To)
    : Resource(ApiVersion, "ReferenceGrant", Metadata, Source)
{
    /// <summary>
    /// True when this grant lets an object of <paramref name="fromGroup"/>/<paramref name="fromKind"/> in
    /// <paramref name="fromNamespace"/> refer to the object <paramref name="toGroup"/>/<paramref name="toKind"/>
    /// <paramref name="toName"/> in the grant's namespace. "core" is read as the core group (""), as Istio reads it.
    /// </summary>
    public bool Permits(string fromGroup, string fromKind, string fromNamespace, string toGroup, string toKind, string toName)
    {
        var fromMatched = false;
        foreach (var f in From)
        {
            if (SameGroup(f.Group, fromGroup) && f.Kind == fromKind && f.Namespace == fromNamespace)
            {
                fromMatched = true;
                break;
            }
        }
        if (!fromMatched)
        {
            return false;
        }
        foreach (var t in To)
        {
            if (SameGroup(t.Group, toGroup) && t.Kind == toKind && (t.Name is null || t.Name == toName))
            {
                return true;
            }
        }
        return false;
    }

    private static bool SameGroup(string a, string b) => (a == "core" ? "" : a) == (b == "core" ? "" : b);

    public bool Equals(ReferenceGrantResource? other) =>
        ReferenceEquals(this, other)
        || (other is not null && base.Equals(other) && ValueEquality.Equal(From, other.From) && ValueEquality.Equal(To, other.To));

    public override int GetHashCode() => HashCode.Combine(base.GetHashCode(), ValueEquality.Hash(From), ValueEquality.Hash(To));
}

/// <summary>
/// An AuthorizationPolicy (<c>security.istio.io/v1</c> or <c>v1beta1</c>). <see cref="Spec"/> is the validated
/// policy (authorization_policy.proto): the parser rejects an invalid policy whole, so what is here is exactly what
/// the user wrote, never a widened subset. istiod-lite converts it for ztunnel or the waypoint. Protobuf messages
/// compare by value.
/// </summary>
public sealed record AuthorizationPolicyResource(
    string ApiVersion,
    ObjectMeta Metadata,
    SourceLocation Source,
    Ambient.Core.Protos.AuthorizationPolicies.AuthorizationPolicySpec Spec)
    : Resource(ApiVersion, "AuthorizationPolicy", Metadata, Source)
{
    /// <summary>The annotation that turns enforcement into logging of the would-be decision.</summary>
    public const string DryRunAnnotation = "istio.io/dry-run";

    /// <summary>Go's strconv.ParseBool, which Istio applies to the dry-run annotation; null when it does not parse.</summary>
    public static bool? ParseDryRun(string value) => value switch
    {
        "1" or "t" or "T" or "TRUE" or "true" or "True" => true,
        "0" or "f" or "F" or "FALSE" or "false" or "False" => false,
        _ => null,
    };
}

/// <summary>
/// A PeerAuthentication (<c>security.istio.io/v1</c> or <c>v1beta1</c>). <see cref="Spec"/> is the validated policy
/// (peer_authentication.proto): the parser rejects an invalid one whole. istiod-lite converts the effective mode of each
/// workload into the L4 authorization ztunnel enforces, as Istio's ambient istiod does. Protobuf messages compare by
/// value.
/// </summary>
public sealed record PeerAuthenticationResource(
    string ApiVersion,
    ObjectMeta Metadata,
    SourceLocation Source,
    Ambient.Core.Protos.AuthorizationPolicies.PeerAuthenticationSpec Spec)
    : Resource(ApiVersion, "PeerAuthentication", Metadata, Source);

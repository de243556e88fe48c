namespace Ambient.TestCommon.Kube;

/// <summary>
/// One served resource of the fake API server: what discovery advertises and what the REST paths address.
/// <paramref name="Group"/> is "" for the core group.
/// </summary>
public sealed record KubeResourceType(
    string Group,
    string Version,
    string Resource,
    string Kind,
    bool Namespaced,
    bool HasStatus = false,
    IReadOnlyList<string>? ShortNames = null,
    bool CreateOnly = false)
{
    /// <summary>"v1" for the core group, else "group/version", as objects carry it in apiVersion.</summary>
    public string ApiVersion => Group.Length == 0 ? Version : Group + "/" + Version;

    public string SingularName => Kind.ToLowerInvariant();

    public string ListKind => Kind + "List";

    /// <summary>The key the store files objects under: resource.group/version.</summary>
    internal string Key => Resource + "." + Group + "/" + Version;

    /// <summary>The core types and the groups a mesh deployment touches, as a 1.32 apiserver serves them.</summary>
    public static IReadOnlyList<KubeResourceType> BuiltIn { get; } =
    [
        new("", "v1", "namespaces", "Namespace", Namespaced: false, HasStatus: true, ShortNames: ["ns"]),
        new("", "v1", "nodes", "Node", Namespaced: false, HasStatus: true, ShortNames: ["no"]),
        new("", "v1", "pods", "Pod", Namespaced: true, HasStatus: true, ShortNames: ["po"]),
        new("", "v1", "services", "Service", Namespaced: true, HasStatus: true, ShortNames: ["svc"]),
        new("", "v1", "endpoints", "Endpoints", Namespaced: true, ShortNames: ["ep"]),
        new("", "v1", "serviceaccounts", "ServiceAccount", Namespaced: true, ShortNames: ["sa"]),
        new("", "v1", "configmaps", "ConfigMap", Namespaced: true, ShortNames: ["cm"]),
        new("", "v1", "secrets", "Secret", Namespaced: true),
        new("", "v1", "events", "Event", Namespaced: true, ShortNames: ["ev"]),
        new("apps", "v1", "deployments", "Deployment", Namespaced: true, HasStatus: true, ShortNames: ["deploy"]),
        new("apps", "v1", "daemonsets", "DaemonSet", Namespaced: true, HasStatus: true, ShortNames: ["ds"]),
        new("apps", "v1", "replicasets", "ReplicaSet", Namespaced: true, HasStatus: true, ShortNames: ["rs"]),
        new("apps", "v1", "statefulsets", "StatefulSet", Namespaced: true, HasStatus: true, ShortNames: ["sts"]),
        new("discovery.k8s.io", "v1", "endpointslices", "EndpointSlice", Namespaced: true),
        new("rbac.authorization.k8s.io", "v1", "clusterroles", "ClusterRole", Namespaced: false),
        new("rbac.authorization.k8s.io", "v1", "clusterrolebindings", "ClusterRoleBinding", Namespaced: false),
        new("rbac.authorization.k8s.io", "v1", "roles", "Role", Namespaced: true),
        new("rbac.authorization.k8s.io", "v1", "rolebindings", "RoleBinding", Namespaced: true),
        new("apiextensions.k8s.io", "v1", "customresourcedefinitions", "CustomResourceDefinition", Namespaced: false, HasStatus: true, ShortNames: ["crd", "crds"]),
        new("authentication.k8s.io", "v1", "tokenreviews", "TokenReview", Namespaced: false, CreateOnly: true),
        new("coordination.k8s.io", "v1", "leases", "Lease", Namespaced: true),
        new("policy", "v1", "poddisruptionbudgets", "PodDisruptionBudget", Namespaced: true, HasStatus: true, ShortNames: ["pdb"]),
    ];

    /// <summary>Gateway API v1 (standard channel) kinds the mesh reads, as its CRDs serve them.</summary>
    public static IReadOnlyList<KubeResourceType> GatewayApi { get; } =
    [
        new("gateway.networking.k8s.io", "v1", "gatewayclasses", "GatewayClass", Namespaced: false, HasStatus: true, ShortNames: ["gc"]),
        new("gateway.networking.k8s.io", "v1", "gateways", "Gateway", Namespaced: true, HasStatus: true, ShortNames: ["gtw"]),
        new("gateway.networking.k8s.io", "v1", "httproutes", "HTTPRoute", Namespaced: true, HasStatus: true),
        new("gateway.networking.k8s.io", "v1", "grpcroutes", "GRPCRoute", Namespaced: true, HasStatus: true),
        new("gateway.networking.k8s.io", "v1beta1", "referencegrants", "ReferenceGrant", Namespaced: true, ShortNames: ["refgrant"]),
    ];

    /// <summary>The security.istio.io kinds (AuthorizationPolicy, PeerAuthentication), as Istio's CRDs serve them.</summary>
    public static IReadOnlyList<KubeResourceType> IstioSecurity { get; } =
    [
        new("security.istio.io", "v1", "authorizationpolicies", "AuthorizationPolicy", Namespaced: true, HasStatus: true, ShortNames: ["ap"]),
        new("security.istio.io", "v1", "peerauthentications", "PeerAuthentication", Namespaced: true, HasStatus: true, ShortNames: ["pa"]),
    ];
}

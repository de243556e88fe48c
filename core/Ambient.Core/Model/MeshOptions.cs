namespace Ambient.Core.Model;

/// <summary>Mesh-wide settings that shape every workload and service the builder produces.</summary>
internal sealed record MeshOptions
{
    public static readonly MeshOptions Default = new();

    /// <summary>Cluster id: the first segment of every workload uid and Workload.cluster_id (Istio default "Kubernetes").</summary>
    public string ClusterId { get; init; } = "Kubernetes";

    /// <summary>SPIFFE trust domain of every workload identity.</summary>
    public string TrustDomain { get; init; } = "cluster.local";

    /// <summary>Network name put on workloads, service VIPs and in the <c>network/ip</c> aliases ("" = the default network).</summary>
    public string Network { get; init; } = "";

    /// <summary>DNS suffix of service hostnames: <c>name.ns.svc.&lt;suffix&gt;</c>. Kept apart from the trust domain as in Istio.</summary>
    public string DomainSuffix { get; init; } = "cluster.local";

    /// <summary>Where pods, Service VIPs and nodes get their addresses (loopback, or the netns mode's CIDRs).</summary>
    public AddressRanges Addresses { get; init; } = AddressRanges.Loopback;

    /// <summary>
    /// True when the source holds each waypoint's pod and Service (Kubernetes: istiod-lite's deployment controller
    /// creates the Deployment and Service, the cluster runs the pod); false when the builder adds them, as local mode
    /// runs the waypoint process itself.
    /// </summary>
    public bool WaypointsDeployed { get; init; }
}

/// <summary>Label keys and values users write, exactly as Istio spells them.</summary>
internal static class MeshLabels
{
    public const string DataplaneMode = "istio.io/dataplane-mode";
    public const string DataplaneModeAmbient = "ambient";
    public const string DataplaneModeNone = "none";

    // Canonical service name/revision: Istio looks at its own labels first, then the Kubernetes recommended
    // labels, then the legacy app/version ones.
    public const string CanonicalName = "service.istio.io/canonical-name";
    public const string CanonicalRevision = "service.istio.io/canonical-revision";
    public const string AppKubernetesName = "app.kubernetes.io/name";
    public const string AppKubernetesVersion = "app.kubernetes.io/version";
    public const string App = "app";
    public const string Version = "version";
    public const string DefaultRevision = "latest";
}

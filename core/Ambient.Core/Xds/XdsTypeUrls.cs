namespace Ambient.Core.Xds;

/// <summary>The resource type URLs ztunnels and waypoints subscribe to.</summary>
internal static class XdsTypeUrls
{
    public const string Address = "type.googleapis.com/istio.workload.Address";
    public const string Authorization = "type.googleapis.com/istio.security.Authorization";

    /// <summary>Ambient's own: istiod-lite's trust bundle (see trust_bundle.proto). Optional: never waited for.</summary>
    public const string TrustBundle = "type.googleapis.com/ambient.security.TrustBundle";

    /// <summary>The one TrustBundle resource's name.</summary>
    public const string TrustBundleName = "default";

    /// <summary>Ambient's own, for waypoints: one Gateway API HTTPRoute per resource (see waypoint/route.proto).</summary>
    public const string HttpRoute = "type.googleapis.com/ambient.waypoint.HTTPRoute";

    /// <summary>Ambient's own, for waypoints: which ports of a served Service speak HTTP (see waypoint/route.proto).</summary>
    public const string ServiceProtocols = "type.googleapis.com/ambient.waypoint.ServiceProtocols";

    /// <summary>Ambient's own, for waypoints: the AuthorizationPolicies that target the waypoint's Gateway or a Service
    /// it serves, one per resource (see security/authorization_policy.proto).</summary>
    public const string AuthorizationPolicy = "type.googleapis.com/ambient.security.AuthorizationPolicySpec";
}

namespace Ambient.Core.Xds;

/// <summary>The resource type URLs ztunnel subscribes to.</summary>
internal static class XdsTypeUrls
{
    public const string Address = "type.googleapis.com/istio.workload.Address";
    public const string Authorization = "type.googleapis.com/istio.security.Authorization";

    /// <summary>Ambient's own: istiod-lite's trust bundle (see trust_bundle.proto). Optional: never waited for.</summary>
    public const string TrustBundle = "type.googleapis.com/ambient.security.TrustBundle";

    /// <summary>The one TrustBundle resource's name.</summary>
    public const string TrustBundleName = "default";
}

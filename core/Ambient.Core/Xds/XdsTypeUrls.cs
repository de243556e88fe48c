namespace Ambient.Core.Xds;

/// <summary>The resource type URLs ztunnel subscribes to.</summary>
internal static class XdsTypeUrls
{
    public const string Address = "type.googleapis.com/istio.workload.Address";
    public const string Authorization = "type.googleapis.com/istio.security.Authorization";
}

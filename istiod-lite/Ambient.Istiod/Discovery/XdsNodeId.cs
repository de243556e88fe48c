namespace Ambient.Istiod.Discovery;

/// <summary>
/// An xDS node id as Istio's proxies form it: <c>&lt;type&gt;~&lt;ip&gt;~&lt;pod&gt;.&lt;namespace&gt;~&lt;namespace&gt;.svc.&lt;domain&gt;</c>
/// (pilot/pkg/model ServiceNode). The type says which proxy is asking: <c>ztunnel</c>, <c>waypoint</c> (ours) or
/// <c>router</c> (Istio's Envoy gateways and waypoints).
/// </summary>
internal readonly record struct XdsNodeId(string Type, string Ip, string PodName, string Namespace)
{
    public const string WaypointType = "waypoint";
    public const string RouterType = "router";

    public static bool TryParse(string nodeId, out XdsNodeId id)
    {
        id = default;
        var parts = nodeId.Split('~');
        if (parts.Length != 4 || parts[0].Length == 0 || parts[2].Length == 0 || parts[3].Length == 0)
        {
            return false;
        }
        // The namespace is the first label of the DNS domain; the pod is the id part without ".<namespace>".
        var dot = parts[3].IndexOf('.', StringComparison.Ordinal);
        var ns = dot < 0 ? parts[3] : parts[3][..dot];
        var pod = parts[2].EndsWith("." + ns, StringComparison.Ordinal) ? parts[2][..^(ns.Length + 1)] : parts[2];
        if (ns.Length == 0 || pod.Length == 0)
        {
            return false;
        }
        id = new XdsNodeId(parts[0], parts[1], pod, ns);
        return true;
    }

    public override string ToString() => $"{Type}~{Ip}~{PodName}.{Namespace}~{Namespace}.svc.cluster.local";
}

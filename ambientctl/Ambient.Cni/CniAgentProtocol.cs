using System.Text.Json.Serialization;

namespace Ambient.Cni;

/// <summary>
/// What the plugin tells the node agent about a pod sandbox (istio-cni's plugin event): one JSON line over the agent's
/// Unix stream socket, answered by one <see cref="CniAgentResponse"/> line. An ADD is answered once the pod is enrolled
/// (capture rules in its namespace, acked by the ztunnel) or known to stay out of the mesh; a DEL once it was released.
/// </summary>
/// <param name="Command">ADD or DEL (the CNI command that ran).</param>
/// <param name="Netns">CNI_NETNS as the runtime gave it (a path on the host).</param>
internal sealed record CniAgentRequest(string Command, string PodNamespace, string PodName, string? PodUid, string? Netns, string ContainerId);

/// <summary>The agent's answer: <paramref name="Error"/> is null when the pod may start.</summary>
/// <param name="Enrolled">Whether the pod was put in the mesh (for the plugin's own log line).</param>
internal sealed record CniAgentResponse(string? Error, bool Enrolled);

[JsonSerializable(typeof(CniAgentRequest))]
[JsonSerializable(typeof(CniAgentResponse))]
[JsonSourceGenerationOptions(PropertyNamingPolicy = JsonKnownNamingPolicy.CamelCase, DefaultIgnoreCondition = JsonIgnoreCondition.WhenWritingNull)]
internal sealed partial class CniAgentJson : JsonSerializerContext;

/// <summary>Names the plugin and the agent agree on.</summary>
internal static class CniNames
{
    /// <summary>The plugin's file name in the CNI bin folder and its <c>type</c> in the chain.</summary>
    public const string PluginType = "ambient-cni";

    /// <summary>Where the agent listens for the plugin (a hostPath both see at the same path).</summary>
    public const string DefaultAgentSocket = "/var/run/ambient-cni/pluginevent.sock";

    /// <summary>The kubeconfig the agent writes next to the CNI configs (sorted last, not a .conf: never taken for a network).</summary>
    public const string KubeconfigFile = "ZZZ-ambient-cni-kubeconfig";

    /// <summary>The label that puts a pod or a namespace in the mesh, and its values (MeshLabels in Ambient.Core).</summary>
    public const string DataplaneModeLabel = "istio.io/dataplane-mode";
    public const string DataplaneModeAmbient = "ambient";
    public const string DataplaneModeNone = "none";
}

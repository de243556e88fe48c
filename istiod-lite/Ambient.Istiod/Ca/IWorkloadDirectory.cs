using Ambient.Core.Identity;

namespace Ambient.Istiod.Ca;

/// <summary>
/// What the CA needs to know about running pods. Implemented from the mesh snapshot by the integrator.
/// </summary>
internal interface IWorkloadDirectory
{
    /// <summary>
    /// True when a live pod running <paramref name="identity"/>'s namespace and service account is scheduled on
    /// <paramref name="node"/>: Istio's rule for letting a node proxy impersonate a pod.
    /// </summary>
    bool HasPodOnNode(string node, SpiffeId identity);

    /// <summary>
    /// The pod <paramref name="namespace"/>/<paramref name="name"/> as the config source knows it: how Kubernetes
    /// mode finds the node of the pod a service-account token is bound to.
    /// </summary>
    bool TryGetPod(string @namespace, string name, out KnownPod pod);
}

/// <summary>The facts about a pod the CA checks a caller against.</summary>
/// <param name="Uid"><c>metadata.uid</c>; null when the source does not know it (then no token can match it).</param>
internal readonly record struct KnownPod(string? Uid, string ServiceAccount, string? Node);

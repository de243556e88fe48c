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
}

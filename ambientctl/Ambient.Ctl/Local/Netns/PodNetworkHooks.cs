using System.Net;

namespace Ambient.Ctl.Local.Netns;

/// <summary>
/// One pod's network namespace as netns mode made it: the namespace exists, its <c>eth0</c> has
/// <see cref="Address"/>, its default route goes to its node's bridge, and no program of the pod runs in it yet
/// when <see cref="IPodNetworkHooks.PodSandboxReadyAsync"/> sees it.
/// </summary>
/// <param name="NetnsName">The name under /run/netns (`ip netns exec NAME ...`).</param>
/// <param name="NetnsPath">/run/netns/NAME: open it (O_RDONLY) for a netns file descriptor, as istio-cni does.</param>
/// <param name="InMesh">Enrolled (istio.io/dataplane-mode of the pod, else of its namespace) as of the latest config.</param>
internal sealed record PodSandbox(
    string Namespace, string Pod, string Node, IPAddress Address, string ServiceAccount, string NetnsName, string NetnsPath, bool InMesh);

/// <summary>
/// Where a node agent plugs into `local up --network netns` (the role istio-cni plays for the kubelet). Calls for one pod
/// never overlap; a hook that throws fails what it was called for (the pod does not start, and the config's errors say why).
/// </summary>
internal interface IPodNetworkHooks
{
    /// <summary>
    /// After the pod's namespace exists and BEFORE any of its programs starts: the programs start when this completes,
    /// so a node agent enrols the pod here and returns once its ztunnel has confirmed it (Istio's startup race, istio#42850).
    /// </summary>
    Task PodSandboxReadyAsync(PodSandbox pod, CancellationToken cancellationToken);

    /// <summary>The pod's enrolment changed (a relabel): <see cref="PodSandbox.InMesh"/> is the new value; no pod restarts.</summary>
    Task PodEnrolmentChangedAsync(PodSandbox pod, CancellationToken cancellationToken);

    /// <summary>The pod's programs have stopped and its namespace is about to be deleted: unenrol it.</summary>
    Task PodSandboxRemovingAsync(PodSandbox pod, CancellationToken cancellationToken);
}

/// <summary>No node agent: pods run uncaptured (what netns mode does until capture arrives).</summary>
internal sealed class NoPodNetworkHooks : IPodNetworkHooks
{
    public static NoPodNetworkHooks Instance { get; } = new();

    public Task PodSandboxReadyAsync(PodSandbox pod, CancellationToken cancellationToken) => Task.CompletedTask;

    public Task PodEnrolmentChangedAsync(PodSandbox pod, CancellationToken cancellationToken) => Task.CompletedTask;

    public Task PodSandboxRemovingAsync(PodSandbox pod, CancellationToken cancellationToken) => Task.CompletedTask;
}

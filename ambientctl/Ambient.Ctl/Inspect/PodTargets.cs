using Ambient.Core.Config;
using Ambient.Ctl.Local;

namespace Ambient.Ctl.Inspect;

/// <summary>
/// Which pods a Deployment owns. kubectl matches the Deployment's selector; until the config parser types
/// Deployments, the pods it generates are recognised as Kubernetes names them: label <c>pod-template-hash=H</c> and name
/// <c>&lt;deployment&gt;-&lt;H&gt;-&lt;suffix&gt;</c>. A selector-based resolver replaces this one behind the same seam.
/// </summary>
internal interface IDeploymentPods
{
    /// <summary>The pods of <paramref name="@namespace"/>/<paramref name="deployment"/>, by name, sorted; null when there is no such Deployment.</summary>
    List<string>? Pods(IReadOnlyList<Resource> resources, string @namespace, string deployment);
}

internal sealed class TemplateHashDeploymentPods : IDeploymentPods
{
    public const string TemplateHashLabel = "pod-template-hash";
    public static TemplateHashDeploymentPods Instance { get; } = new();

    public List<string>? Pods(IReadOnlyList<Resource> resources, string @namespace, string deployment)
    {
        var declared = false;
        var pods = new List<string>();
        foreach (var r in resources)
        {
            if (r.Metadata.Namespace != @namespace) continue;
            if (r.Kind == "Deployment" && r.Metadata.Name == deployment) declared = true;
            if (r is PodResource pod && pod.Metadata.Label(TemplateHashLabel) is { Length: > 0 } hash
                && pod.Metadata.Name.StartsWith(deployment + "-" + hash + "-", StringComparison.Ordinal))
            {
                pods.Add(pod.Metadata.Name);
            }
        }
        if (!declared && pods.Count == 0) return null;
        pods.Sort(StringComparer.Ordinal);
        return pods;
    }
}

/// <summary>
/// Names a pod as kubectl's exec and logs take it: <c>NAME</c>, <c>pod/NAME</c> or <c>deploy/NAME</c> (the first
/// ready pod of the Deployment), and, as exec always took, <c>NAMESPACE/NAME</c>.
/// </summary>
internal static class PodTargets
{
    private static readonly string[] DeploymentPrefixes = ["deploy/", "deployment/", "deployments/", "deployment.apps/"];
    private static readonly string[] PodPrefixes = ["pod/", "pods/", "po/"];

    /// <summary>
    /// The pod name to look up (and its namespace when the target names one), or null with an error. A Deployment is
    /// resolved against <paramref name="readConfig"/>'s pods and <paramref name="state"/>'s running processes.
    /// </summary>
    public static (string Name, string? Namespace)? Resolve(string target, string? @namespace, LocalState state, Func<IReadOnlyList<Resource>> readConfig,
        IDeploymentPods deployments, string verb, out string? error)
    {
        error = null;
        foreach (var prefix in PodPrefixes)
        {
            if (target.StartsWith(prefix, StringComparison.OrdinalIgnoreCase)) return (target[prefix.Length..], @namespace);
        }
        foreach (var prefix in DeploymentPrefixes)
        {
            if (!target.StartsWith(prefix, StringComparison.OrdinalIgnoreCase)) continue;
            var deployment = target[prefix.Length..];
            var ns = @namespace ?? "default";
            var pods = deployments.Pods(readConfig(), ns, deployment);
            if (pods is null)
            {
                error = $"{verb}: deployments.apps \"{deployment}\" not found in namespace {ns}";
                return null;
            }
            foreach (var pod in pods)
            {
                if (IsReady(state, ns, pod)) return (pod, ns);
            }
            error = pods.Count == 0
                ? $"{verb}: deployment {ns}/{deployment} has no pods"
                : $"{verb}: no ready pod of deployment {ns}/{deployment} (pods: {string.Join(", ", pods)}); see `ambientctl get pods -n {ns}`";
            return null;
        }
        var slash = target.IndexOf('/', StringComparison.Ordinal);
        return slash > 0 ? (target[(slash + 1)..], target[..slash]) : (target, @namespace);
    }

    /// <summary>Every container of the pod has a running process.</summary>
    private static bool IsReady(LocalState state, string @namespace, string pod)
    {
        var any = false;
        foreach (var c in state.Components)
        {
            if (c.Pod is not { } p || p.Namespace != @namespace || p.Name != pod) continue;
            if (c.Pid <= 0) return false;
            any = true;
        }
        return any;
    }
}

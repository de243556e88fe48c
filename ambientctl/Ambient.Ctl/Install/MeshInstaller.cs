using k8s;
using k8s.Models;

namespace Ambient.Ctl.Install;

/// <summary>
/// `ambientctl install`: applies manifests/ in its order, creating the mesh CA (<see cref="MeshCaBootstrap"/>) once
/// the namespaces exist and before any workload, so istiod-lite and the ztunnels find their CA material at start.
/// Istio's own security.istio.io CRDs, when installed, are left as they are (theirs are a superset of ours).
/// </summary>
internal static class MeshInstaller
{
    private const string PartOfLabel = "app.kubernetes.io/part-of";
    private const string PartOf = "ambient";

    public static async Task InstallAsync(IKubernetes client, IReadOnlyList<IKubernetesObject<V1ObjectMeta>> manifests, string trustDomain,
        Action<string> report, CancellationToken cancellationToken)
    {
        var caDone = false;
        foreach (var resource in manifests)
        {
            if (!caDone && resource is not V1Namespace)
            {
                foreach (var line in await MeshCaBootstrap.EnsureAsync(client, trustDomain, cancellationToken).ConfigureAwait(false)) report(line);
                caDone = true;
            }
            if (resource is V1CustomResourceDefinition crd && await IsForeignAsync(client, crd, cancellationToken).ConfigureAwait(false))
            {
                report($"{ClusterApplier.Describe(resource)} kept: installed by someone else (Istio's CRDs serve the same kinds)");
                continue;
            }
            var outcome = await ClusterApplier.ApplyAsync(client, resource, cancellationToken).ConfigureAwait(false);
            report($"{ClusterApplier.Describe(resource)} {(outcome == ApplyOutcome.Created ? "created" : "updated")}");
        }
        if (!caDone)
        {
            foreach (var line in await MeshCaBootstrap.EnsureAsync(client, trustDomain, cancellationToken).ConfigureAwait(false)) report(line);
        }
    }

    private static async Task<bool> IsForeignAsync(IKubernetes client, V1CustomResourceDefinition crd, CancellationToken cancellationToken)
    {
        var existing = await KubeReads.OrNullAsync(() => client.ApiextensionsV1.ReadCustomResourceDefinitionAsync(crd.Name(), cancellationToken: cancellationToken)).ConfigureAwait(false);
        if (existing is null) return false;
        return existing.Metadata?.Labels is not { } labels || !labels.TryGetValue(PartOfLabel, out var partOf) || partOf != PartOf;
    }
}

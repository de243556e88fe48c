using System.Collections.Immutable;
using Ambient.Core.Config;
using Ambient.Core.Protos.AuthorizationPolicies;
using Ambient.Core.Protos.Security;

namespace Ambient.Istiod.Authz;

/// <summary>Where a PeerAuthentication applies: the whole mesh, one namespace, the workloads it selects, or nowhere.</summary>
internal enum PeerAuthenticationLevel
{
    Mesh,
    Namespace,
    Workload,

    /// <summary>A selector policy in the root namespace: Istio's ambient path never applies it.</summary>
    Ignored,
}

/// <summary>
/// One PeerAuthentication after conversion: its level, the resource pushed to ztunnel for its ports (null when it
/// needs none: the static STRICT policy or nothing does its work) and how enforcement differs from what was written.
/// </summary>
internal sealed record ConvertedPeerAuthentication(
    PeerAuthenticationResource Resource,
    PeerAuthenticationLevel Level,
    Authorization? Xds,
    ImmutableArray<string> Warnings)
{
    public string Key => Resource.Spec.Namespace + "/" + Resource.Spec.Name;

    public PeerAuthenticationSpec Spec => Resource.Spec;
}

/// <summary>The PeerAuthentications of one config generation, converted as policies.go PolicyCollections does.</summary>
internal static class PeerAuthenticationSet
{
    /// <summary>Converts <paramref name="resources"/> (one per name), returned in creation (file) order.</summary>
    public static ImmutableArray<ConvertedPeerAuthentication> Convert(IEnumerable<PeerAuthenticationResource> resources, string rootNamespace)
    {
        var ordered = resources.ToList();
        if (ordered.Count == 0) return [];
        ordered.Sort(static (a, b) => SourceOrder.Compare(a.Source, b.Source));
        var result = ImmutableArray.CreateBuilder<ConvertedPeerAuthentication>(ordered.Count);
        foreach (var r in ordered)
        {
            var pa = r.Spec;
            var warnings = ImmutableArray.CreateBuilder<string>();
            var level = pa.Namespace == rootNamespace
                ? pa.MatchLabels.Count == 0 ? PeerAuthenticationLevel.Mesh : PeerAuthenticationLevel.Ignored
                : pa.MatchLabels.Count == 0 ? PeerAuthenticationLevel.Namespace : PeerAuthenticationLevel.Workload;
            if (level == PeerAuthenticationLevel.Ignored)
            {
                warnings.Add($"a policy with a selector in the root namespace ({rootNamespace}) applies to no workload in ambient mode; put it in the workloads' namespace");
            }
            if (level is PeerAuthenticationLevel.Mesh or PeerAuthenticationLevel.Namespace
                && OldestWithoutLabels(ordered, pa.Namespace) is { } oldest && oldest != r)
            {
                warnings.Add($"ignored: {oldest.Spec.Namespace}/{oldest.Spec.Name} is older (earlier in file order) and applies to the same {(level == PeerAuthenticationLevel.Mesh ? "mesh" : "namespace")}");
            }
            if (pa.Mode == MutualTlsMode.Disable || pa.PortLevelMtls.Values.Contains(MutualTlsMode.Disable))
            {
                warnings.Add("DISABLE is enforced as PERMISSIVE: ztunnel accepts plaintext there, and traffic between mesh workloads stays mTLS (HBONE)");
            }
            // policies.go: the namespace and root policies a workload policy is merged with are the oldest of their
            // namespace without any selector.
            var xds = PeerAuthenticationConverter.Convert(rootNamespace, pa,
                OldestWithoutSelector(ordered, pa.Namespace)?.Spec, OldestWithoutSelector(ordered, rootNamespace)?.Spec);
            if (xds is null && level == PeerAuthenticationLevel.Workload && pa.Mode is MutualTlsMode.Permissive or MutualTlsMode.Disable
                && pa.PortLevelMtls.Values.Contains(MutualTlsMode.Strict))
            {
                warnings.Add("its STRICT ports are left to the mesh-wide STRICT policy, which this workload's own mode overrides: ztunnel does not enforce them (as Istio's convertPeerAuthentication has it); add a namespace policy or make the workload STRICT with PERMISSIVE ports");
            }
            result.Add(new ConvertedPeerAuthentication(r, level, xds, warnings.ToImmutable()));
        }
        return result.MoveToImmutable();
    }

    /// <summary>The names a workload of <paramref name="ns"/> with <paramref name="labels"/> lists for its effective
    /// PeerAuthentication (workloads.go fetchPeerAuthentications, then convertedSelectorPeerAuthentications).</summary>
    public static ImmutableArray<string> EffectiveKeys(ImmutableArray<ConvertedPeerAuthentication> all, string rootNamespace, string ns, IReadOnlyDictionary<string, string> labels)
    {
        if (all.IsEmpty) return [];
        var applicable = new List<PeerAuthenticationSpec>();
        foreach (var p in all)
        {
            if (PeerAuthenticationConverter.Applies(rootNamespace, p.Spec, ns, labels)) applicable.Add(p.Spec);
        }
        return PeerAuthenticationConverter.EffectiveKeys(rootNamespace, applicable);
    }

    private static PeerAuthenticationResource? OldestWithoutSelector(List<PeerAuthenticationResource> ordered, string ns) =>
        ordered.Find(p => p.Spec.Namespace == ns && !p.Spec.HasSelector);

    private static PeerAuthenticationResource? OldestWithoutLabels(List<PeerAuthenticationResource> ordered, string ns) =>
        ordered.Find(p => p.Spec.Namespace == ns && p.Spec.MatchLabels.Count == 0);
}

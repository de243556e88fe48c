using System.Collections.Immutable;
using Ambient.Core.Config;
using Ambient.Core.Model;
using Ambient.Core.Protos.AuthorizationPolicies;
using Ambient.Core.Protos.Security;

namespace Ambient.Istiod.Authz;

/// <summary>
/// Every AuthorizationPolicy and PeerAuthentication of one config generation, converted, plus what ztunnel receives:
/// the Authorization resources and, on each workload, the names of the selector policies that select it
/// (Workload.authorization_policies, as Istio sends them: ztunnel applies namespace and mesh-wide policies by scope,
/// selector policies only by that list) followed by those its effective PeerAuthentication calls for.
/// </summary>
internal sealed class PolicySet
{
    private PolicySet(ImmutableArray<ConvertedPolicy> policies, ImmutableArray<Authorization> forZtunnel, ImmutableArray<ConvertedPeerAuthentication> peerAuthentications)
    {
        Policies = policies;
        ForZtunnel = forZtunnel;
        PeerAuthentications = peerAuthentications;
    }

    public static PolicySet Empty { get; } = new([], [], []);

    /// <summary>All AuthorizationPolicies, sorted by <c>namespace/name</c>.</summary>
    public ImmutableArray<ConvertedPolicy> Policies { get; }

    /// <summary>All PeerAuthentications, in creation (file) order: the first of a level is the one that counts.</summary>
    public ImmutableArray<ConvertedPeerAuthentication> PeerAuthentications { get; }

    /// <summary>The Authorization resources pushed to ztunnel: the AuthorizationPolicies' in the same order, then the
    /// PeerAuthentications' (the static STRICT policy first, when any PeerAuthentication exists).</summary>
    public ImmutableArray<Authorization> ForZtunnel { get; }

    /// <summary>Converts every policy of <paramref name="resources"/>; of two with one name the first (in file order) wins.</summary>
    public static PolicySet Build(IEnumerable<Resource> resources, string rootNamespace)
    {
        var byKey = new SortedDictionary<string, ConvertedPolicy>(StringComparer.Ordinal);
        var peerByKey = new Dictionary<string, PeerAuthenticationResource>(StringComparer.Ordinal);
        foreach (var r in resources)
        {
            if (r is PeerAuthenticationResource peer)
            {
                if (!peerByKey.TryGetValue(peer.Key, out var firstPeer) || SourceOrder.Compare(peer.Source, firstPeer.Source) < 0)
                {
                    peerByKey[peer.Key] = peer;
                }
                continue;
            }
            if (r is not AuthorizationPolicyResource policy) continue;
            var converted = AuthorizationPolicyConverter.Convert(policy, rootNamespace);
            if (!byKey.TryGetValue(converted.Key, out var first) || SourceOrder.Compare(policy.Source, first.Resource.Source) < 0)
            {
                byKey[converted.Key] = converted;
            }
        }
        if (byKey.Count == 0 && peerByKey.Count == 0) return Empty;
        var policies = ImmutableArray.CreateBuilder<ConvertedPolicy>(byKey.Count);
        var forZtunnel = ImmutableArray.CreateBuilder<Authorization>();
        foreach (var p in byKey.Values)
        {
            policies.Add(p);
            if (p.Xds is not null) forZtunnel.Add(p.Xds);
        }
        var peerAuthentications = PeerAuthenticationSet.Convert(peerByKey.Values, rootNamespace);
        if (!peerAuthentications.IsEmpty)
        {
            // policies.go DefaultPolicy: pushed whenever any PeerAuthentication exists, named by the STRICT workloads.
            forZtunnel.Add(PeerAuthenticationConverter.StaticStrict(rootNamespace));
        }
        foreach (var p in peerAuthentications)
        {
            if (p.Xds is not null) forZtunnel.Add(p.Xds);
        }
        return new PolicySet(policies.MoveToImmutable(), forZtunnel.ToImmutable(), peerAuthentications);
    }

    /// <summary>
    /// <paramref name="snapshot"/> with each workload's authorization_policies set: the selector policies of its own
    /// namespace and of the root namespace whose matchLabels its labels contain, sorted. The same snapshot when no
    /// workload's list changes.
    /// </summary>
    public MeshSnapshot Attach(MeshSnapshot snapshot, string rootNamespace)
    {
        var selectors = new List<ConvertedPolicy>();
        foreach (var p in Policies)
        {
            if (p.Xds is { Scope: Scope.WorkloadSelector }) selectors.Add(p);
        }
        if (selectors.Count == 0 && PeerAuthentications.IsEmpty && !AnyWithPolicies(snapshot))
        {
            // Nothing names any workload, and no workload carries a list to clear: no per-workload pass (and no
            // per-workload allocation) on every generation of a mesh without selector policies.
            return snapshot;
        }
        var changed = false;
        var workloads = new WorkloadInfo[snapshot.Workloads.Length];
        for (var i = 0; i < workloads.Length; i++)
        {
            var w = snapshot.Workloads[i];
            var names = ImmutableArray.CreateBuilder<string>();
            foreach (var p in selectors)
            {
                if ((p.Spec.Namespace == w.Namespace || p.Spec.Namespace == rootNamespace) && Selects(p, w)) names.Add(p.Key);
            }
            // Policies are sorted by key, so the list is too; the PeerAuthentication names follow, as Istio appends them.
            names.AddRange(PeerAuthenticationSet.EffectiveKeys(PeerAuthentications, rootNamespace, w.Namespace, w.Labels));
            var list = names.DrainToImmutable();
            if (!list.AsSpan().SequenceEqual(w.AuthorizationPolicies.AsSpan()))
            {
                w = w with { AuthorizationPolicies = list };
                changed = true;
            }
            workloads[i] = w;
        }
        // The Gateway API side (waypoints, routes) goes along: without it istiod would lose every waypoint.
        return changed ? MeshSnapshot.Create(workloads, snapshot.Services, snapshot.Options, snapshot.NodeAddresses, snapshot.Problems, snapshot.GatewayApi) : snapshot;
    }

    private static bool AnyWithPolicies(MeshSnapshot snapshot)
    {
        foreach (var w in snapshot.Workloads)
        {
            if (!w.AuthorizationPolicies.IsEmpty) return true;
        }
        return false;
    }

    /// <summary>
    /// Per waypoint (<c>ns/name</c>): the specs of the policies it enforces, those whose targetRefs name its Gateway
    /// or a Service whose waypoint it is (sorted by key, each once). Waypoints without any are left out.
    /// </summary>
    public ImmutableDictionary<string, ImmutableArray<AuthorizationPolicySpec>> ForWaypoints(MeshSnapshot snapshot)
    {
        var byWaypoint = new Dictionary<string, List<AuthorizationPolicySpec>>(StringComparer.Ordinal);
        foreach (var p in Policies)
        {
            if (p.EnforcedBy != PolicyEnforcement.Waypoint) continue;
            var sentTo = new HashSet<string>(StringComparer.Ordinal);
            foreach (var target in p.Spec.TargetRefs)
            {
                if (WaypointOf(snapshot, p.Spec, target) is { } waypoint && sentTo.Add(waypoint.Key))
                {
                    if (!byWaypoint.TryGetValue(waypoint.Key, out var list)) byWaypoint[waypoint.Key] = list = [];
                    list.Add(p.Spec);
                }
            }
        }
        var builder = ImmutableDictionary.CreateBuilder<string, ImmutableArray<AuthorizationPolicySpec>>(StringComparer.Ordinal);
        foreach (var (key, list) in byWaypoint) builder[key] = [.. list];
        return builder.ToImmutable();
    }

    /// <summary>The waypoint a targetRef attaches the policy to: the Gateway itself when it is a waypoint, or the
    /// waypoint of the Service (istio.io/use-waypoint); null when there is none (nobody enforces the policy there).</summary>
    internal static WaypointInfo? WaypointOf(MeshSnapshot snapshot, AuthorizationPolicySpec spec, PolicyTargetReference target)
    {
        var ns = target.Namespace.Length > 0 ? target.Namespace : spec.Namespace;
        if (target.Kind == "Gateway" && target.Group == HttpRouteBinder.GatewayGroup)
        {
            return snapshot.FindWaypoint(ns, target.Name);
        }
        if (target.Kind == "Service" && target.Group is "" or "core"
            && snapshot.FindServiceByKey(ns + "/" + ServiceInfo.KubernetesHostname(target.Name, ns, snapshot.Options.DomainSuffix)) is { } service
            && service.Waypoint?.Host is { } host)
        {
            return snapshot.FindWaypointByService(host);
        }
        return null;
    }

    private static bool Selects(ConvertedPolicy policy, WorkloadInfo workload)
    {
        foreach (var (key, value) in policy.Spec.MatchLabels)
        {
            if (!workload.Labels.TryGetValue(key, out var actual) || actual != value) return false;
        }
        return true;
    }
}

using System.Collections.Immutable;
using System.Runtime.CompilerServices;
using Ambient.Core.Model;
using Ambient.Core.Protos.Security;

namespace Ambient.Core.Authz;

/// <summary>Why an L4 decision came out as it did.</summary>
internal enum L4DecisionReason
{
    /// <summary>No ALLOW policy applies to the workload and no DENY matched.</summary>
    NoAllowPolicies,

    /// <summary><see cref="L4Decision.Policy"/> is the ALLOW policy that matched.</summary>
    AllowMatched,

    /// <summary><see cref="L4Decision.Policy"/> is the DENY policy that matched.</summary>
    DenyMatched,

    /// <summary>ALLOW policies apply and none matched.</summary>
    NoAllowMatched,
}

/// <summary>
/// The outcome for one connection and the policy that decided it (null when no single policy did), plus what the
/// dry-run policies would have made of it: <see cref="DryRun"/> is null when none applies to the workload.
/// </summary>
internal readonly record struct L4Decision(bool Allowed, L4DecisionReason Reason, L4Policy? Policy, L4DryRunDecision? DryRun = null)
{
    /// <summary>For logs, in istio/ztunnel's words (its AuthorizationRejectionError): "explicitly denied by: ns/name",
    /// "allow policies exist, but none allowed", "allowed by: ns/name", "no allow policies".</summary>
    public string Describe() => Describe(Reason, Policy);

    internal static string Describe(L4DecisionReason reason, L4Policy? policy) => reason switch
    {
        L4DecisionReason.DenyMatched => "explicitly denied by: " + policy!.Key,
        L4DecisionReason.AllowMatched => "allowed by: " + policy!.Key,
        L4DecisionReason.NoAllowMatched => "allow policies exist, but none allowed",
        _ => "no allow policies",
    };
}

/// <summary>What the decision would have been had the dry-run policies been enforced along with the others.</summary>
internal readonly record struct L4DryRunDecision(bool WouldAllow, L4DecisionReason Reason, L4Policy? Policy)
{
    public string Describe() => (WouldAllow ? "dry-run policies would allow: " : "dry-run policies would deny: ") + L4Decision.Describe(Reason, Policy);
}

/// <summary>
/// The pushed istio.security.Authorization resources compiled once per xDS update, immutable, and the L4 decision
/// exactly as istio/ztunnel's <c>DemandProxyState::assert_rbac</c> makes it: the policies of the destination
/// workload's namespace (NAMESPACE scope), the mesh-wide ones (GLOBAL scope: pushed from the root namespace, they
/// apply everywhere) and those named in its <c>authorization_policies</c> (WORKLOAD_SELECTOR); DENY first (any match
/// denies), then no ALLOW policy -> allow, an ALLOW match -> allow, otherwise deny. Actions other than ALLOW and DENY
/// (istiod sends neither AUDIT nor CUSTOM to ztunnel) never change the decision. Dry-run policies are evaluated for
/// the log only.
/// </summary>
internal sealed class L4Authorizer
{
    public static readonly L4Authorizer Empty = new([], []);

    private readonly Dictionary<string, L4Policy> _byKey;
    private readonly L4Policy[] _global;
    private readonly Dictionary<string, L4Policy[]> _byNamespace;

    // Resolved per workload instance: a new snapshot brings new WorkloadInfo objects and a new authorizer brings a
    // new table, so an entry never outlives what it was computed from.
    private readonly ConditionalWeakTable<WorkloadInfo, WorkloadPolicies> _resolved = new();

    private L4Authorizer(ImmutableArray<L4Policy> policies, ImmutableArray<string> skipped)
    {
        Policies = policies;
        Skipped = skipped;
        _byKey = new Dictionary<string, L4Policy>(StringComparer.Ordinal);
        var global = new List<L4Policy>();
        var byNamespace = new Dictionary<string, List<L4Policy>>(StringComparer.Ordinal);
        foreach (var p in policies)
        {
            _byKey[p.Key] = p;
        }
        // The last one pushed under a key wins, as in ztunnel's PolicyStore; index only those.
        foreach (var p in _byKey.Values)
        {
            switch (p.Scope)
            {
                case Scope.Global:
                    global.Add(p);
                    break;
                case Scope.Namespace:
                    if (!byNamespace.TryGetValue(p.Namespace, out var list))
                    {
                        byNamespace[p.Namespace] = list = [];
                    }
                    list.Add(p);
                    break;
            }
        }
        _global = [.. global];
        _byNamespace = new Dictionary<string, L4Policy[]>(StringComparer.Ordinal);
        foreach (var (ns, list) in byNamespace)
        {
            _byNamespace[ns] = [.. list];
        }
    }

    /// <summary>Every compiled policy, in push order.</summary>
    public ImmutableArray<L4Policy> Policies { get; }

    /// <summary>Resources that could not be used, one line each (an unknown action), for the xDS log.</summary>
    public ImmutableArray<string> Skipped { get; }

    public static L4Authorizer Build(IEnumerable<Authorization> authorizations)
    {
        ArgumentNullException.ThrowIfNull(authorizations);
        var policies = ImmutableArray.CreateBuilder<L4Policy>();
        var skipped = ImmutableArray.CreateBuilder<string>();
        foreach (var a in authorizations)
        {
            if (a.Action is not (Protos.Security.Action.Allow or Protos.Security.Action.Deny))
            {
                skipped.Add($"authorization {a.Namespace}/{a.Name}: action {(int)a.Action} is neither ALLOW nor DENY; it never changes a decision");
            }
            policies.Add(L4Policy.Compile(a));
        }
        return new L4Authorizer(policies.ToImmutable(), skipped.ToImmutable());
    }

    public L4Policy? Find(string key) => _byKey.GetValueOrDefault(key);

    /// <summary>Decides <paramref name="connection"/> to <paramref name="destination"/>. Allocates nothing once the
    /// workload's policy list is resolved (the first decision for each workload instance).</summary>
    public L4Decision Evaluate(WorkloadInfo destination, in L4Connection connection)
    {
        ArgumentNullException.ThrowIfNull(destination);
        if (!_resolved.TryGetValue(destination, out var policies))
        {
            policies = _resolved.GetValue(destination, Resolve);
        }
        var peer = new L4Peer(connection.SourceIdentity);
        var (allowed, reason, policy) = Decide(policies.Enforced, connection, peer);
        L4DryRunDecision? dryRun = null;
        if (policies.WithDryRun is { } withDryRun)
        {
            var (wouldAllow, dryReason, dryPolicy) = Decide(withDryRun, connection, peer);
            dryRun = new L4DryRunDecision(wouldAllow, dryReason, dryPolicy);
        }
        return new L4Decision(allowed, reason, policy, dryRun);
    }

    private static (bool, L4DecisionReason, L4Policy?) Decide(L4PolicyIndex policies, in L4Connection connection, in L4Peer peer)
    {
        // Only the policies that can match this peer, in order: the first that matches is the same as in a full scan.
        var candidates = policies.For(peer);
        // "If there are any DENY policies that match the request, deny the request."
        foreach (var p in candidates.Deny)
        {
            if (p.Matches(connection, peer))
            {
                return (false, L4DecisionReason.DenyMatched, p);
            }
        }
        // "If there are no ALLOW policies for the workload, allow the request."
        if (!policies.HasAllow)
        {
            return (true, L4DecisionReason.NoAllowPolicies, null);
        }
        // "If any of the ALLOW policies match the request, allow the request."
        foreach (var p in candidates.Allow)
        {
            if (p.Matches(connection, peer))
            {
                return (true, L4DecisionReason.AllowMatched, p);
            }
        }
        return (false, L4DecisionReason.NoAllowMatched, null);
    }

    /// <summary>The workload's policies in ztunnel's order: its namespace's, the global ones, then those it names
    /// (a name not pushed (yet) is skipped, as ztunnel skips an unknown policy).</summary>
    private WorkloadPolicies Resolve(WorkloadInfo workload)
    {
        var all = new List<L4Policy>();
        if (_byNamespace.TryGetValue(workload.Namespace, out var ns))
        {
            all.AddRange(ns);
        }
        all.AddRange(_global);
        foreach (var name in workload.AuthorizationPolicies)
        {
            if (_byKey.TryGetValue(name, out var p))
            {
                all.Add(p);
            }
        }
        var deny = new List<L4Policy>();
        var allow = new List<L4Policy>();
        var denyWithDryRun = new List<L4Policy>();
        var allowWithDryRun = new List<L4Policy>();
        bool hasDryRun = false;
        foreach (var p in all)
        {
            var (enforced, withDryRun) = p.Action switch
            {
                Protos.Security.Action.Deny => (deny, denyWithDryRun),
                Protos.Security.Action.Allow => (allow, allowWithDryRun),
                _ => (null, null),
            };
            if (enforced is null)
            {
                continue;
            }
            hasDryRun |= p.DryRun;
            if (!p.DryRun)
            {
                enforced.Add(p);
            }
            withDryRun!.Add(p);
        }
        return new WorkloadPolicies(new L4PolicyIndex([.. deny], [.. allow]),
            hasDryRun ? new L4PolicyIndex([.. denyWithDryRun], [.. allowWithDryRun]) : null);
    }

    /// <param name="WithDryRun">null when no dry-run policy applies.</param>
    private sealed record WorkloadPolicies(L4PolicyIndex Enforced, L4PolicyIndex? WithDryRun);
}

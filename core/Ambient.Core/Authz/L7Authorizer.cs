using System.Collections.Immutable;
using Ambient.Core.Protos.AuthorizationPolicies;

namespace Ambient.Core.Authz;

/// <summary>Why an L7 decision came out as it did.</summary>
internal enum L7DecisionReason
{
    /// <summary>No ALLOW policy applies and no CUSTOM or DENY matched.</summary>
    NoAllowPolicies,

    /// <summary><see cref="L7Decision.Policy"/> is the ALLOW policy that matched.</summary>
    AllowMatched,

    /// <summary><see cref="L7Decision.Policy"/> is the DENY policy that matched.</summary>
    DenyMatched,

    /// <summary><see cref="L7Decision.Policy"/> is the CUSTOM policy that matched: with no extension provider here it
    /// denies, as Istio's proxies do when the provider is missing.</summary>
    CustomMatched,

    /// <summary>ALLOW policies apply and none matched.</summary>
    NoAllowMatched,
}

/// <summary>
/// The outcome for one request: the policy and rule that decided it (null / -1 when no single policy did), the first
/// AUDIT policy that matched (logged, never deciding), and what the dry-run policies would have made of it
/// (<see cref="DryRun"/> null when none applies).
/// </summary>
internal readonly record struct L7Decision(bool Allowed, L7DecisionReason Reason, L7Policy? Policy, int Rule,
    L7Policy? Audit = null, L7DryRunDecision? DryRun = null)
{
    public static readonly L7Decision NoPolicies = new(true, L7DecisionReason.NoAllowPolicies, null, -1);

    public string Describe() => Describe(Reason, Policy, Rule);

    /// <summary>Envoy's response code details for an RBAC denial: <c>rbac_access_denied_matched_policy[ns[N]-policy[P]-rule[R]]</c>,
    /// or <c>...[none]</c> when no ALLOW matched.</summary>
    public string ResponseCodeDetails() => Policy is { } p && Reason is L7DecisionReason.DenyMatched or L7DecisionReason.CustomMatched
        ? $"rbac_access_denied_matched_policy[ns[{p.Namespace}]-policy[{p.Name}]-rule[{Rule}]]"
        : "rbac_access_denied_matched_policy[none]";

    internal static string Describe(L7DecisionReason reason, L7Policy? policy, int rule) => reason switch
    {
        L7DecisionReason.DenyMatched => $"denied by {policy!.Key} (rules[{rule}])",
        L7DecisionReason.CustomMatched => $"denied by CUSTOM {policy!.Key} (rules[{rule}]): no extension provider \"{policy.Provider}\" here, treated as a deny",
        L7DecisionReason.AllowMatched => $"allowed by {policy!.Key} (rules[{rule}])",
        L7DecisionReason.NoAllowMatched => "allow policies exist, but none allowed",
        _ => "no allow policies",
    };
}

/// <summary>What the decision would have been had the dry-run policies been enforced along with the others.</summary>
internal readonly record struct L7DryRunDecision(bool WouldAllow, L7DecisionReason Reason, L7Policy? Policy, int Rule)
{
    public string Describe() => (WouldAllow ? "dry-run policies would allow: " : "dry-run policies would deny: ") + L7Decision.Describe(Reason, Policy, Rule);
}

/// <summary>
/// The AuthorizationPolicies one waypoint enforces, compiled once per xDS update, immutable: those whose
/// targetRefs name its own Gateway (every request through the waypoint) or a Service (requests addressed to that
/// Service). The decision is Istio's: CUSTOM first (a match denies here: no extension provider), then DENY (any match
/// denies), then no ALLOW policy -> allow, an ALLOW match -> allow, otherwise deny. AUDIT never changes the decision;
/// dry-run policies are evaluated for the log only.
/// </summary>
internal sealed class L7Authorizer
{
    public static readonly L7Authorizer Empty = new([], [], PolicyGroups.None, new Dictionary<(string, string), PolicyGroups>());

    private readonly PolicyGroups _gatewayOnly;
    private readonly Dictionary<(string Namespace, string Name), PolicyGroups> _byService;

    private L7Authorizer(ImmutableArray<L7Policy> policies, ImmutableArray<string> skipped, PolicyGroups gatewayOnly,
        Dictionary<(string, string), PolicyGroups> byService)
    {
        Policies = policies;
        Skipped = skipped;
        _gatewayOnly = gatewayOnly;
        _byService = byService;
    }

    /// <summary>The policies that apply somewhere on this waypoint.</summary>
    public ImmutableArray<L7Policy> Policies { get; }

    /// <summary>Pushed policies that target neither this Gateway nor a Service, one line each, for the log.</summary>
    public ImmutableArray<string> Skipped { get; }

    public bool IsEmpty => Policies.IsEmpty;

    /// <param name="policies">The pushed policies (the waypoint's xDS resources), in any order.</param>
    /// <param name="gatewayNamespace">The namespace of the waypoint's Gateway.</param>
    /// <param name="gatewayName">The waypoint's Gateway name.</param>
    public static L7Authorizer Build(IEnumerable<AuthorizationPolicySpec> policies, string gatewayNamespace, string gatewayName)
    {
        ArgumentNullException.ThrowIfNull(policies);
        var gateway = new List<L7Policy>();
        var services = new Dictionary<(string, string), List<L7Policy>>();
        var all = ImmutableArray.CreateBuilder<L7Policy>();
        var skipped = ImmutableArray.CreateBuilder<string>();
        // Sorted by key, so the first match (and the policy a log names) does not depend on push order.
        var sorted = new List<AuthorizationPolicySpec>(policies);
        sorted.Sort(static (a, b) => string.CompareOrdinal(a.Namespace + "/" + a.Name, b.Namespace + "/" + b.Name));
        foreach (var spec in sorted)
        {
            var compiled = L7Policy.Compile(spec);
            var onGateway = false;
            var serviceNames = new List<string>();
            foreach (var target in spec.TargetRefs)
            {
                // targetRefs are namespace-local: the parser fills the policy's namespace.
                var ns = target.Namespace.Length > 0 ? target.Namespace : spec.Namespace;
                if (target.Kind == "Gateway" && target.Group == GatewayGroup && ns == gatewayNamespace && target.Name == gatewayName)
                {
                    onGateway = true;
                }
                else if (target.Kind == "Service" && target.Group is "" or "core" && !serviceNames.Contains(target.Name))
                {
                    serviceNames.Add(target.Name);
                }
            }
            if (onGateway)
            {
                gateway.Add(compiled);
            }
            else if (serviceNames.Count > 0)
            {
                foreach (var name in serviceNames)
                {
                    if (!services.TryGetValue((spec.Namespace, name), out var list))
                    {
                        services[(spec.Namespace, name)] = list = [];
                    }
                    list.Add(compiled);
                }
            }
            else
            {
                skipped.Add($"AuthorizationPolicy {compiled.Key} targets neither Gateway {gatewayNamespace}/{gatewayName} nor a Service: not enforced here");
                continue;
            }
            all.Add(compiled);
        }
        var byService = new Dictionary<(string, string), PolicyGroups>(services.Count);
        foreach (var (key, list) in services)
        {
            var combined = new List<L7Policy>(gateway);
            combined.AddRange(list);
            byService[key] = PolicyGroups.Of(combined);
        }
        return new L7Authorizer(all.ToImmutable(), skipped.ToImmutable(), PolicyGroups.Of(gateway), byService);
    }

    private const string GatewayGroup = "gateway.networking.k8s.io";

    /// <summary>True when some policy applies to requests for <paramref name="serviceName"/> (or any request, when
    /// one targets the Gateway), so the caller can skip gathering the request's attributes otherwise.</summary>
    public bool AppliesTo(string? serviceNamespace, string? serviceName) => !Groups(serviceNamespace, serviceName).IsEmpty;

    /// <summary>Decides a request addressed to the Service <paramref name="serviceNamespace"/>/<paramref name="serviceName"/>
    /// (null when it was addressed to no Service: only the Gateway's policies apply). Allocates nothing.</summary>
    public L7Decision Evaluate(string? serviceNamespace, string? serviceName, in L7Request request)
    {
        var groups = Groups(serviceNamespace, serviceName);
        if (groups.IsEmpty)
        {
            return L7Decision.NoPolicies;
        }
        var peer = new L4Peer(request.SourceIdentity);
        var (allowed, reason, policy, rule) = Decide(groups.Custom, groups.Deny, groups.Allow, request, peer);
        L7Policy? audit = null;
        foreach (var p in groups.Audit)
        {
            if (p.Match(request, peer) >= 0)
            {
                audit = p;
                break;
            }
        }
        L7DryRunDecision? dryRun = null;
        if (groups.HasDryRun)
        {
            var (wouldAllow, dryReason, dryPolicy, dryRule) = Decide(groups.CustomWithDryRun, groups.DenyWithDryRun, groups.AllowWithDryRun, request, peer);
            dryRun = new L7DryRunDecision(wouldAllow, dryReason, dryPolicy, dryRule);
        }
        return new L7Decision(allowed, reason, policy, rule, audit, dryRun);
    }

    private PolicyGroups Groups(string? serviceNamespace, string? serviceName) =>
        serviceNamespace is not null && serviceName is not null && _byService.Count > 0
        && _byService.TryGetValue((serviceNamespace, serviceName), out var groups)
            ? groups
            : _gatewayOnly;

    private static (bool, L7DecisionReason, L7Policy?, int) Decide(L7Policy[] custom, L7Policy[] deny, L7Policy[] allow,
        in L7Request request, in L4Peer peer)
    {
        foreach (var p in custom)
        {
            if (p.Match(request, peer) is var rule and >= 0)
            {
                return (false, L7DecisionReason.CustomMatched, p, rule);
            }
        }
        foreach (var p in deny)
        {
            if (p.Match(request, peer) is var rule and >= 0)
            {
                return (false, L7DecisionReason.DenyMatched, p, rule);
            }
        }
        if (allow.Length == 0)
        {
            return (true, L7DecisionReason.NoAllowPolicies, null, -1);
        }
        foreach (var p in allow)
        {
            if (p.Match(request, peer) is var rule and >= 0)
            {
                return (true, L7DecisionReason.AllowMatched, p, rule);
            }
        }
        return (false, L7DecisionReason.NoAllowMatched, null, -1);
    }

    /// <summary>One request target's policies split by action, enforced ones and with the dry-run ones added.</summary>
    private sealed class PolicyGroups
    {
        public static readonly PolicyGroups None = Of([]);

        private PolicyGroups(L7Policy[] custom, L7Policy[] deny, L7Policy[] allow, L7Policy[] audit,
            L7Policy[] customWithDryRun, L7Policy[] denyWithDryRun, L7Policy[] allowWithDryRun, bool hasDryRun)
        {
            Custom = custom;
            Deny = deny;
            Allow = allow;
            Audit = audit;
            CustomWithDryRun = customWithDryRun;
            DenyWithDryRun = denyWithDryRun;
            AllowWithDryRun = allowWithDryRun;
            HasDryRun = hasDryRun;
        }

        public L7Policy[] Custom { get; }
        public L7Policy[] Deny { get; }
        public L7Policy[] Allow { get; }
        public L7Policy[] Audit { get; }
        public L7Policy[] CustomWithDryRun { get; }
        public L7Policy[] DenyWithDryRun { get; }
        public L7Policy[] AllowWithDryRun { get; }
        public bool HasDryRun { get; }

        public bool IsEmpty => Custom.Length + Deny.Length + Allow.Length + Audit.Length == 0 && !HasDryRun;

        public static PolicyGroups Of(IEnumerable<L7Policy> policies)
        {
            List<L7Policy> custom = [], deny = [], allow = [], audit = [], customDry = [], denyDry = [], allowDry = [];
            var hasDryRun = false;
            foreach (var p in policies)
            {
                var (enforced, withDryRun) = p.Action switch
                {
                    PolicyAction.Custom => (custom, customDry),
                    PolicyAction.Deny => (deny, denyDry),
                    PolicyAction.Allow => (allow, allowDry),
                    _ => (audit, null),
                };
                if (withDryRun is null)
                {
                    // AUDIT: only ever logged, dry-run or not.
                    enforced.Add(p);
                    continue;
                }
                hasDryRun |= p.DryRun;
                if (!p.DryRun)
                {
                    enforced.Add(p);
                }
                withDryRun.Add(p);
            }
            return new PolicyGroups([.. custom], [.. deny], [.. allow], [.. audit], [.. customDry], [.. denyDry], [.. allowDry], hasDryRun);
        }
    }
}

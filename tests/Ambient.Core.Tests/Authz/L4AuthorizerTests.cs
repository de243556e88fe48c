using Ambient.Core.Authz;
using Ambient.Core.Protos.Security;
using static Ambient.Core.Tests.Authz.L4Policies;
using Action = Ambient.Core.Protos.Security.Action;

namespace Ambient.Core.Tests.Authz;

/// <summary>
/// Which policies apply and in what order, as istio/ztunnel src/state.rs assert_rbac and src/state/policy.rs decide
/// it, and as the AuthorizationPolicy reference describes it.
/// </summary>
public class L4AuthorizerTests
{
    private static readonly Match FromTls = new() { Principals = { Exact("td/ns/namespace/sa/account") } };

    [Fact]
    public void No_policy_allows()
    {
        var d = Decide(Tls(), Workload());
        Assert.True(d.Allowed);
        Assert.Equal(L4DecisionReason.NoAllowPolicies, d.Reason);
        Assert.Null(d.Policy);
        Assert.Null(d.DryRun);
    }

    [Fact]
    public void A_matching_deny_denies_and_names_itself()
    {
        var d = Decide(Tls(), Workload(), Policy("deny-tls", Action.Deny, rules: Rule(FromTls)));
        Assert.False(d.Allowed);
        Assert.Equal(L4DecisionReason.DenyMatched, d.Reason);
        Assert.Equal("namespace/deny-tls", d.Policy!.Key);
        Assert.Contains("namespace/deny-tls", d.Describe(), StringComparison.Ordinal);
        // A DENY that does not match leaves the connection allowed.
        Assert.True(Decide(TlsAlt(), Workload(), Policy("deny-tls", Action.Deny, rules: Rule(FromTls))).Allowed);
    }

    [Fact]
    public void Deny_wins_over_a_matching_allow_whatever_the_order()
    {
        var allow = Policy("allow-all", Action.Allow, rules: new Rule());
        var deny = Policy("deny-tls", Action.Deny, rules: Rule(FromTls));
        Assert.Equal(L4DecisionReason.DenyMatched, Decide(Tls(), Workload(), allow, deny).Reason);
        Assert.Equal(L4DecisionReason.DenyMatched, Decide(Tls(), Workload(), deny, allow).Reason);
    }

    [Fact]
    public void Allow_policies_present_and_none_matching_denies()
    {
        var d = Decide(TlsAlt(), Workload(), Policy("allow-tls", Action.Allow, rules: Rule(FromTls)));
        Assert.False(d.Allowed);
        Assert.Equal(L4DecisionReason.NoAllowMatched, d.Reason);
        Assert.Null(d.Policy);
        var ok = Decide(Tls(), Workload(), Policy("allow-tls", Action.Allow, rules: Rule(FromTls)));
        Assert.True(ok.Allowed);
        Assert.Equal(L4DecisionReason.AllowMatched, ok.Reason);
        Assert.Equal("allow-tls", ok.Policy!.Name);
    }

    [Fact]
    public void Allow_nothing_and_allow_all()
    {
        // `spec: {}` with ALLOW: a policy with no rules; it applies and matches nothing.
        Assert.False(Decide(Tls(), Workload(), Policy("allow-nothing", Action.Allow)).Allowed);
        Assert.False(Decide(Plaintext(), Workload(), Policy("allow-nothing", Action.Allow)).Allowed);
        // `rules: [{}]`: one rule with no clauses, matching everything.
        Assert.True(Decide(Plaintext(), Workload(), Policy("allow-nothing", Action.Allow), Policy("allow-all", Action.Allow, rules: new Rule())).Allowed);
        // DENY with no rules never matches; DENY `rules: [{}]` denies everything.
        Assert.True(Decide(Tls(), Workload(), Policy("deny-nothing", Action.Deny)).Allowed);
        Assert.False(Decide(Tls(), Workload(), Policy("deny-all", Action.Deny, rules: new Rule())).Allowed);
    }

    [Fact]
    public void Other_actions_never_change_the_decision()
    {
        // istiod sends neither AUDIT nor CUSTOM to ztunnel; should a value other than ALLOW/DENY arrive, it is inert.
        var audit = Policy("audit-all", (Action)2, rules: new Rule());
        var set = L4Authorizer.Build([audit]);
        Assert.Single(set.Skipped);
        Assert.True(set.Evaluate(Workload(), Tls()).Allowed);
        Assert.Equal(L4DecisionReason.NoAllowPolicies, set.Evaluate(Workload(), Tls()).Reason);
        var allow = Policy("allow-tls", Action.Allow, rules: Rule(FromTls));
        Assert.False(Decide(TlsAlt(), Workload(), audit, allow).Allowed);
    }

    [Fact]
    public void Namespace_scope_applies_to_that_namespace_only()
    {
        var deny = Policy("deny-all", Action.Deny, Scope.Namespace, ns: "other", rules: new Rule());
        Assert.True(Decide(Tls(), Workload("namespace"), deny).Allowed);
        Assert.False(Decide(Tls(), Workload("other"), deny).Allowed);
    }

    [Fact]
    public void Global_scope_applies_to_every_namespace()
    {
        var deny = Policy("deny-all", Action.Deny, Scope.Global, ns: "istio-system", rules: new Rule());
        Assert.False(Decide(Tls(), Workload("namespace"), deny).Allowed);
        Assert.False(Decide(Tls(), Workload("other"), deny).Allowed);
    }

    [Fact]
    public void Workload_selector_scope_applies_only_where_the_workload_names_it()
    {
        var deny = Policy("deny-all", Action.Deny, Scope.WorkloadSelector, rules: new Rule());
        Assert.True(Decide(Tls(), Workload("namespace"), deny).Allowed);
        Assert.False(Decide(Tls(), Workload("namespace", "namespace/deny-all"), deny).Allowed);
        // A name that was not pushed (yet) is skipped.
        Assert.True(Decide(Tls(), Workload("namespace", "namespace/not-pushed"), deny).Allowed);
        // A selector policy is not namespace-wide even in its own namespace, nor global in the root namespace.
        var rootSelector = Policy("deny-all", Action.Deny, Scope.WorkloadSelector, ns: "istio-system", rules: new Rule());
        Assert.True(Decide(Tls(), Workload("istio-system"), rootSelector).Allowed);
    }

    [Fact]
    public void An_allow_in_any_scope_makes_allow_policies_present()
    {
        var globalAllow = Policy("allow-tls", Action.Allow, Scope.Global, ns: "istio-system", rules: Rule(FromTls));
        var selectedAllow = Policy("allow-alt", Action.Allow, Scope.WorkloadSelector, rules: Rule(new Match { Namespaces = { Exact("ns-alt") } }));
        var w = Workload("namespace", "namespace/allow-alt");
        Assert.True(Decide(Tls(), w, globalAllow, selectedAllow).Allowed);
        Assert.True(Decide(TlsAlt(), w, globalAllow, selectedAllow).Allowed);
        Assert.False(Decide(Plaintext(), w, globalAllow, selectedAllow).Allowed);
    }

    [Fact]
    public void The_last_resource_under_a_key_wins()
    {
        var set = L4Authorizer.Build([
            Policy("p", Action.Deny, rules: new Rule()),
            Policy("p", Action.Allow, rules: Rule(FromTls))]);
        Assert.True(set.Evaluate(Workload(), Tls()).Allowed);
        Assert.False(set.Evaluate(Workload(), TlsAlt()).Allowed);
    }

    [Fact]
    public void Dry_run_policies_are_evaluated_but_never_enforced()
    {
        var dryDeny = Policy("dry-deny", Action.Deny, rules: Rule(FromTls));
        dryDeny.DryRun = true;
        var d = Decide(Tls(), Workload(), dryDeny);
        Assert.True(d.Allowed);
        Assert.Equal(L4DecisionReason.NoAllowPolicies, d.Reason);
        Assert.False(d.DryRun!.Value.WouldAllow);
        Assert.Equal("namespace/dry-deny", d.DryRun.Value.Policy!.Key);
        Assert.Contains("dry-run policies would deny: explicitly denied by: namespace/dry-deny", d.DryRun.Value.Describe(), StringComparison.Ordinal);

        // A dry-run ALLOW does not make ALLOW policies present for enforcement...
        var dryAllow = Policy("dry-allow", Action.Allow, rules: Rule(FromTls));
        dryAllow.DryRun = true;
        var alt = Decide(TlsAlt(), Workload(), dryAllow);
        Assert.True(alt.Allowed);
        // ...but would have denied what it does not match.
        Assert.False(alt.DryRun!.Value.WouldAllow);
        Assert.Equal(L4DecisionReason.NoAllowMatched, alt.DryRun.Value.Reason);
        Assert.True(Decide(Tls(), Workload(), dryAllow).DryRun!.Value.WouldAllow);
    }

    [Fact]
    public void A_deny_rule_emptied_of_l7_attributes_never_matches_and_an_l7_allow_rule_is_dropped()
    {
        // istiod's conversion for ztunnel: a DENY keeps the rule with an empty match where only HTTP attributes were,
        // and ztunnel skips empty matches; an ALLOW rule with HTTP attributes is dropped (the policy may be left
        // with no rules: allow-nothing).
        var deny = Policy("deny-get", Action.Deny, rules: Rule(new Match()));
        Assert.True(Decide(Tls(), Workload(), deny).Allowed);
        var mixed = Policy("deny-get-from-tls", Action.Deny, rules: Rule([new Match()], [FromTls]));
        Assert.True(Decide(Tls(), Workload(), mixed).Allowed);
        var allowL7 = Policy("allow-get", Action.Allow);
        Assert.False(Decide(Tls(), Workload(), allowL7).Allowed);
    }

    [Fact]
    public void A_decision_with_100_policies_allocates_nothing()
    {
        var policies = new List<Authorization>();
        var names = new List<string>();
        for (int i = 0; i < 100; i++)
        {
            var action = i % 2 == 0 ? Action.Allow : Action.Deny;
            policies.Add(Policy($"p{i}", action, Scope.WorkloadSelector, rules: Rule(
                [new Match { Principals = { Exact($"td/ns/namespace/sa/other-{i}") }, SourceIps = { Cidr("10.0.0.0", 8) } }],
                [new Match { DestinationPorts = { 8080, 9090 } }])));
            names.Add($"namespace/p{i}");
        }
        var set = L4Authorizer.Build(policies);
        var workload = Workload("namespace", [.. names]);
        var connection = Tls();
        Assert.False(set.Evaluate(workload, connection).Allowed);
        long before = GC.GetAllocatedBytesForCurrentThread();
        for (int i = 0; i < 1000; i++)
        {
            set.Evaluate(workload, connection);
        }
        Assert.Equal(0, GC.GetAllocatedBytesForCurrentThread() - before);
    }
}

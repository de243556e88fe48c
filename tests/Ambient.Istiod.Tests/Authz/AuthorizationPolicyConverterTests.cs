using Ambient.Config.Yaml;
using Ambient.Core.Config;
using Ambient.Core.Model;
using Ambient.Core.Protos.Security;
using Ambient.Istiod.Authz;
using Google.Protobuf;
using Action = Ambient.Core.Protos.Security.Action;

namespace Ambient.Istiod.Tests.Authz;

// The conversion for ztunnel, case by case as istio/istio pilot/pkg/serviceregistry/ambient/authorization.go does it.
// The status cases come from that package's authorization_test.go (TestConvertAuthorizationPolicyStatus), rewritten as
// YAML; the expected messages are Istio's words.
public class AuthorizationPolicyConverterTests
{
    private const string Root = "istio-system";

    private static AuthorizationPolicyResource Parse(string ns, string spec, string annotations = "", string name = "p")
    {
        var yaml = $"apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata:\n  name: {name}\n  namespace: {ns}\n{annotations}" + spec;
        var result = ManifestParser.Parse("/cfg/p.yaml", yaml);
        Assert.Empty(result.Errors);
        return Assert.IsType<AuthorizationPolicyResource>(Assert.Single(result.Resources));
    }

    private static ConvertedPolicy Convert(string spec, string ns = "shop", string annotations = "") =>
        AuthorizationPolicyConverter.Convert(Parse(ns, spec, annotations), Root);

    [Theory]
    [InlineData("shop", "spec:\n  rules: [{}]\n", Scope.Namespace)]
    [InlineData(Root, "spec:\n  rules: [{}]\n", Scope.Global)]
    [InlineData("shop", "spec:\n  selector: {matchLabels: {app: echo}}\n  rules: [{}]\n", Scope.WorkloadSelector)]
    [InlineData(Root, "spec:\n  selector: {matchLabels: {app: echo}}\n  rules: [{}]\n", Scope.WorkloadSelector)]
    [InlineData("shop", "spec:\n  selector: {}\n  rules: [{}]\n", Scope.WorkloadSelector)]
    public void Scope_follows_selector_and_root_namespace(string ns, string spec, Scope scope)
    {
        var p = Convert(spec, ns);
        Assert.Equal(PolicyEnforcement.Ztunnel, p.EnforcedBy);
        Assert.Equal(scope, p.Xds!.Scope);
        Assert.Equal(("p", ns), (p.Xds.Name, p.Xds.Namespace));
        Assert.Equal(ns + "/p", p.Key);
    }

    [Fact]
    public void Root_namespace_is_an_option()
    {
        var p = AuthorizationPolicyConverter.Convert(Parse("mesh-root", "spec:\n  rules: [{}]\n"), "mesh-root");
        Assert.Equal(Scope.Global, p.Xds!.Scope);
    }

    [Fact]
    public void TargetRef_policies_are_for_the_waypoint_not_ztunnel()
    {
        // "no status - targetRef is not for ztunnel"
        var p = Convert("spec:\n  targetRefs: [{kind: Service, name: test-svc}]\n  rules: [{}]\n");
        Assert.Equal(PolicyEnforcement.Waypoint, p.EnforcedBy);
        Assert.Null(p.Xds);
        Assert.Empty(p.Warnings);
    }

    [Fact]
    public void Audit_is_not_sent_to_ztunnel()
    {
        // "unsupported AUDIT action"
        var p = Convert("spec:\n  action: AUDIT\n  rules: [{from: [{source: {principals: [\"trust/ns/echo-1234/\"]}}]}]\n");
        Assert.Equal(PolicyEnforcement.None, p.EnforcedBy);
        Assert.Null(p.Xds);
        Assert.Contains("ztunnel does not support the AUDIT action", Assert.Single(p.Warnings), StringComparison.Ordinal);
    }

    [Fact]
    public void Custom_is_enforced_as_a_deny_of_the_matching_requests_and_reported_unsupported()
    {
        var p = Convert("spec:\n  action: CUSTOM\n  provider: {name: ext-authz}\n  rules: [{to: [{operation: {ports: [\"8080\"]}}]}]\n");
        Assert.Equal(PolicyEnforcement.Ztunnel, p.EnforcedBy);
        Assert.Equal(Action.Deny, p.Xds!.Action);
        Assert.Equal([8080u], p.Xds.Rules[0].Clauses[0].Matches[0].DestinationPorts);
        Assert.Contains("CUSTOM action is not supported", Assert.Single(p.Warnings), StringComparison.Ordinal);
    }

    [Fact]
    public void Allow_nothing_and_allow_all()
    {
        var nothing = AuthorizationPolicyConverter.Convert(Parse("shop", ""), Root);
        Assert.Equal(Action.Allow, nothing.Xds!.Action);
        Assert.Empty(nothing.Xds.Rules);
        var all = Convert("spec:\n  rules: [{}]\n");
        Assert.Equal(new Rule(), Assert.Single(all.Xds!.Rules));
        Assert.Empty(all.Warnings);
    }

    [Fact]
    public void L4_fields_map_to_matches_in_to_from_when_order()
    {
        var p = Convert("""
            spec:
              action: DENY
              rules:
              - from:
                - source:
                    principals: ["cluster.local/ns/a/sa/b", "cluster.local/ns/a/*", "*/sa/admin", "*"]
                    notPrincipals: ["x"]
                    namespaces: ["a"]
                    notNamespaces: ["kube-*"]
                    ipBlocks: ["10.0.0.0/8", "127.0.0.1", "2001:db8::/32"]
                    notIpBlocks: ["10.1.2.3"]
                - source:
                    serviceAccounts: ["client", "other/robot"]
                    notServiceAccounts: ["bad"]
                to:
                - operation: {ports: ["8080", "9090"], notPorts: ["15000"]}
                when:
                - {key: source.namespace, values: [a], notValues: [b]}
                - {key: source.principal, values: ["td/*"]}
                - {key: source.ip, notValues: ["10.9.0.0/16"]}
                - {key: destination.ip, values: ["127.0.0.2"]}
                - {key: destination.port, values: ["80"]}
            """);

        Assert.Empty(p.Warnings);
        var clauses = Assert.Single(p.Xds!.Rules).Clauses;
        Assert.Equal(7, clauses.Count);
        var to = Assert.Single(clauses[0].Matches);
        Assert.Equal([8080u, 9090u], to.DestinationPorts);
        Assert.Equal([15000u], to.NotDestinationPorts);

        var from = clauses[1].Matches;
        Assert.Equal(2, from.Count);
        Assert.Equal(
            [new StringMatch { Exact = "cluster.local/ns/a/sa/b" }, new StringMatch { Prefix = "cluster.local/ns/a/" },
             new StringMatch { Suffix = "/sa/admin" }, new StringMatch { Presence = new Presence() }],
            from[0].Principals);
        Assert.Equal([new StringMatch { Exact = "x" }], from[0].NotPrincipals);
        Assert.Equal([new StringMatch { Exact = "a" }], from[0].Namespaces);
        Assert.Equal([new StringMatch { Prefix = "kube-" }], from[0].NotNamespaces);
        Assert.Equal(
            [Addr([10, 0, 0, 0], 8), Addr([127, 0, 0, 1], 32), Addr(System.Net.IPAddress.Parse("2001:db8::").GetAddressBytes(), 32)],
            from[0].SourceIps);
        Assert.Equal([Addr([10, 1, 2, 3], 32)], from[0].NotSourceIps);
        Assert.Equal(
            [new ServiceAccountMatch { Namespace = "shop", ServiceAccount = "client" }, new ServiceAccountMatch { Namespace = "other", ServiceAccount = "robot" }],
            from[1].ServiceAccounts);
        Assert.Equal([new ServiceAccountMatch { Namespace = "shop", ServiceAccount = "bad" }], from[1].NotServiceAccounts);

        Assert.Equal(new Match { Namespaces = { new StringMatch { Exact = "a" } }, NotNamespaces = { new StringMatch { Exact = "b" } } }, Assert.Single(clauses[2].Matches));
        Assert.Equal(new Match { Principals = { new StringMatch { Prefix = "td/" } } }, Assert.Single(clauses[3].Matches));
        Assert.Equal(new Match { NotSourceIps = { Addr([10, 9, 0, 0], 16) } }, Assert.Single(clauses[4].Matches));
        Assert.Equal(new Match { DestinationIps = { Addr([127, 0, 0, 2], 32) } }, Assert.Single(clauses[5].Matches));
        Assert.Equal(new Match { DestinationPorts = { 80u } }, Assert.Single(clauses[6].Matches));
    }

    private static Address Addr(byte[] bytes, uint length) => new() { Address_ = ByteString.CopyFrom(bytes), Length = length };

    [Fact]
    public void Allow_rule_with_an_http_attribute_is_dropped_and_the_other_rules_stay()
    {
        // "unsupported HTTP methods": requestPrincipals, methods and request.auth.presenter in one ALLOW rule.
        var p = Convert("""
            spec:
              rules:
              - from: [{source: {requestPrincipals: ["example.com/sub-1"]}}]
                to: [{operation: {methods: ["GET"]}}]
                when: [{key: request.auth.presenter, values: ["presenter.example.com"]}]
              - from: [{source: {namespaces: ["shop"]}}]
            """);

        var kept = Assert.Single(p.Xds!.Rules);
        Assert.Equal([new StringMatch { Exact = "shop" }], kept.Clauses[0].Matches[0].Namespaces);
        Assert.Equal(
            "ztunnel does not support HTTP attributes (found: methods, request.auth.presenter, requestPrincipals). "
            + "In ambient mode you must use a waypoint proxy to enforce HTTP rules. "
            + "Within an ALLOW policy, rules matching HTTP attributes are omitted. This will be more restrictive than requested.",
            p.Warnings[0]);
        Assert.Equal("rules[0]: L7 attributes (methods, request.auth.presenter, requestPrincipals) in an ALLOW rule enforced by ztunnel: this rule never matches", p.Warnings[1]);
    }

    [Fact]
    public void Allow_policy_whose_only_rule_is_l7_allows_nothing_at_ztunnel()
    {
        var p = Convert("spec:\n  rules: [{to: [{operation: {paths: [\"/admin\"]}}]}]\n");
        Assert.Equal(Action.Allow, p.Xds!.Action);
        Assert.Empty(p.Xds.Rules); // an ALLOW policy with no rule: nothing is allowed (fail closed)
    }

    [Fact]
    public void Deny_rule_keeps_its_l4_part_without_the_http_attributes()
    {
        // "DENY policy with mixed L4 and L7 attributes is enforced without HTTP rules"
        var p = Convert("spec:\n  action: DENY\n  rules:\n  - from: [{source: {principals: [\"cluster.local/ns/foo/sa/bar\"], notRequestPrincipals: [\"example.com/sub-1\"]}}]\n");
        var match = Assert.Single(Assert.Single(Assert.Single(p.Xds!.Rules).Clauses).Matches);
        Assert.Equal(new Match { Principals = { new StringMatch { Exact = "cluster.local/ns/foo/sa/bar" } } }, match);
        Assert.Equal(
            "ztunnel does not support HTTP attributes (found: notRequestPrincipals). In ambient mode you must use a waypoint proxy to enforce HTTP rules. "
            + "DENY policy with HTTP attributes is enforced without the HTTP rules. This will be more restrictive than requested.",
            p.Warnings[0]);
        Assert.Contains("the rest of the rule is enforced", p.Warnings[1], StringComparison.Ordinal);
    }

    [Theory]
    // "DENY policy with only L7 attributes results in no effect at ztunnel"
    [InlineData("  - from: [{source: {notRequestPrincipals: [\"example.com/sub-1\"]}}]\n", "notRequestPrincipals")]
    // "DENY policy with L4 From and L7 When is a no-op due to AND empty clause"
    [InlineData("  - from: [{source: {principals: [\"cluster.local/ns/foo/sa/bar\"]}}]\n    when: [{key: \"request.headers[x-token]\", values: [secret]}]\n", "request.headers[x-token]")]
    // "DENY policy with L4 From and L7-only To methods is a no-op due to AND empty clause"
    [InlineData("  - from: [{source: {principals: [\"cluster.local/ns/foo/sa/bar\"]}}]\n    to: [{operation: {methods: [GET]}}]\n", "methods")]
    public void Deny_rule_emptied_by_the_conversion_never_matches(string rules, string found)
    {
        var p = Convert("spec:\n  action: DENY\n  rules:\n" + rules);
        var rule = Assert.Single(p.Xds!.Rules);
        Assert.True(AuthorizationPolicyConverter.NeverMatches(rule));
        Assert.Contains(rule.Clauses, c => c.Matches.All(m => m.Equals(new Match()))); // the empty match ztunnel skips
        Assert.Equal(
            $"ztunnel does not support HTTP attributes (found: {found}). In ambient mode you must use a waypoint proxy to enforce HTTP rules. "
            + "After omitting unsupported HTTP attributes, this DENY policy has no enforceable rules at ztunnel and will have no effect. "
            + "Deploy a waypoint proxy and use a targetRef to enforce this policy.",
            p.Warnings[0]);
        Assert.Contains("this rule never matches at ztunnel", p.Warnings[1], StringComparison.Ordinal);
    }

    [Theory]
    // "DENY policy with L7-only and separate L4 rule is still enforced"
    [InlineData("  - from: [{source: {notRequestPrincipals: [\"example.com/sub-1\"]}}]\n  - from: [{source: {principals: [\"cluster.local/ns/foo/sa/bar\"]}}]\n")]
    // "DENY policy with empty catch-all rule and L7-only rule is still enforced"
    [InlineData("  - {}\n  - from: [{source: {notRequestPrincipals: [\"example.com/sub-1\"]}}]\n")]
    public void Deny_policy_with_another_enforceable_rule_is_still_enforced(string rules)
    {
        var p = Convert("spec:\n  action: DENY\n  rules:\n" + rules);
        Assert.Equal(2, p.Xds!.Rules.Count);
        Assert.Contains(p.Xds.Rules, r => !AuthorizationPolicyConverter.NeverMatches(r));
        Assert.EndsWith("DENY policy with HTTP attributes is enforced without the HTTP rules. This will be more restrictive than requested.", p.Warnings[0], StringComparison.Ordinal);
    }

    [Fact]
    public void Remote_ip_blocks_are_http_attributes_at_ztunnel_as_in_istio()
    {
        var p = Convert("spec:\n  rules: [{from: [{source: {remoteIpBlocks: [\"10.0.0.0/8\"]}}]}]\n");
        Assert.Empty(p.Xds!.Rules);
        Assert.Contains("remoteIpBlocks", p.Warnings[0], StringComparison.Ordinal);
    }

    [Fact]
    public void Dry_run_is_carried_and_a_bad_value_is_reported()
    {
        var dry = Convert("spec:\n  action: DENY\n  rules: [{}]\n", annotations: "  annotations: {istio.io/dry-run: \"true\"}\n");
        Assert.True(dry.Xds!.DryRun);
        var bad = Convert("spec:\n  action: DENY\n  rules: [{}]\n", annotations: "  annotations: {istio.io/dry-run: \"yes\"}\n");
        Assert.False(bad.Xds!.DryRun);
        Assert.Contains("is not a boolean; the policy is enforced", Assert.Single(bad.Warnings), StringComparison.Ordinal);
    }

    [Fact]
    public void A_spiffe_prefixed_principal_is_reported()
    {
        var p = Convert("spec:\n  rules: [{from: [{source: {principals: [\"spiffe://cluster.local/ns/a/sa/b\"]}}]}]\n");
        Assert.Equal([new StringMatch { Exact = "spiffe://cluster.local/ns/a/sa/b" }], p.Xds!.Rules[0].Clauses[0].Matches[0].Principals);
        Assert.Contains("starts with spiffe://", Assert.Single(p.Warnings), StringComparison.Ordinal);
    }

    [Fact]
    public void Selector_policies_are_listed_on_the_workloads_they_select()
    {
        var resources = new List<Resource>
        {
            Parse("shop", "spec:\n  selector: {matchLabels: {app: echo}}\n  rules: [{}]\n"),
            Parse(Root, "spec:\n  selector: {matchLabels: {version: v1}}\n  action: DENY\n  rules: [{}]\n"),
            Parse("other", "spec:\n  selector: {matchLabels: {app: echo}}\n  rules: [{}]\n"),
            Parse("shop", "spec:\n  rules: [{}]\n", name: "ns-wide"),
        };
        var set = PolicySet.Build(resources, Root);
        Assert.Equal(["istio-system/p", "other/p", "shop/ns-wide", "shop/p"], set.Policies.Select(p => p.Key));
        Assert.Equal(4, set.ForZtunnel.Length);

        var echo = Workload("shop", "echo-v1", ("app", "echo"), ("version", "v1"));
        var echo2 = Workload("shop", "echo-v2", ("app", "echo"), ("version", "v2"));
        var client = Workload("shop", "client", ("app", "client"));
        var elsewhere = Workload("legacy", "x", ("version", "v1"));
        var snapshot = set.Attach(MeshSnapshot.Create([echo, echo2, client, elsewhere], [], MeshOptions.Default), Root);

        Assert.Equal(["istio-system/p", "shop/p"], snapshot.FindPod("shop", "echo-v1")!.AuthorizationPolicies);
        Assert.Equal(["shop/p"], snapshot.FindPod("shop", "echo-v2")!.AuthorizationPolicies);
        Assert.Empty(snapshot.FindPod("shop", "client")!.AuthorizationPolicies); // namespace-wide: by scope, not by name
        Assert.Equal(["istio-system/p"], snapshot.FindPod("legacy", "x")!.AuthorizationPolicies);
        Assert.Equal(["shop/p"], snapshot.FindPod("shop", "echo-v2")!.ToProto().AuthorizationPolicies);

        // Nothing to change: the same snapshot comes back.
        Assert.Same(snapshot, set.Attach(snapshot, Root));
    }

    private static System.Collections.Immutable.ImmutableSortedDictionary<string, string> Labels(params (string Key, string Value)[] labels) =>
        System.Collections.Immutable.ImmutableSortedDictionary.CreateRange(StringComparer.Ordinal, labels.Select(l => KeyValuePair.Create(l.Key, l.Value)));

    private static WorkloadInfo Workload(string ns, string name, params (string Key, string Value)[] labels) =>
        new(WorkloadInfo.PodUid("Kubernetes", ns, name), ns, "cluster.local", "default")
        {
            Name = name,
            CanonicalName = name,
            WorkloadName = name,
            Labels = Labels(labels),
        };
}

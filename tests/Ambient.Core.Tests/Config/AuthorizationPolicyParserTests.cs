using Ambient.Config.Yaml;
using Ambient.Core.Config;
using Ambient.Core.Protos.AuthorizationPolicies;

namespace Ambient.Core.Tests.Config;

// AuthorizationPolicy as Istio's validation (pkg/config/validation ValidateAuthorizationPolicy,
// pkg/config/security ValidateAttribute) and the CRD accept and refuse it. Every error names file:line and the field.
public class AuthorizationPolicyParserTests
{
    private const string File = "/cfg/policies.yaml";

    private const string Full = """
        apiVersion: security.istio.io/v1
        kind: AuthorizationPolicy
        metadata:
          name: full
          namespace: shop
          annotations: {istio.io/dry-run: "true"}
        spec:
          selector:
            matchLabels: {app: echo, version: v1}
          action: DENY
          rules:
          - from:
            - source:
                principals: ["cluster.local/ns/shop/sa/client", "*/sa/admin"]
                notPrincipals: ["cluster.local/ns/shop/sa/bad*"]
                requestPrincipals: ["issuer.example.com/*"]
                notRequestPrincipals: ["*"]
                namespaces: ["shop"]
                notNamespaces: ["kube-*"]
                ipBlocks: ["10.0.0.0/8", "127.0.0.1", "2001:db8::/32"]
                notIpBlocks: ["10.1.2.3"]
                remoteIpBlocks: ["203.0.113.0/24"]
                notRemoteIpBlocks: ["203.0.113.4"]
            - source:
                serviceAccounts: ["client", "other/robot"]
                notServiceAccounts: ["bad"]
            to:
            - operation:
                hosts: ["echo.shop.svc.cluster.local"]
                notHosts: ["*.internal"]
                ports: ["8080"]
                notPorts: ["9090"]
                methods: ["GET", "HEAD"]
                notMethods: ["DELETE"]
                paths: ["/api/*", "/v1/{*}/items"]
                notPaths: ["/admin*"]
            when:
            - key: request.headers[x-tenant]
              values: ["a", "b"]
            - key: source.ip
              notValues: ["10.9.0.0/16"]
            - key: destination.port
              values: ["8080"]
            - key: connection.sni
              values: ["*.example.com"]
        ---
        apiVersion: security.istio.io/v1beta1
        kind: AuthorizationPolicy
        metadata: {name: waypoint-policy, namespace: shop}
        spec:
          targetRefs:
          - {kind: Gateway, group: gateway.networking.k8s.io, name: waypoint}
          - {kind: Service, group: "", name: echo}
          action: CUSTOM
          provider: {name: ext-authz}
          rules: [{to: [{operation: {paths: ["/admin"]}}]}]
        ---
        apiVersion: security.istio.io/v1
        kind: AuthorizationPolicy
        metadata: {name: allow-nothing, namespace: shop}
        ---
        apiVersion: security.istio.io/v1
        kind: AuthorizationPolicy
        metadata: {name: allow-all, namespace: shop}
        spec:
          rules: [{}]
        ---
        apiVersion: security.istio.io/v1
        kind: AuthorizationPolicy
        metadata: {name: single-ref, namespace: shop}
        spec:
          targetRef: {kind: Service, name: echo}
          action: AUDIT
          rules: [{}]
        """;

    [Fact]
    public void Every_field_is_read()
    {
        var result = ManifestParser.Parse(File, Full);

        Assert.Empty(result.Errors);
        Assert.Equal(5, result.Resources.Length);
        var full = Assert.IsType<AuthorizationPolicyResource>(result.Resources[0]);
        Assert.Equal("AuthorizationPolicy/shop/full", full.Key);
        Assert.Equal(new SourceLocation(File, 1), full.Source);
        var spec = full.Spec;
        Assert.Equal(("shop", "full"), (spec.Namespace, spec.Name));
        Assert.True(spec.DryRun);
        Assert.True(spec.HasSelector);
        Assert.Equal("echo", spec.MatchLabels["app"]);
        Assert.Equal("v1", spec.MatchLabels["version"]);
        Assert.Equal(PolicyAction.Deny, spec.Action);
        var rule = Assert.Single(spec.Rules);
        var source = rule.From[0];
        Assert.Equal(["cluster.local/ns/shop/sa/client", "*/sa/admin"], source.Principals);
        Assert.Equal(["cluster.local/ns/shop/sa/bad*"], source.NotPrincipals);
        Assert.Equal(["issuer.example.com/*"], source.RequestPrincipals);
        Assert.Equal(["*"], source.NotRequestPrincipals);
        Assert.Equal(["shop"], source.Namespaces);
        Assert.Equal(["kube-*"], source.NotNamespaces);
        Assert.Equal(["10.0.0.0/8", "127.0.0.1", "2001:db8::/32"], source.IpBlocks);
        Assert.Equal(["10.1.2.3"], source.NotIpBlocks);
        Assert.Equal(["203.0.113.0/24"], source.RemoteIpBlocks);
        Assert.Equal(["203.0.113.4"], source.NotRemoteIpBlocks);
        Assert.Equal(["client", "other/robot"], rule.From[1].ServiceAccounts);
        Assert.Equal(["bad"], rule.From[1].NotServiceAccounts);
        var op = Assert.Single(rule.To);
        Assert.Equal(["echo.shop.svc.cluster.local"], op.Hosts);
        Assert.Equal(["*.internal"], op.NotHosts);
        Assert.Equal(["8080"], op.Ports);
        Assert.Equal(["9090"], op.NotPorts);
        Assert.Equal(["GET", "HEAD"], op.Methods);
        Assert.Equal(["DELETE"], op.NotMethods);
        Assert.Equal(["/api/*", "/v1/{*}/items"], op.Paths);
        Assert.Equal(["/admin*"], op.NotPaths);
        Assert.Equal(4, rule.When.Count);
        Assert.Equal(new PolicyCondition { Key = "request.headers[x-tenant]", Values = { "a", "b" } }, rule.When[0]);
        Assert.Equal(new PolicyCondition { Key = "source.ip", NotValues = { "10.9.0.0/16" } }, rule.When[1]);

        var waypoint = Assert.IsType<AuthorizationPolicyResource>(result.Resources[1]).Spec;
        Assert.Equal("security.istio.io/v1beta1", result.Resources[1].ApiVersion);
        Assert.False(waypoint.HasSelector);
        Assert.Equal(PolicyAction.Custom, waypoint.Action);
        Assert.Equal("ext-authz", waypoint.Provider);
        Assert.Equal(
            [new PolicyTargetReference { Group = "gateway.networking.k8s.io", Kind = "Gateway", Name = "waypoint", Namespace = "shop" },
             new PolicyTargetReference { Group = "", Kind = "Service", Name = "echo", Namespace = "shop" }],
            waypoint.TargetRefs);

        var nothing = Assert.IsType<AuthorizationPolicyResource>(result.Resources[2]).Spec;
        Assert.Equal(PolicyAction.Allow, nothing.Action);
        Assert.Empty(nothing.Rules);
        Assert.False(nothing.DryRun);
        var all = Assert.IsType<AuthorizationPolicyResource>(result.Resources[3]).Spec;
        Assert.Equal(new PolicyRule(), Assert.Single(all.Rules));
        var single = Assert.IsType<AuthorizationPolicyResource>(result.Resources[4]).Spec;
        Assert.Equal(PolicyAction.Audit, single.Action);
        Assert.Equal(new PolicyTargetReference { Kind = "Service", Name = "echo", Namespace = "shop" }, Assert.Single(single.TargetRefs));

        // Records compare by value: an unchanged file yields equal resources.
        Assert.Equal(result.Resources, ManifestParser.Parse(File, Full).Resources);
    }

    [Theory]
    [InlineData("\"True\"", true)]
    [InlineData("\"1\"", true)]
    [InlineData("\"false\"", false)]
    [InlineData("\"yes\"", false)] // Go's ParseBool refuses it: Istio enforces the policy (and istiod-lite warns)
    public void Dry_run_annotation_is_read_as_Istio_reads_it(string value, bool dryRun)
    {
        var result = ManifestParser.Parse(File, $"apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata:\n  name: p\n  annotations: {{istio.io/dry-run: {value}}}\n");
        Assert.Empty(result.Errors);
        Assert.Equal(dryRun, Assert.IsType<AuthorizationPolicyResource>(Assert.Single(result.Resources)).Spec.DryRun);
    }

    // The spec (from line 5 of the document), the line and field of the one expected error, and its message.
    public static TheoryData<string, int, string, string> BadPolicies => new()
    {
        { "spec:\n  action: REJECT", 6, "spec.action", "Invalid value: \"REJECT\": supported values: \"ALLOW\", \"DENY\", \"AUDIT\", \"CUSTOM\"" },
        { "spec:\n  selector: {matchLabels: {app: a}}\n  targetRefs: [{kind: Service, name: s}]", 6, "spec", "only one of targetRefs or workloadSelector can be set" },
        { "spec:\n  selector: {matchLabels: {app: a}}\n  targetRef: {kind: Service, name: s}", 6, "spec", "only one of targetRefs or workloadSelector can be set" },
        { "spec:\n  selector: {matchLabels: {app: \"a*\"}}", 6, "spec.selector.matchLabels[app]", "wildcard is not supported in selector" },
        { "spec:\n  targetRefs: [{kind: Deployment, name: d}]", 6, "spec.targetRefs[0]", "Support kinds are core/Service and gateway.networking.k8s.io/Gateway" },
        { "spec:\n  targetRefs: [{kind: Service, name: s, namespace: other}]", 6, "spec.targetRefs[0].namespace", "cross namespace referencing is not currently supported" },
        { "spec:\n  targetRefs: [{kind: Service}]", 6, "spec.targetRefs[0].name", "Required value" },
        { "spec:\n  action: CUSTOM\n  rules: [{}]", 6, "spec.provider.name", "`provider.name` must not be empty" },
        { "spec:\n  action: CUSTOM\n  provider: {name: x}", 6, "spec.rules", "CUSTOM action without `rules` is meaningless" },
        { "spec:\n  action: DENY", 6, "spec.rules", "DENY action without `rules` is meaningless" },
        { "spec:\n  action: DENY\n  provider: {name: x}\n  rules: [{}]", 7, "spec.provider", "`provider` must not be with non CUSTOM action, found DENY" },
        { "spec:\n  action: CUSTOM\n  provider: {name: x}\n  rules:\n  - from: [{source: {principals: [a]}}]", 9, "spec.rules[0].from[0].source.principals", "not supported with the CUSTOM action" },
        { "spec:\n  rules:\n  - from: [{source: {ipBlocks: [\"10.0.0.0/33\"]}}]", 7, "spec.rules[0].from[0].source.ipBlocks[0]", "bad CIDR range" },
        { "spec:\n  rules:\n  - from: [{source: {notIpBlocks: [\"10.0.0.256\"]}}]", 7, "spec.rules[0].from[0].source.notIpBlocks[0]", "bad IP address" },
        { "spec:\n  rules:\n  - from: [{source: {remoteIpBlocks: [\"nope/8\"]}}]", 7, "spec.rules[0].from[0].source.remoteIpBlocks[0]", "bad CIDR range" },
        { "spec:\n  rules:\n  - to: [{operation: {ports: [\"0\"]}}]", 7, "spec.rules[0].to[0].operation.ports[0]", "bad port: must be a number from 1 to 65535" },
        { "spec:\n  rules:\n  - to: [{operation: {notPorts: [\"65536\"]}}]", 7, "spec.rules[0].to[0].operation.notPorts[0]", "bad port" },
        { "spec:\n  rules:\n  - to: [{operation: {ports: [\"http\"]}}]", 7, "spec.rules[0].to[0].operation.ports[0]", "bad port" },
        { "spec:\n  rules:\n  - to: [{operation: {ports: [8080]}}]", 7, "spec.rules[0].to[0].operation.ports[0]", "must be a string" },
        { "spec:\n  rules:\n  - to: [{operation: {paths: [\"/*/baz/{*}\"]}}]", 7, "spec.rules[0].to[0].operation.paths[0]", "invalid or unsupported path template" },
        { "spec:\n  rules:\n  - to: [{operation: {methods: [\"\"]}}]", 7, "spec.rules[0].to[0].operation.methods[0]", "empty value not allowed" },
        { "spec:\n  rules:\n  - from: []", 7, "spec.rules[0].from", "`from` must not be empty" },
        { "spec:\n  rules:\n  - to: []", 7, "spec.rules[0].to", "`to` must not be empty" },
        { "spec:\n  rules:\n  - from: [{source: {}}]", 7, "spec.rules[0].from[0].source", "`from.source` must not be empty" },
        { "spec:\n  rules:\n  - to: [{operation: {}}]", 7, "spec.rules[0].to[0].operation", "`to.operation` must not be empty" },
        { "spec:\n  rules:\n  - from: [{}]", 7, "spec.rules[0].from[0].source", "Required value" },
        { "spec:\n  rules:\n  - from: [{source: {namespaces: [a], serviceAccounts: [b]}}]", 7, "spec.rules[0].from[0].source", "cannot set serviceAccounts with namespaces or principals" },
        { "spec:\n  rules:\n  - from: [{source: {notNamespace: [a]}}]", 7, "spec.rules[0].from[0].source.notNamespace", "unknown field \"notNamespace\"" },
        { "spec:\n  rule: [{}]", 6, "spec.rule", "unknown field \"rule\"" },
        { "spec:\n  rules:\n  - when: [{key: request.host, values: [a]}]", 7, "spec.rules[0].when[0].key", "unknown attribute" },
        { "spec:\n  rules:\n  - when: [{key: destination.namespace, values: [a]}]", 7, "spec.rules[0].when[0].key", "replaced by the metadata.namespace" },
        { "spec:\n  rules:\n  - when: [{key: \"request.headers[]\", values: [a]}]", 7, "spec.rules[0].when[0].key", "should have format a[b]" },
        { "spec:\n  rules:\n  - when: [{values: [a]}]", 7, "spec.rules[0].when[0].key", "Required value" },
        { "spec:\n  rules:\n  - when: [{key: \"\", values: [a]}]", 7, "spec.rules[0].when[0].key", "Required value" },
        { "spec:\n  rules:\n  - when: [{key: source.ip}]", 7, "spec.rules[0].when[0]", "at least one of `values` or `notValues` must be set for key source.ip" },
        { "spec:\n  rules:\n  - when: [{key: source.ip, values: [\"300.1.1.1\"]}]", 7, "spec.rules[0].when[0].values[0]", "bad IP address" },
        { "spec:\n  rules:\n  - when: [{key: destination.port, notValues: [\"99999\"]}]", 7, "spec.rules[0].when[0].notValues[0]", "bad port" },
    };

    [Theory]
    [MemberData(nameof(BadPolicies))]
    public void Invalid_policy_is_rejected_whole_with_file_line_and_field(string spec, int line, string field, string message)
    {
        var yaml = "apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata: {name: p, namespace: shop}\n# spec\n" + spec + "\n";
        var result = ManifestParser.Parse(File, yaml);

        Assert.Empty(result.Resources);
        var error = Assert.Single(result.Errors, e => e.Field == field);
        Assert.Equal(new SourceLocation(File, line), error.Source);
        Assert.Contains(message, error.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void Wrong_api_version_is_refused()
    {
        var result = ManifestParser.Parse(File, "apiVersion: security.istio.io/v2\nkind: AuthorizationPolicy\nmetadata: {name: p}\n");
        var error = Assert.Single(result.Errors);
        Assert.Equal("/cfg/policies.yaml:1: apiVersion: Invalid value: \"security.istio.io/v2\": AuthorizationPolicy is served by apiVersion \"security.istio.io/v1\" or \"security.istio.io/v1beta1\"", error.ToString());
    }
}

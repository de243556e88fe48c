using System.Net;
using Ambient.Config.Yaml;
using Ambient.Core.Authz;
using Ambient.Core.Config;
using Ambient.Core.Protos.AuthorizationPolicies;
using Microsoft.AspNetCore.Http;

namespace Ambient.Core.Tests.Authz;

/// <summary>
/// The waypoint's L7 decision, policy by policy as Istio's API reference and its Envoy RBAC translation describe it:
/// every field and matcher form, the CUSTOM -> DENY -> ALLOW order, allow-nothing and allow-all, AUDIT, dry-run, and
/// which targetRefs attach a policy to which requests. Policies are written in YAML and read by the config parser,
/// as a user would write them.
/// </summary>
public class L7AuthorizerTests
{
    private const string Ns = "shop";
    private const string Client = "spiffe://cluster.local/ns/shop/sa/client";
    private const string GatewayRef = "targetRefs: [{kind: Gateway, group: gateway.networking.k8s.io, name: waypoint}]";

    /// <summary>One policy in <see cref="Ns"/>, attached to the waypoint's Gateway unless the body says otherwise.</summary>
    private static AuthorizationPolicySpec Policy(string name, string body, string? annotations = null)
    {
        var spec = body.Contains("targetRef", StringComparison.Ordinal) ? body : GatewayRef + "\n" + body;
        var yaml = $"apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata:\n  name: {name}\n  namespace: {Ns}\n"
            + (annotations is null ? "" : $"  annotations: {{{annotations}}}\n")
            + "spec:\n" + string.Join("\n", spec.Split('\n').Select(l => "  " + l)) + "\n";
        var result = ManifestParser.Parse("/cfg/p.yaml", yaml);
        Assert.Empty(result.Errors);
        return Assert.IsType<AuthorizationPolicyResource>(Assert.Single(result.Resources)).Spec;
    }

    private static L7Request Request(string method = "GET", string path = "/", string host = "echo.shop.svc.cluster.local",
        string? identity = Client, string source = "10.0.0.5", string destination = "10.96.0.10", int port = 80,
        string? sni = null, params (string Name, string Value)[] headers)
    {
        var dictionary = new HeaderDictionary();
        foreach (var (n, v) in headers)
        {
            dictionary.Append(n, v);
        }
        var src = IpKey.From(IPAddress.Parse(source));
        return new L7Request(identity, src, src, IpKey.From(IPAddress.Parse(destination)), port, method, path, host, dictionary, sni);
    }

    private static L7Decision Decide(L7Request request, params AuthorizationPolicySpec[] policies) =>
        L7Authorizer.Build(policies, Ns, "waypoint").Evaluate(Ns, "echo", request);

    private static bool Allowed(L7Request request, params AuthorizationPolicySpec[] policies) => Decide(request, policies).Allowed;

    /// <summary>An ALLOW policy of one rule `to: [{operation: {...}}]`: true when the request matches it.</summary>
    private static bool To(string operation, L7Request request) =>
        Allowed(request, Policy("allow", $"rules: [{{to: [{{operation: {{{operation}}}}}]}}]"));

    private static bool From(string source, L7Request request) =>
        Allowed(request, Policy("allow", $"rules: [{{from: [{{source: {{{source}}}}}]}}]"));

    private static bool When(string condition, L7Request request) =>
        Allowed(request, Policy("allow", $"rules: [{{when: [{{{condition}}}]}}]"));

    // --- evaluation order and the special shapes

    [Fact]
    public void No_policy_allows()
    {
        var d = Decide(Request());
        Assert.True(d.Allowed);
        Assert.Equal(L7DecisionReason.NoAllowPolicies, d.Reason);
        Assert.Null(d.DryRun);
    }

    [Fact]
    public void An_allow_policy_without_rules_allows_nothing()
    {
        var d = Decide(Request(), Policy("nothing", "action: ALLOW"));
        Assert.False(d.Allowed);
        Assert.Equal(L7DecisionReason.NoAllowMatched, d.Reason);
        Assert.Equal("rbac_access_denied_matched_policy[none]", d.ResponseCodeDetails());
    }

    [Fact]
    public void An_empty_rule_allows_everything()
    {
        var d = Decide(Request(method: "DELETE", path: "/anything"), Policy("all", "rules: [{}]"));
        Assert.True(d.Allowed);
        Assert.Equal(L7DecisionReason.AllowMatched, d.Reason);
        Assert.Equal("shop/all", d.Policy!.Key);
    }

    [Fact]
    public void Deny_wins_over_allow_and_names_the_policy_and_rule()
    {
        var allow = Policy("allow-all", "rules: [{}]");
        var deny = Policy("deny-admin", "action: DENY\nrules: [{to: [{operation: {paths: [/other]}}]}, {to: [{operation: {paths: [/admin*]}}]}]");
        var d = Decide(Request(path: "/admin/users"), allow, deny);
        Assert.False(d.Allowed);
        Assert.Equal(L7DecisionReason.DenyMatched, d.Reason);
        Assert.Equal(1, d.Rule);
        Assert.Equal("rbac_access_denied_matched_policy[ns[shop]-policy[deny-admin]-rule[1]]", d.ResponseCodeDetails());
        Assert.Contains("shop/deny-admin", d.Describe(), StringComparison.Ordinal);
        Assert.True(Allowed(Request(path: "/public"), allow, deny));
    }

    [Fact]
    public void Allow_policies_present_and_none_matching_denies()
    {
        var allow = Policy("allow-get", "rules: [{to: [{operation: {methods: [GET]}}]}]");
        Assert.True(Allowed(Request(method: "GET"), allow));
        var d = Decide(Request(method: "POST"), allow);
        Assert.False(d.Allowed);
        Assert.Equal(L7DecisionReason.NoAllowMatched, d.Reason);
    }

    [Fact]
    public void Custom_is_evaluated_first_and_denies_what_it_matches()
    {
        var custom = Policy("ext", "action: CUSTOM\nprovider: {name: my-ext-authz}\nrules: [{to: [{operation: {paths: [/ext*]}}]}]");
        var deny = Policy("deny-ext", "action: DENY\nrules: [{to: [{operation: {paths: [/ext*]}}]}]");
        var d = Decide(Request(path: "/ext/1"), deny, custom);
        Assert.False(d.Allowed);
        Assert.Equal(L7DecisionReason.CustomMatched, d.Reason);
        Assert.Contains("my-ext-authz", d.Describe(), StringComparison.Ordinal);
        // What it does not match is left to the other policies.
        Assert.True(Allowed(Request(path: "/public"), custom));
    }

    [Fact]
    public void Audit_never_changes_the_decision_but_is_reported()
    {
        var audit = Policy("audit", "action: AUDIT\nrules: [{to: [{operation: {methods: [GET]}}]}]");
        var d = Decide(Request(), audit);
        Assert.True(d.Allowed);
        Assert.Equal(L7DecisionReason.NoAllowPolicies, d.Reason);
        Assert.Equal("shop/audit", d.Audit!.Key);
        // Not an ALLOW policy either: an ALLOW that does not match still denies.
        var allow = Policy("allow-post", "rules: [{to: [{operation: {methods: [POST]}}]}]");
        Assert.False(Allowed(Request(), audit, allow));
    }

    [Fact]
    public void Dry_run_policies_are_evaluated_but_not_enforced()
    {
        var dryDeny = Policy("dry-deny", "action: DENY\nrules: [{to: [{operation: {methods: [GET]}}]}]", "istio.io/dry-run: \"true\"");
        var d = Decide(Request(), dryDeny);
        Assert.True(d.Allowed);
        Assert.NotNull(d.DryRun);
        Assert.False(d.DryRun!.Value.WouldAllow);
        Assert.Equal("shop/dry-deny", d.DryRun.Value.Policy!.Key);
        Assert.StartsWith("dry-run policies would deny", d.DryRun.Value.Describe(), StringComparison.Ordinal);

        // A dry-run ALLOW does not turn "no ALLOW policy" into "none matched".
        var dryAllow = Policy("dry-allow", "rules: [{to: [{operation: {methods: [POST]}}]}]", "istio.io/dry-run: \"true\"");
        var a = Decide(Request(), dryAllow);
        Assert.True(a.Allowed);
        Assert.False(a.DryRun!.Value.WouldAllow);
        Assert.Equal(L7DecisionReason.NoAllowMatched, a.DryRun.Value.Reason);
    }

    // --- targetRefs

    [Fact]
    public void Gateway_policies_apply_to_every_request_and_service_policies_to_their_service_only()
    {
        var onService = Policy("deny-echo", "targetRefs: [{kind: Service, group: \"\", name: echo}]\naction: DENY\nrules: [{}]");
        var onGateway = Policy("deny-post", "action: DENY\nrules: [{to: [{operation: {methods: [POST]}}]}]");
        var authorizer = L7Authorizer.Build([onService, onGateway], Ns, "waypoint");
        Assert.False(authorizer.Evaluate(Ns, "echo", Request()).Allowed);
        Assert.True(authorizer.Evaluate(Ns, "other", Request()).Allowed);
        Assert.True(authorizer.Evaluate(null, null, Request()).Allowed);
        Assert.False(authorizer.Evaluate(Ns, "other", Request(method: "POST")).Allowed);
        Assert.False(authorizer.Evaluate(null, null, Request(method: "POST")).Allowed);
        // A Service of the same name in another namespace is another Service.
        Assert.True(authorizer.Evaluate("elsewhere", "echo", Request()).Allowed);
        Assert.True(authorizer.AppliesTo(Ns, "other"));
    }

    [Fact]
    public void Allow_policies_of_the_gateway_and_of_the_service_combine()
    {
        var serviceAllow = Policy("allow-get", "targetRef: {kind: Service, name: echo}\nrules: [{to: [{operation: {methods: [GET]}}]}]");
        var gatewayAllow = Policy("allow-put", "rules: [{to: [{operation: {methods: [PUT]}}]}]");
        var authorizer = L7Authorizer.Build([serviceAllow, gatewayAllow], Ns, "waypoint");
        Assert.True(authorizer.Evaluate(Ns, "echo", Request(method: "GET")).Allowed);
        Assert.True(authorizer.Evaluate(Ns, "echo", Request(method: "PUT")).Allowed);
        Assert.False(authorizer.Evaluate(Ns, "echo", Request(method: "POST")).Allowed);
        // Another Service sees only the Gateway's ALLOW.
        Assert.False(authorizer.Evaluate(Ns, "other", Request(method: "GET")).Allowed);
    }

    [Fact]
    public void A_policy_for_another_gateway_is_skipped()
    {
        var other = Policy("other-gw", "targetRefs: [{kind: Gateway, group: gateway.networking.k8s.io, name: other}]\naction: DENY\nrules: [{}]");
        var authorizer = L7Authorizer.Build([other], Ns, "waypoint");
        Assert.True(authorizer.IsEmpty);
        Assert.Contains("shop/other-gw", Assert.Single(authorizer.Skipped), StringComparison.Ordinal);
        Assert.False(authorizer.AppliesTo(Ns, "echo"));
    }

    // --- to.operation

    [Theory]
    [InlineData("methods: [GET]", "GET", true)]
    [InlineData("methods: [GET]", "get", false)] // methods compare case-sensitively
    [InlineData("methods: [GET]", "POST", false)]
    [InlineData("methods: [\"P*\"]", "PUT", true)]
    [InlineData("methods: [\"*TE\"]", "DELETE", true)]
    [InlineData("methods: [\"*\"]", "PATCH", true)]
    [InlineData("notMethods: [GET]", "GET", false)]
    [InlineData("notMethods: [GET]", "POST", true)]
    [InlineData("methods: [GET, HEAD]", "HEAD", true)]
    public void Methods(string operation, string method, bool matches) =>
        Assert.Equal(matches, To(operation, Request(method: method)));

    [Theory]
    [InlineData("paths: [/api]", "/api", true)]
    [InlineData("paths: [/api]", "/api/", false)]
    [InlineData("paths: [/api]", "/API", false)] // paths compare case-sensitively
    [InlineData("paths: [\"/api/*\"]", "/api/v1/users", true)]
    [InlineData("paths: [\"/api/*\"]", "/api", false)]
    [InlineData("paths: [\"*.json\"]", "/data/x.json", true)]
    [InlineData("paths: [\"*.json\"]", "/data/x.xml", false)]
    [InlineData("paths: [\"*\"]", "/anything", true)]
    [InlineData("notPaths: [\"/admin*\"]", "/admin/x", false)]
    [InlineData("notPaths: [\"/admin*\"]", "/public", true)]
    [InlineData("paths: [\"/users/{*}/profile\"]", "/users/42/profile", true)]
    [InlineData("paths: [\"/users/{*}/profile\"]", "/users/42/x/profile", false)]
    [InlineData("paths: [\"/users/{*}/profile\"]", "/users//profile", false)]
    [InlineData("paths: [\"/files/{**}\"]", "/files/a/b/c.txt", true)]
    [InlineData("paths: [\"/files/{**}\"]", "/other/a", false)]
    [InlineData("paths: [\"/a/{*}/b/{**}\"]", "/a/x/b/c/d", true)]
    public void Paths(string operation, string path, bool matches) =>
        Assert.Equal(matches, To(operation, Request(path: path)));

    [Theory]
    [InlineData("hosts: [echo.shop.svc.cluster.local]", "echo.shop.svc.cluster.local", true)]
    [InlineData("hosts: [echo.shop.svc.cluster.local]", "ECHO.Shop.svc.cluster.local", true)] // case-insensitive
    [InlineData("hosts: [echo.shop.svc.cluster.local]", "echo.shop.svc.cluster.local:80", true)] // port ignored
    [InlineData("hosts: [\"echo.shop.svc.cluster.local:80\"]", "echo.shop.svc.cluster.local:80", true)]
    [InlineData("hosts: [\"echo.shop.svc.cluster.local:80\"]", "echo.shop.svc.cluster.local:8080", false)]
    [InlineData("hosts: [\"echo.shop.svc.cluster.local:80\"]", "echo.shop.svc.cluster.local", false)]
    [InlineData("hosts: [\"*.cluster.local\"]", "echo.shop.svc.cluster.local:80", true)]
    [InlineData("hosts: [\"*.cluster.local\"]", "example.com", false)]
    [InlineData("hosts: [\"echo.*\"]", "Echo.shop", true)]
    [InlineData("hosts: [\"*\"]", "anything", true)]
    [InlineData("hosts: [other.example.com]", "echo.shop.svc.cluster.local", false)]
    [InlineData("notHosts: [echo.shop.svc.cluster.local]", "echo.shop.svc.cluster.local:80", false)]
    [InlineData("notHosts: [other.example.com]", "echo.shop.svc.cluster.local", true)]
    [InlineData("hosts: [\"[::1]\"]", "[::1]:80", true)]
    public void Hosts(string operation, string host, bool matches) =>
        Assert.Equal(matches, To(operation, Request(host: host)));

    [Theory]
    [InlineData("ports: [\"80\"]", 80, true)]
    [InlineData("ports: [\"80\"]", 81, false)]
    [InlineData("ports: [\"81\", \"80\"]", 80, true)]
    [InlineData("notPorts: [\"80\"]", 80, false)]
    [InlineData("notPorts: [\"80\"]", 9000, true)]
    public void Ports(string operation, int port, bool matches) =>
        Assert.Equal(matches, To(operation, Request(port: port)));

    [Fact]
    public void Every_field_of_an_operation_must_match_and_any_operation_may()
    {
        const string both = "methods: [GET], paths: [\"/api*\"]";
        Assert.True(To(both, Request(method: "GET", path: "/api/x")));
        Assert.False(To(both, Request(method: "POST", path: "/api/x")));
        Assert.False(To(both, Request(method: "GET", path: "/x")));
        var anyOf = Policy("allow", "rules: [{to: [{operation: {methods: [POST]}}, {operation: {paths: [/x]}}]}]");
        Assert.True(Allowed(Request(method: "POST", path: "/y"), anyOf));
        Assert.True(Allowed(Request(method: "GET", path: "/x"), anyOf));
        Assert.False(Allowed(Request(method: "GET", path: "/y"), anyOf));
    }

    // --- from.source

    [Theory]
    [InlineData("principals: [cluster.local/ns/shop/sa/client]", Client, true)]
    [InlineData("principals: [cluster.local/ns/shop/sa/other]", Client, false)]
    [InlineData("principals: [\"cluster.local/ns/shop/*\"]", Client, true)]
    [InlineData("principals: [\"*/sa/client\"]", Client, true)]
    [InlineData("principals: [\"*\"]", Client, true)]
    [InlineData("principals: [\"*\"]", null, false)] // no identity: no principal matches
    [InlineData("notPrincipals: [cluster.local/ns/shop/sa/client]", Client, false)]
    [InlineData("notPrincipals: [cluster.local/ns/shop/sa/client]", "spiffe://cluster.local/ns/shop/sa/other", true)]
    [InlineData("namespaces: [shop]", Client, true)]
    [InlineData("namespaces: [other]", Client, false)]
    [InlineData("namespaces: [\"sh*\"]", Client, true)]
    [InlineData("notNamespaces: [shop]", Client, false)]
    [InlineData("notNamespaces: [other]", Client, true)]
    [InlineData("serviceAccounts: [client]", Client, true)] // in the policy's namespace
    [InlineData("serviceAccounts: [shop/client]", Client, true)]
    [InlineData("serviceAccounts: [other/client]", Client, false)]
    [InlineData("notServiceAccounts: [client]", Client, false)]
    [InlineData("requestPrincipals: [\"*\"]", Client, false)] // no JWT: never a request principal
    [InlineData("notRequestPrincipals: [\"issuer/subject\"]", Client, true)]
    public void Identity_fields(string source, string? identity, bool matches) =>
        Assert.Equal(matches, From(source, Request(identity: identity)));

    [Theory]
    [InlineData("ipBlocks: [10.0.0.5]", "10.0.0.5", true)]
    [InlineData("ipBlocks: [10.0.0.0/24]", "10.0.0.200", true)]
    [InlineData("ipBlocks: [10.0.0.0/24]", "10.0.1.1", false)]
    [InlineData("ipBlocks: [\"fd00::/8\"]", "10.0.0.5", false)] // never the other family
    [InlineData("ipBlocks: [\"fd00::/8\"]", "fd00::1", true)]
    [InlineData("notIpBlocks: [10.0.0.0/8]", "10.1.2.3", false)]
    [InlineData("notIpBlocks: [10.0.0.0/8]", "192.168.1.1", true)]
    [InlineData("remoteIpBlocks: [10.0.0.0/16]", "10.0.3.4", true)]
    [InlineData("remoteIpBlocks: [10.0.0.0/16]", "10.1.3.4", false)]
    [InlineData("notRemoteIpBlocks: [10.0.0.0/16]", "10.0.3.4", false)]
    public void Address_fields(string source, string address, bool matches) =>
        Assert.Equal(matches, From(source, Request(source: address)));

    [Fact]
    public void Every_field_of_a_source_must_match_and_from_and_to_must_both_match()
    {
        const string both = "namespaces: [shop], ipBlocks: [10.0.0.0/8]";
        Assert.True(From(both, Request()));
        Assert.False(From(both, Request(source: "192.168.0.1")));
        Assert.False(From(both, Request(identity: "spiffe://cluster.local/ns/other/sa/client")));
        var fromAndTo = Policy("allow", "rules: [{from: [{source: {namespaces: [shop]}}], to: [{operation: {methods: [GET]}}]}]");
        Assert.True(Allowed(Request(), fromAndTo));
        Assert.False(Allowed(Request(method: "POST"), fromAndTo));
        Assert.False(Allowed(Request(identity: "spiffe://cluster.local/ns/other/sa/x"), fromAndTo));
    }

    // --- when

    [Theory]
    [InlineData("key: \"request.headers[x-user]\", values: [admin]", "admin", true)]
    [InlineData("key: \"request.headers[x-user]\", values: [admin]", "Admin", false)] // values are case-sensitive
    [InlineData("key: \"request.headers[X-User]\", values: [admin]", "admin", true)] // names are not
    [InlineData("key: \"request.headers[x-user]\", values: [\"adm*\"]", "administrator", true)]
    [InlineData("key: \"request.headers[x-user]\", values: [\"*min\"]", "admin", true)]
    [InlineData("key: \"request.headers[x-user]\", values: [\"*\"]", "anyone", true)]
    [InlineData("key: \"request.headers[x-user]\", values: [\"*\"]", null, false)]
    [InlineData("key: \"request.headers[x-user]\", values: [admin]", null, false)]
    [InlineData("key: \"request.headers[x-user]\", notValues: [admin]", "admin", false)]
    [InlineData("key: \"request.headers[x-user]\", notValues: [admin]", "guest", true)]
    [InlineData("key: \"request.headers[x-user]\", notValues: [admin]", null, true)]
    [InlineData("key: \"request.headers[x-user]\", values: [\"*\"], notValues: [admin]", "guest", true)]
    [InlineData("key: \"request.headers[x-user]\", values: [\"*\"], notValues: [admin]", "admin", false)]
    public void Header_conditions(string condition, string? header, bool matches) =>
        Assert.Equal(matches, When(condition, header is null ? Request() : Request(headers: ("x-user", header))));

    [Fact]
    public void A_repeated_header_is_matched_as_its_values_joined_with_commas()
    {
        var request = Request(headers: [("x-user", "a"), ("x-user", "b")]);
        Assert.True(When("key: \"request.headers[x-user]\", values: [\"a,b\"]", request));
        Assert.False(When("key: \"request.headers[x-user]\", values: [a]", request));
    }

    [Theory]
    [InlineData("key: source.ip, values: [10.0.0.0/24]", true)]
    [InlineData("key: source.ip, notValues: [10.0.0.5]", false)]
    [InlineData("key: remote.ip, values: [10.0.0.5]", true)]
    [InlineData("key: remote.ip, values: [10.9.0.0/16]", false)]
    [InlineData("key: source.namespace, values: [shop]", true)]
    [InlineData("key: source.namespace, values: [other]", false)]
    [InlineData("key: source.principal, values: [cluster.local/ns/shop/sa/client]", true)]
    [InlineData("key: source.principal, notValues: [\"*/sa/client\"]", false)]
    [InlineData("key: source.serviceAccount, values: [shop/client]", true)]
    [InlineData("key: source.serviceAccount, values: [other]", false)]
    [InlineData("key: destination.ip, values: [10.96.0.0/16]", true)]
    [InlineData("key: destination.ip, values: [10.97.0.0/16]", false)]
    [InlineData("key: destination.port, values: [\"80\"]", true)]
    [InlineData("key: destination.port, notValues: [\"80\"]", false)]
    [InlineData("key: connection.sni, values: [\"*\"]", false)] // no SNI inside the tunnel
    [InlineData("key: connection.sni, notValues: [example.com]", true)]
    [InlineData("key: request.auth.principal, values: [\"*\"]", false)] // no JWT
    [InlineData("key: request.auth.audiences, values: [aud]", false)]
    [InlineData("key: request.auth.presenter, values: [p]", false)]
    [InlineData("key: \"request.auth.claims[iss]\", values: [\"*\"]", false)]
    [InlineData("key: \"request.auth.claims[iss]\", notValues: [issuer]", true)]
    public void Conditions(string condition, bool matches) =>
        Assert.Equal(matches, When(condition, Request()));

    [Fact]
    public void A_connection_sni_condition_reads_the_sni_when_there_is_one()
    {
        Assert.True(When("key: connection.sni, values: [\"*.example.com\"]", Request(sni: "www.example.com")));
        Assert.False(When("key: connection.sni, values: [\"*.example.com\"]", Request(sni: "www.example.org")));
    }

    [Fact]
    public void Every_condition_must_match()
    {
        var policy = Policy("allow", "rules: [{when: [{key: source.namespace, values: [shop]}, {key: \"request.headers[x-a]\", values: [\"1\"]}]}]");
        Assert.True(Allowed(Request(headers: ("x-a", "1")), policy));
        Assert.False(Allowed(Request(), policy));
    }

    [Fact]
    public void A_decision_allocates_nothing()
    {
        var authorizer = L7Authorizer.Build([
            Policy("deny", "action: DENY\nrules: [{to: [{operation: {paths: [\"/admin*\"], methods: [DELETE]}}], when: [{key: \"request.headers[x-debug]\", values: [\"1\"]}]}]"),
            Policy("allow", "rules: [{from: [{source: {principals: [cluster.local/ns/shop/sa/client], ipBlocks: [10.0.0.0/8]}}], to: [{operation: {hosts: [\"*.cluster.local\"], paths: [\"/api/{*}/x\"]}}]}]"),
        ], Ns, "waypoint");
        var request = Request(path: "/api/v1/x", headers: ("x-debug", "0"));
        Assert.True(authorizer.Evaluate(Ns, "echo", request).Allowed);
        var before = GC.GetAllocatedBytesForCurrentThread();
        for (var i = 0; i < 100; i++)
        {
            authorizer.Evaluate(Ns, "echo", request);
        }
        Assert.Equal(0, GC.GetAllocatedBytesForCurrentThread() - before);
    }
}

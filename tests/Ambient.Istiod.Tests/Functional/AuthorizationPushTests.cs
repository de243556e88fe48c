using System.Text.Json;
using Ambient.Core.Protos.Discovery;
using Ambient.Core.Protos.Security;
using Ambient.Core.Xds;
using Grpc.Core;

namespace Ambient.Istiod.Tests.Functional;

/// <summary>
/// AuthorizationPolicies in the config folder reach a delta xDS client as istio.security.Authorization resources,
/// only the changed ones after an edit, removed by name after a delete; selector policies are named on the workloads
/// they select; /debug/authorizationpolicies tells where each one is enforced.
/// </summary>
public sealed class AuthorizationPushTests : IAsyncLifetime
{
    private static readonly TimeSpan Patience = TimeSpan.FromSeconds(15);

    private const string PolicyYaml = """
        apiVersion: security.istio.io/v1
        kind: AuthorizationPolicy
        metadata: {name: echo-allow, namespace: demo}
        spec:
          selector: {matchLabels: {app: echo}}
          rules:
          - from: [{source: {principals: ["cluster.local/ns/demo/sa/client"]}}]
          - to: [{operation: {methods: ["GET"]}}]
        ---
        apiVersion: security.istio.io/v1
        kind: AuthorizationPolicy
        metadata: {name: deny-legacy, namespace: istio-system, annotations: {istio.io/dry-run: "true"}}
        spec:
          action: DENY
          rules: [{from: [{source: {namespaces: ["legacy"]}}]}]
        ---
        apiVersion: security.istio.io/v1
        kind: AuthorizationPolicy
        metadata: {name: waypoint-only, namespace: demo}
        spec:
          targetRefs: [{kind: Service, group: "", name: echo}]
          rules: [{to: [{operation: {paths: ["/admin"]}}]}]
        """;

    private IstiodFixture _istiod = null!;
    private IstiodGrpcClient _client = null!;

    public async ValueTask InitializeAsync()
    {
        var files = Meshes.Demo();
        files["policies.yaml"] = PolicyYaml;
        _istiod = await IstiodFixture.StartAsync(files, monitoring: true);
        _client = new IstiodGrpcClient(_istiod);
    }

    public async ValueTask DisposeAsync()
    {
        _client.Dispose();
        await _istiod.DisposeAsync();
    }

    private static async Task<DeltaDiscoveryResponse> NextAsync(AsyncDuplexStreamingCall<DeltaDiscoveryRequest, DeltaDiscoveryResponse> call)
    {
        Assert.True(await call.ResponseStream.MoveNext(TestContext.Current.CancellationToken).WaitAsync(Patience, TestContext.Current.CancellationToken));
        var response = call.ResponseStream.Current;
        await call.RequestStream.WriteAsync(new DeltaDiscoveryRequest { TypeUrl = response.TypeUrl, ResponseNonce = response.Nonce }, TestContext.Current.CancellationToken);
        return response;
    }

    private static Dictionary<string, Authorization> Policies(DeltaDiscoveryResponse response) =>
        response.Resources.ToDictionary(r => r.Name, r => Authorization.Parser.ParseFrom(r.Resource_.Value));

    [Fact]
    public async Task Policies_are_pushed_then_only_the_changed_one_then_removed()
    {
        using var call = _client.StartDiscovery(IstiodGrpcClient.BearerOf(_istiod.TokenOf("node-1")));
        await call.RequestStream.WriteAsync(new DeltaDiscoveryRequest { TypeUrl = XdsTypeUrls.Authorization, ResourceNamesSubscribe = { "*" } }, TestContext.Current.CancellationToken);

        var first = await NextAsync(call);
        Assert.Equal(XdsTypeUrls.Authorization, first.TypeUrl);
        var all = Policies(first);
        Assert.Equal(["demo/echo-allow", "istio-system/deny-legacy"], all.Keys.Order(StringComparer.Ordinal));
        var allow = all["demo/echo-allow"];
        Assert.Equal(("echo-allow", "demo", Scope.WorkloadSelector, Ambient.Core.Protos.Security.Action.Allow), (allow.Name, allow.Namespace, allow.Scope, allow.Action));
        // The GET rule is an L7 rule in an ALLOW policy: dropped; the principal rule stays.
        Assert.Equal([new StringMatch { Exact = "cluster.local/ns/demo/sa/client" }], Assert.Single(allow.Rules).Clauses[0].Matches[0].Principals);
        var deny = all["istio-system/deny-legacy"];
        Assert.Equal((Scope.Global, Ambient.Core.Protos.Security.Action.Deny, true), (deny.Scope, deny.Action, deny.DryRun));

        // The selector policy is named on the workload it selects, not on the others.
        Assert.Equal(["demo/echo-allow"], _istiod.Host.Mesh.Snapshot.FindPod("demo", "echo-v1")!.AuthorizationPolicies);
        Assert.Empty(_istiod.Host.Mesh.Snapshot.FindPod("demo", "client")!.AuthorizationPolicies);

        // Edit one policy: only it comes again.
        _istiod.WriteConfig("policies.yaml", PolicyYaml.Replace("namespaces: [\"legacy\"]", "namespaces: [\"legacy\", \"old\"]", StringComparison.Ordinal));
        var update = await NextAsync(call);
        Assert.Equal(["istio-system/deny-legacy"], update.Resources.Select(r => r.Name));
        Assert.Equal(2, Policies(update)["istio-system/deny-legacy"].Rules[0].Clauses[0].Matches[0].Namespaces.Count);
        Assert.Empty(update.RemovedResources);

        // Delete the file: both ztunnel policies are removed by name.
        File.Delete(Path.Combine(_istiod.ConfigFolder, "policies.yaml"));
        var removal = await NextAsync(call);
        Assert.Empty(removal.Resources);
        Assert.Equal(["demo/echo-allow", "istio-system/deny-legacy"], removal.RemovedResources.Order(StringComparer.Ordinal));
    }

    [Fact]
    public async Task Debug_endpoint_says_where_each_policy_is_enforced()
    {
        using var http = new HttpClient { BaseAddress = new Uri($"http://{_istiod.Host.MonitoringEndpoint}") };
        using var doc = JsonDocument.Parse(await http.GetStringAsync(new Uri("/debug/authorizationpolicies", UriKind.Relative), TestContext.Current.CancellationToken));
        Assert.Equal("istio-system", doc.RootElement.GetProperty("rootNamespace").GetString());
        var byName = doc.RootElement.GetProperty("policies").EnumerateArray()
            .ToDictionary(p => p.GetProperty("namespace").GetString() + "/" + p.GetProperty("name").GetString());
        Assert.Equal(["demo/echo-allow", "demo/waypoint-only", "istio-system/deny-legacy"], byName.Keys);

        var allow = byName["demo/echo-allow"];
        Assert.Equal("ztunnel", allow.GetProperty("enforcedBy").GetString());
        Assert.Equal("WORKLOAD_SELECTOR", allow.GetProperty("scope").GetString());
        Assert.Equal("echo", allow.GetProperty("selector").GetProperty("app").GetString());
        Assert.False(allow.GetProperty("dryRun").GetBoolean());
        Assert.Contains(allow.GetProperty("warnings").EnumerateArray(),
            w => w.GetString() == "rules[1]: L7 attributes (methods) in an ALLOW rule enforced by ztunnel: this rule never matches");
        Assert.Equal("demo", allow.GetProperty("ztunnel").GetProperty("namespace").GetString());

        var deny = byName["istio-system/deny-legacy"];
        Assert.Equal(("ztunnel", "GLOBAL", "DENY", true), (deny.GetProperty("enforcedBy").GetString(), deny.GetProperty("scope").GetString(),
            deny.GetProperty("action").GetString(), deny.GetProperty("dryRun").GetBoolean()));

        var waypoint = byName["demo/waypoint-only"];
        Assert.Equal("waypoint", waypoint.GetProperty("enforcedBy").GetString());
        Assert.False(waypoint.TryGetProperty("scope", out _));
        Assert.False(waypoint.TryGetProperty("ztunnel", out _));
        Assert.Equal("Service", waypoint.GetProperty("targetRefs")[0].GetProperty("kind").GetString());
        Assert.EndsWith("policies.yaml:17", waypoint.GetProperty("source").GetString(), StringComparison.Ordinal);
    }
}

using System.Diagnostics;
using System.Net;
using Ambient.Core.Protos.AuthorizationPolicies;
using Ambient.Core.Protos.Waypoint;

namespace Ambient.Waypoint.Tests.Functional;

/// <summary>One environment for the authorization traffic tests (they run one after another and replace the policies).</summary>
public sealed class AuthorizationEnvironment : IAsyncLifetime
{
    public const string Ns = "wp-authz";

    internal WaypointEnvironment Env { get; private set; } = null!;

    internal HttpClient Http { get; private set; } = null!;

    public async ValueTask InitializeAsync()
    {
        Env = await WaypointEnvironment.StartAsync(Ns);
        Env.ServeServices("echo");
        // Requests for echo go to infra-backend-v1, whose log shows every request that reached it.
        var route = new HTTPRoute { Namespace = Ns, Name = "to-v1" };
        route.ParentRefs.Add(new ParentReference { Group = "", Kind = "Service", Namespace = Ns, Name = "echo" });
        var rule = new HTTPRouteRule();
        rule.Matches.Add(new HTTPRouteMatch { Path = new HTTPPathMatch { Type = PathMatchType.PathPrefix, Value = "/" } });
        rule.BackendRefs.Add(new HTTPBackendRef
        {
            BackendRef = new BackendRef { Group = "", Kind = "Service", Namespace = Ns, Name = "infra-backend-v1", Port = 8080 },
            Weight = 1,
        });
        route.Rules.Add(rule);
        Env.UseRoutes(route);
        Http = Env.HttpThroughWaypoint(new IPEndPoint(Env.Service("echo").Vips[0], WaypointEnvironment.HttpPort));
    }

    public async ValueTask DisposeAsync()
    {
        Http.Dispose();
        await Env.DisposeAsync();
    }
}

/// <summary>
/// AuthorizationPolicies enforced by the waypoint end to end: client pod -> HBONE -> waypoint (policy, then route) ->
/// HBONE -> the echo backend. A denied request is answered 403 <c>RBAC: access denied</c> by the waypoint, the backend
/// never sees it, and the metrics and access log say so; policies come through the waypoint's xDS handler, and once
/// through istiod-lite from the config folder.
/// </summary>
[Collection(WaypointEnvironment.Collection)]
public sealed class AuthorizationTrafficTests(AuthorizationEnvironment fixture) : IClassFixture<AuthorizationEnvironment>
{
    private const string Ns = AuthorizationEnvironment.Ns;
    private const string Backend = "infra-backend-v1";
    private readonly WaypointEnvironment _env = fixture.Env;

    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    private static string EchoHost => $"echo.{Ns}.svc.cluster.local";

    private static PolicyTargetReference OnGateway => new() { Group = "gateway.networking.k8s.io", Kind = "Gateway", Name = "waypoint", Namespace = Ns };

    private static PolicyTargetReference OnService(string name) => new() { Group = "", Kind = "Service", Name = name, Namespace = Ns };

    private static AuthorizationPolicySpec Policy(string name, PolicyAction action, PolicyTargetReference target, params PolicyRule[] rules)
    {
        var spec = new AuthorizationPolicySpec { Namespace = Ns, Name = name, Action = action };
        spec.TargetRefs.Add(target);
        spec.Rules.Add(rules);
        return spec;
    }

    private static PolicyRule To(PolicyOperation operation) => new() { To = { operation } };

    private async Task<(HttpStatusCode Status, string Body)> SendAsync(HttpMethod method, string path, string? host = null,
        params (string Name, string Value)[] headers)
    {
        using var request = new HttpRequestMessage(method, $"http://{EchoHost}{path}");
        if (host is not null)
        {
            request.Headers.Host = host;
        }
        foreach (var (name, value) in headers)
        {
            request.Headers.TryAddWithoutValidation(name, value);
        }
        using var response = await fixture.Http.SendAsync(request, Ct);
        return (response.StatusCode, await response.Content.ReadAsStringAsync(Ct));
    }

    private Task<(HttpStatusCode Status, string Body)> GetAsync(string path, params (string Name, string Value)[] headers) =>
        SendAsync(HttpMethod.Get, path, null, headers);

    private void AssertDenied((HttpStatusCode Status, string Body) response, string path)
    {
        Assert.True(response.Status == HttpStatusCode.Forbidden, $"{path}: {response.Status} {response.Body}\n{_env.Warnings()}");
        Assert.Equal("RBAC: access denied", response.Body);
        Assert.DoesNotContain(path, _env.EchoLog(Backend), StringComparison.Ordinal);
    }

    private void AssertAllowed((HttpStatusCode Status, string Body) response, string path)
    {
        Assert.True(response.Status == HttpStatusCode.OK, $"{path}: {response.Status} {response.Body}\n{_env.Warnings()}");
        Assert.Contains(path, _env.EchoLog(Backend), StringComparison.Ordinal);
    }

    [Fact(Timeout = WaypointEnvironment.TestTimeoutMs)]
    public async Task A_method_rule_denies_with_403_before_the_backend_and_the_access_log_names_the_policy()
    {
        _env.UsePolicies(Policy("deny-delete", PolicyAction.Deny, OnGateway, To(new PolicyOperation { Methods = { "DELETE" } })));

        AssertDenied(await SendAsync(HttpMethod.Delete, "/method/delete"), "/method/delete");
        AssertAllowed(await SendAsync(HttpMethod.Get, "/method/get"), "/method/get");

        var line = await AccessLogAsync("path=/method/delete");
        Assert.Contains("status=403", line, StringComparison.Ordinal);
        Assert.Contains("flags=RBAC", line, StringComparison.Ordinal);
        Assert.Contains($"details=rbac_access_denied_matched_policy[ns[{Ns}]-policy[deny-delete]-rule[0]]", line, StringComparison.Ordinal);
    }

    [Fact(Timeout = WaypointEnvironment.TestTimeoutMs)]
    public async Task A_path_rule_on_the_service_allows_only_its_paths()
    {
        _env.UsePolicies(Policy("allow-public", PolicyAction.Allow, OnService("echo"), To(new PolicyOperation { Paths = { "/public/*" } })));

        AssertAllowed(await GetAsync("/public/page"), "/public/page");
        AssertDenied(await GetAsync("/private/page"), "/private/page");
        Assert.Contains("details=rbac_access_denied_matched_policy[none]", await AccessLogAsync("path=/private/page"), StringComparison.Ordinal);
    }

    [Fact(Timeout = WaypointEnvironment.TestTimeoutMs)]
    public async Task A_header_condition_denies_the_requests_that_carry_it()
    {
        var rule = new PolicyRule { When = { new PolicyCondition { Key = "request.headers[x-block]", Values = { "yes" } } } };
        _env.UsePolicies(Policy("deny-header", PolicyAction.Deny, OnGateway, rule));

        AssertDenied(await GetAsync("/header/blocked", ("x-block", "yes")), "/header/blocked");
        AssertAllowed(await GetAsync("/header/other", ("x-block", "no")), "/header/other");
        AssertAllowed(await GetAsync("/header/none"), "/header/none");
    }

    [Fact(Timeout = WaypointEnvironment.TestTimeoutMs)]
    public async Task A_host_rule_matches_the_host_case_insensitively_and_without_its_port()
    {
        _env.UsePolicies(Policy("allow-host", PolicyAction.Allow, OnService("echo"), To(new PolicyOperation { Hosts = { EchoHost } })));

        AssertAllowed(await SendAsync(HttpMethod.Get, "/host/mixed-case", $"ECHO.{Ns}.svc.cluster.local:80"), "/host/mixed-case");
        AssertDenied(await SendAsync(HttpMethod.Get, "/host/other", "other.example.com"), "/host/other");
    }

    [Fact(Timeout = WaypointEnvironment.TestTimeoutMs)]
    public async Task A_denial_is_counted_as_403_with_the_RBAC_flag()
    {
        _env.UsePolicies(Policy("deny-metrics", PolicyAction.Deny, OnGateway, To(new PolicyOperation { Paths = { "/metrics-denied" } })));
        AssertDenied(await GetAsync("/metrics-denied"), "/metrics-denied");

        // Recorded once the response is complete, so maybe just after the client read it.
        using var admin = new HttpClient();
        var deadline = Stopwatch.StartNew();
        while (true)
        {
            var text = await admin.GetStringAsync($"http://{_env.Waypoint.AdminEndpoint}/stats/prometheus", Ct);
            if (text.Split('\n').Any(l => l.StartsWith("istio_requests_total{", StringComparison.Ordinal)
                && l.Contains("response_code=\"403\"", StringComparison.Ordinal) && l.Contains("response_flags=\"RBAC\"", StringComparison.Ordinal)
                && l.Contains("reporter=\"waypoint\"", StringComparison.Ordinal)))
            {
                break;
            }
            Assert.True(deadline.Elapsed < TimeSpan.FromSeconds(10), "no istio_requests_total row with response_code 403 and response_flags RBAC:\n" + text);
            await Task.Delay(20, Ct);
        }
    }

    [Fact(Timeout = WaypointEnvironment.TestTimeoutMs)]
    public async Task A_dry_run_policy_logs_the_would_be_denial_and_enforces_nothing()
    {
        var policy = Policy("dry-deny", PolicyAction.Deny, OnGateway, To(new PolicyOperation { Paths = { "/dry/*" } }));
        policy.DryRun = true;
        _env.UsePolicies(policy);

        AssertAllowed(await GetAsync("/dry/run"), "/dry/run");
        var line = Assert.Single(_env.Logs.Matching("dry-run policies would deny"), l => l.Contains("/dry/run", StringComparison.Ordinal));
        Assert.Contains($"{Ns}/dry-deny", line, StringComparison.Ordinal);
    }

    [Fact(Timeout = WaypointEnvironment.TestTimeoutMs)]
    public async Task A_policy_written_to_the_config_folder_applies_to_new_requests_within_a_second_of_its_push()
    {
        _env.UsePolicies();
        AssertAllowed(await GetAsync("/live/before"), "/live/before");

        // On the waypoint's Gateway: this environment's Services do not name the waypoint (the client tunnels to it
        // directly), so istiod-lite binds no Service to it.
        var file = Path.Combine(_env.ConfigFolder, "live-policy.yaml");
        File.WriteAllText(file, $"""
            apiVersion: security.istio.io/v1
            kind: AuthorizationPolicy
            metadata: {"{"}name: deny-live, namespace: {Ns}{"}"}
            spec:
              targetRefs: [{"{"}kind: Gateway, group: gateway.networking.k8s.io, name: waypoint{"}"}]
              action: DENY
              rules: [{"{"}to: [{"{"}operation: {"{"}paths: ["/live/*"]{"}"}{"}"}]{"}"}]
            """);
        try
        {
            // From the moment istiod-lite has published it: pushed, compiled and enforced within 1 s.
            await WaitUntilAsync(() => _env.Istiod.Mesh.Policies.Policies.Any(p => p.Key == $"{Ns}/deny-live"), TimeSpan.FromSeconds(15));
            var published = Stopwatch.StartNew();
            var i = 0;
            while (true)
            {
                var path = $"/live/{i++}";
                var response = await GetAsync(path);
                if (response.Status == HttpStatusCode.Forbidden)
                {
                    AssertDenied(response, path);
                    break;
                }
                Assert.True(published.Elapsed < TimeSpan.FromSeconds(1), $"still allowed {published.Elapsed} after the push; "
                    + $"waypoint holds [{string.Join(", ", _env.Waypoint.Config.Policies.Keys)}]\n{_env.Warnings()}\n"
                    + string.Join("\n", _env.Logs.Matching("").TakeLast(20)));
                await Task.Delay(20, Ct);
            }
            Assert.True(published.Elapsed < TimeSpan.FromSeconds(1), $"denied only {published.Elapsed} after the push");
        }
        finally
        {
            File.Delete(file);
        }
        // Removing the file removes the policy at the waypoint.
        await WaitUntilAsync(() => _env.Waypoint.Config.Policies.IsEmpty, TimeSpan.FromSeconds(15));
        AssertAllowed(await GetAsync("/live/after"), "/live/after");
    }

    /// <summary>The access log line of one request: written once the response is complete, so maybe after the client read it.</summary>
    private async Task<string> AccessLogAsync(string match)
    {
        await WaitUntilAsync(() => _env.Logs.Matching(match).Any(), TimeSpan.FromSeconds(10));
        return Assert.Single(_env.Logs.Matching(match));
    }

    private static async Task WaitUntilAsync(Func<bool> condition, TimeSpan timeout)
    {
        var deadline = Stopwatch.StartNew();
        while (!condition())
        {
            Assert.True(deadline.Elapsed < timeout, "condition not met in time");
            await Task.Delay(10, Ct);
        }
    }
}

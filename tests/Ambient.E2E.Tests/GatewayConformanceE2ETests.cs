using System.Text.Json;

namespace Ambient.E2E.Tests;

/// <summary>
/// Our Gateway API conformance suite for the GAMMA mesh profile, end to end through real processes: requests leave
/// the client pod through its ztunnel, reach the namespace's waypoint over HBONE, and are routed by HTTPRoutes
/// attached to Services to the echo backends, which report what they received (the conformance echo contract). The
/// cases follow apis/v1/httproute_types.go and the upstream conformance tests (tests/mesh/*, httproute-*): every match
/// type, every precedence rule, weights, invalid backendRefs, every filter, timeouts, retries and route status. The
/// routes live in <see cref="GatewayConformanceMesh"/>; each test names the Service whose routes it exercises.
/// </summary>
public sealed class GatewayConformanceE2ETests(GatewayConformanceMesh mesh) : IClassFixture<GatewayConformanceMesh>
{
    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    private Task<ConformanceResponse> GetAsync(string service, string pathAndQuery, params (string Name, string Value)[] headers) =>
        SendAsync(HttpMethod.Get, service, pathAndQuery, headers);

    private Task<ConformanceResponse> SendAsync(HttpMethod method, string service, string pathAndQuery, params (string Name, string Value)[] headers) =>
        mesh.Client.SendAsync(method, $"http://{mesh.Host(service)}{pathAndQuery}", headers);

    private async Task AssertBackendAsync(string expected, string service, string pathAndQuery, params (string Name, string Value)[] headers)
    {
        var r = await GetAsync(service, pathAndQuery, headers);
        Assert.True(r.Code == 200 && r.Service == expected,
            $"GET {service}{pathAndQuery} [{string.Join(", ", headers.Select(h => h.Name + ": " + h.Value))}]: expected {expected}, got {r}");
    }

    // ---- Matches ----

    [Fact]
    public async Task PathExact_MatchesOnlyThatPath()
    {
        await AssertBackendAsync("infra-backend-v2", "match-path", "/exact");
        await AssertBackendAsync("infra-backend-v2", "match-path", "/exact?with=query");
        await AssertBackendAsync("infra-backend-v1", "match-path", "/exact/sub");
        await AssertBackendAsync("infra-backend-v1", "match-path", "/exactly");
        await AssertBackendAsync("infra-backend-v1", "match-path", "/exact/");
        // Paths are case-sensitive.
        await AssertBackendAsync("infra-backend-v1", "match-path", "/EXACT");
        await AssertBackendAsync("infra-backend-v1", "match-path", "/Prefix/x");
    }

    [Fact]
    public async Task PathPrefix_MatchesWholeSegmentsOnly()
    {
        await AssertBackendAsync("infra-backend-v3", "match-path", "/prefix");
        await AssertBackendAsync("infra-backend-v3", "match-path", "/prefix/");
        await AssertBackendAsync("infra-backend-v3", "match-path", "/prefix/one/two");
        await AssertBackendAsync("infra-backend-v1", "match-path", "/prefixed");
        // A trailing slash in the prefix is ignored (as Ingress's Prefix): /trailing/ matches /trailing, not /trailingx.
        await AssertBackendAsync("infra-backend-v2", "match-path", "/trailing");
        await AssertBackendAsync("infra-backend-v2", "match-path", "/trailing/x");
        await AssertBackendAsync("infra-backend-v1", "match-path", "/trailingx");
    }

    [Fact]
    public async Task PathRegularExpression_Matches()
    {
        await AssertBackendAsync("infra-backend-v2", "match-path", "/regex/123");
        await AssertBackendAsync("infra-backend-v1", "match-path", "/regex/abc");
    }

    [Fact]
    public async Task HeaderExact_NameIsCaseInsensitive_ValueIsNot()
    {
        await AssertBackendAsync("infra-backend-v2", "match-header", "/", ("version", "two"));
        await AssertBackendAsync("infra-backend-v2", "match-header", "/", ("VERSION", "two"));
        await AssertBackendAsync("infra-backend-v1", "match-header", "/", ("version", "TWO"));
        await AssertBackendAsync("infra-backend-v1", "match-header", "/", ("version", "one"));
        await AssertBackendAsync("infra-backend-v1", "match-header", "/");
    }

    [Fact]
    public async Task HeaderRegularExpression_Matches()
    {
        await AssertBackendAsync("infra-backend-v3", "match-header", "/", ("color", "red"));
        await AssertBackendAsync("infra-backend-v3", "match-header", "/", ("Color", "blue"));
        await AssertBackendAsync("infra-backend-v1", "match-header", "/", ("color", "green"));
    }

    [Fact]
    public async Task HeaderMatch_RepeatedName_OnlyTheFirstEntryCounts()
    {
        // "If multiple entries specify equivalent header names, only the first entry with an equivalent name MUST be
        // considered for a match."
        await AssertBackendAsync("infra-backend-v3", "match-header", "/duplicate", ("dup", "first"));
        await AssertBackendAsync("infra-backend-v1", "match-header", "/duplicate", ("dup", "second"));
    }

    [Fact]
    public async Task RegularExpressionMatchingEmpty_DoesNotMatchAnAbsentHeaderOrQueryParam()
    {
        await AssertBackendAsync("infra-backend-v2", "match-header", "/any-value", ("x-any", ""));
        await AssertBackendAsync("infra-backend-v2", "match-header", "/any-value", ("x-any", "whatever"));
        await AssertBackendAsync("infra-backend-v1", "match-header", "/any-value");
        await AssertBackendAsync("infra-backend-v2", "match-query", "/any-value?any=");
        await AssertBackendAsync("infra-backend-v1", "match-query", "/any-value");
    }

    [Fact]
    public async Task QueryParamExact_NameAndValueAreCaseSensitive()
    {
        await AssertBackendAsync("infra-backend-v2", "match-query", "/?animal=whale");
        await AssertBackendAsync("infra-backend-v2", "match-query", "/path?other=1&animal=whale");
        await AssertBackendAsync("infra-backend-v1", "match-query", "/?animal=Whale");
        await AssertBackendAsync("infra-backend-v1", "match-query", "/?ANIMAL=whale");
        await AssertBackendAsync("infra-backend-v1", "match-query", "/?animal=dolphin");
    }

    [Fact]
    public async Task QueryParamRegularExpression_Matches()
    {
        await AssertBackendAsync("infra-backend-v3", "match-query", "/?id=42");
        await AssertBackendAsync("infra-backend-v1", "match-query", "/?id=x42");
    }

    [Fact]
    public async Task Method_Matches()
    {
        Assert.Equal("infra-backend-v2", (await SendAsync(HttpMethod.Post, "match-method", "/anything")).Service);
        Assert.Equal("infra-backend-v1", (await SendAsync(HttpMethod.Get, "match-method", "/anything")).Service);
        Assert.Equal("infra-backend-v3", (await SendAsync(HttpMethod.Delete, "match-method", "/delete/1")).Service);
        Assert.Equal("infra-backend-v1", (await SendAsync(HttpMethod.Delete, "match-method", "/other")).Service);
    }

    [Fact]
    public async Task ConditionsOfOneMatch_AreAnded()
    {
        await AssertBackendAsync("infra-backend-v2", "match-and-or", "/and?q=2", ("x-and", "1"));
        await AssertBackendAsync("infra-backend-v1", "match-and-or", "/and", ("x-and", "1"));
        await AssertBackendAsync("infra-backend-v1", "match-and-or", "/and?q=2");
        await AssertBackendAsync("infra-backend-v1", "match-and-or", "/other?q=2", ("x-and", "1"));
    }

    [Fact]
    public async Task MatchesOfOneRule_AreOred()
    {
        await AssertBackendAsync("infra-backend-v3", "match-and-or", "/or-a");
        await AssertBackendAsync("infra-backend-v3", "match-and-or", "/or-b");
        await AssertBackendAsync("infra-backend-v1", "match-and-or", "/or-c");
    }

    [Fact]
    public async Task Unmatched_GoesToTheServiceAsWithoutRoutes()
    {
        // No rule of the route matches: the Service's own endpoints (infra-backend-v1), as if no HTTPRoute existed.
        var r = await GetAsync("match-method", "/unmatched?x=1");
        Assert.True(r.Code == 200 && r.Service == "infra-backend-v1", r.ToString());
        Assert.Equal("/unmatched?x=1", r.Path);
    }

    [Fact]
    public async Task RuleWithoutMatches_MatchesEverything_RankedLast()
    {
        await AssertBackendAsync("infra-backend-v2", "match-default", "/anything");
        await AssertBackendAsync("infra-backend-v3", "match-default", "/specific");
    }

    [Fact]
    public async Task ParentRefPort_AppliesOnlyOnThatPort()
    {
        var host = mesh.Host("ports");
        Assert.Equal("infra-backend-v2", (await mesh.Client.SendAsync(HttpMethod.Get, $"http://{host}/by-port")).Service);
        Assert.Equal("infra-backend-v1", (await mesh.Client.SendAsync(HttpMethod.Get, $"http://{host}:8080/by-port")).Service);
        // No port in the parentRef: every port of the Service.
        Assert.Equal("infra-backend-v3", (await mesh.Client.SendAsync(HttpMethod.Get, $"http://{host}/any-port")).Service);
        Assert.Equal("infra-backend-v3", (await mesh.Client.SendAsync(HttpMethod.Get, $"http://{host}:8080/any-port")).Service);
    }

    [Fact]
    public async Task RoutesFollowTheServiceAddressed_NotTheHostHeader()
    {
        // MeshFrontendHostname: the parentRef Service is the destination address; a Host header naming another
        // Service changes nothing.
        var toMatchPath = await mesh.Client.SendAsync(HttpMethod.Get, $"http://{mesh.Host("match-path")}/exact", ("Host", mesh.Host("match-header")));
        Assert.True(toMatchPath.Service == "infra-backend-v2", toMatchPath.ToString());
        Assert.Equal(mesh.Host("match-header"), toMatchPath.EchoHost);
        var toMatchHeader = await mesh.Client.SendAsync(HttpMethod.Get, $"http://{mesh.Host("match-header")}/exact", ("Host", mesh.Host("match-path")));
        Assert.True(toMatchHeader.Service == "infra-backend-v1", toMatchHeader.ToString());
    }

    // ---- Precedence across rules ----

    [Fact]
    public async Task Precedence_ExactPathBeatsPrefix()
    {
        await AssertBackendAsync("infra-backend-v3", "precedence", "/p/longer/exact");
        await AssertBackendAsync("infra-backend-v3", "precedence", "/same");
        await AssertBackendAsync("infra-backend-v2", "precedence", "/same/x");
    }

    [Fact]
    public async Task Precedence_LongestPrefixWins()
    {
        await AssertBackendAsync("infra-backend-v2", "precedence", "/p/longer");
        await AssertBackendAsync("infra-backend-v2", "precedence", "/p/longer/other");
        await AssertBackendAsync("infra-backend-v1", "precedence", "/p/long");
    }

    [Fact]
    public async Task Precedence_MethodBreaksAPathTie_ButNotALongerPrefix()
    {
        Assert.Equal("infra-backend-v2", (await SendAsync(HttpMethod.Get, "precedence", "/m/x")).Service);
        Assert.Equal("infra-backend-v1", (await SendAsync(HttpMethod.Post, "precedence", "/m/x")).Service);
        Assert.Equal("infra-backend-v3", (await SendAsync(HttpMethod.Get, "precedence", "/m/longer/x")).Service);
    }

    [Fact]
    public async Task Precedence_MostHeadersWins_BeforeQueryParams()
    {
        await AssertBackendAsync("infra-backend-v3", "precedence", "/h?a=1&b=1&c=1", ("a", "1"), ("b", "1"));
        await AssertBackendAsync("infra-backend-v2", "precedence", "/h?a=1&b=1&c=1", ("a", "1"));
        await AssertBackendAsync("infra-backend-v1", "precedence", "/h?a=1&b=1&c=1");
    }

    [Fact]
    public async Task Precedence_MostQueryParamsWins()
    {
        await AssertBackendAsync("infra-backend-v3", "precedence", "/q?a=1&b=1");
        await AssertBackendAsync("infra-backend-v2", "precedence", "/q?a=1");
    }

    [Fact]
    public async Task Precedence_IsPerMatch_NotPerRule()
    {
        await AssertBackendAsync("infra-backend-v2", "precedence-matches", "/x/y");
        await AssertBackendAsync("infra-backend-v3", "precedence-matches", "/x/y/z");
        await AssertBackendAsync("infra-backend-v2", "precedence-matches", "/x/z");
    }

    [Fact]
    public async Task Precedence_EqualRules_FirstInListOrderWins()
    {
        await AssertBackendAsync("infra-backend-v2", "precedence", "/order");
    }

    // ---- Precedence across routes ----

    [Fact]
    public async Task PrecedenceAcrossRoutes_SpecificityBeatsAge()
    {
        // The newer route's exact /specific beats the older route's prefix /specific.
        await AssertBackendAsync("infra-backend-v3", "precedence-routes", "/specific");
        await AssertBackendAsync("infra-backend-v2", "precedence-routes", "/specific/x");
    }

    [Fact]
    public async Task PrecedenceAcrossRoutes_OldestCreationTimestampWins()
    {
        await AssertBackendAsync("infra-backend-v2", "precedence-routes", "/age");
    }

    [Fact]
    public async Task PrecedenceAcrossRoutes_SameAge_NamespaceNameOrderWins()
    {
        await AssertBackendAsync("infra-backend-v3", "precedence-routes", "/name");
    }

    // ---- Backends ----

    [Fact]
    public async Task Weights_SplitTraffic_WeightZeroGetsNone()
    {
        var counts = new Dictionary<string, int>(StringComparer.Ordinal);
        for (var i = 0; i < 200; i++)
        {
            var r = await GetAsync("weights", "/split/" + i);
            Assert.True(r.Code == 200, r.ToString());
            counts[r.Service!] = counts.GetValueOrDefault(r.Service!) + 1;
        }
        var described = string.Join(", ", counts.Select(c => c.Key + "=" + c.Value));
        Assert.False(counts.ContainsKey("infra-backend-v3"), "weight 0 got traffic: " + described);
        // 70/30 of 200: 140 expected, standard deviation ~6.5; the bounds are over 3.5 sigmas out.
        Assert.True(counts.GetValueOrDefault("infra-backend-v1") is >= 115 and <= 165, described);
        Assert.Equal(200, counts.GetValueOrDefault("infra-backend-v1") + counts.GetValueOrDefault("infra-backend-v2"));
    }

    [Fact]
    public async Task Weights_AllZero_Answers500()
    {
        for (var i = 0; i < 5; i++)
        {
            var r = await GetAsync("weights", "/all-zero/" + i);
            Assert.True(r.Code == 500 && r.Echo is null, r.ToString());
        }
    }

    // GAMMA: on a Service parent a rule without backendRefs sends to that Service (upstream mesh-frontend.yaml and
    // mesh-consumer-route.yaml expect 200 from the parent); "weights" selects infra-backend-v1.
    [Fact]
    public async Task RuleWithoutBackendRefs_OnAServiceParent_GoesToTheParentService()
    {
        var r = await GetAsync("weights", "/no-backends");
        Assert.True(r.Code == 200 && r.Service == "infra-backend-v1", r.ToString());
    }

    // Upstream conformance MeshFrontend: the route's filters apply to requests for its Service only.
    [Fact]
    public async Task MeshFrontend_RuleWithOnlyAFilter_ServesTheParentWithTheFilter()
    {
        var toFrontend = await GetAsync("frontend", "/");
        Assert.True(toFrontend.Code == 200 && toFrontend.Service == "infra-backend-v1" && toFrontend.Header("X-Header-Set") == "set",
            toFrontend.ToString());
        var samePodOtherService = await mesh.Client.SendAsync(HttpMethod.Get, $"http://{mesh.Host("infra-backend-v1")}:8080/");
        Assert.True(samePodOtherService.Code == 200 && samePodOtherService.Service == "infra-backend-v1"
            && samePodOtherService.Header("X-Header-Set") is null, samePodOtherService.ToString());
    }

    [Fact]
    public async Task Status_RuleWithoutBackendRefs_HasRefsResolved()
    {
        var conditions = await ConditionsAsync("frontend", mesh.Namespace);
        Assert.Contains("Accepted=True/Accepted", conditions);
        Assert.Contains("ResolvedRefs=True/ResolvedRefs", conditions);
    }

    [Fact]
    public async Task Weights_AnInvalidBackendOfWeightZero_TakesNoShare()
    {
        for (var i = 0; i < 20; i++)
        {
            var r = await GetAsync("weights", "/zero-invalid/" + i);
            Assert.True(r.Code == 200 && r.Service == "infra-backend-v2", r.ToString());
        }
    }

    [Fact]
    public async Task InvalidBackendRef_CrossNamespaceWithoutReferenceGrant_Answers500()
    {
        var r = await GetAsync("invalid-refs", "/cross-namespace");
        Assert.True(r.Code == 500 && r.Echo is null, r.ToString());
        var conditions = await ConditionsAsync("cross-namespace");
        Assert.Contains("Accepted=True/Accepted", conditions);
        Assert.Contains("ResolvedRefs=False/RefNotPermitted", conditions);
    }

    // ---- ReferenceGrant ----

    [Fact]
    public async Task ReferenceGrant_PermitsTheCrossNamespaceBackend()
    {
        var r = await GetAsync("grants", "/permitted");
        Assert.True(r.Code == 200 && r.Service == "web-backend", r.ToString());
        Assert.Equal(mesh.WebNamespace, r.Echo!.Value.GetProperty("namespace").GetString());
        var conditions = await ConditionsAsync("grant-permitted");
        Assert.Contains("Accepted=True/Accepted", conditions);
        Assert.Contains("ResolvedRefs=True/ResolvedRefs", conditions);
    }

    [Theory]
    [InlineData("grant-wrong-name", "/wrong-name")] // the namespace's grant names another Service
    [InlineData("grant-wrong-from", "/wrong-from")] // the grant for that Service trusts another namespace
    public async Task ReferenceGrant_NotMatching_Answers500_RefNotPermitted(string route, string path)
    {
        var r = await GetAsync("grants", path);
        Assert.True(r.Code == 500 && r.Echo is null, r.ToString());
        var conditions = await ConditionsAsync(route);
        Assert.Contains("Accepted=True/Accepted", conditions);
        Assert.Contains("ResolvedRefs=False/RefNotPermitted", conditions);
    }

    [Fact]
    public async Task ReferenceGrant_PartiallyInvalid_TheValidSiblingRuleIsServed()
    {
        await AssertBackendAsync("infra-backend-v2", "grants", "/valid-sibling");
    }

    [Fact]
    public async Task ReferenceGrant_AddedAndRemovedLive_ChangesRoutingAndStatus()
    {
        var file = Path.Combine(mesh.Run.ConfigFolder, "grant-live.yaml");
        var before = await GetAsync("grants", "/live");
        Assert.True(before.Code == 500, before.ToString());
        try
        {
            File.WriteAllText(file, GatewayConformanceMesh.Grant(mesh.WebNamespace, "allow-live", mesh.Namespace, "web-live"));
            await MeshRun.EventuallyAsync(async () => (await GetAsync("grants", "/live")).Service == "web-backend", TimeSpan.FromSeconds(30),
                async () => "the grant never permitted the route: " + await GetAsync("grants", "/live"));
            Assert.Contains("ResolvedRefs=True/ResolvedRefs", await ConditionsAsync("grant-live"));
        }
        finally
        {
            File.Delete(file);
        }
        // The spec: removing a grant revokes the access it gave.
        await MeshRun.EventuallyAsync(async () => (await GetAsync("grants", "/live")).Code == 500, TimeSpan.FromSeconds(30),
            async () => "the removed grant still permits the route: " + await GetAsync("grants", "/live"));
        Assert.Contains("ResolvedRefs=False/RefNotPermitted", await ConditionsAsync("grant-live"));
    }

    [Fact]
    public async Task InvalidBackendRef_UnknownKind_Answers500ForItsShare()
    {
        var only = await GetAsync("invalid-refs", "/kind-only");
        Assert.True(only.Code == 500 && only.Echo is null, only.ToString());
        await AssertHalfFailAsync("/kind-half");
    }

    [Fact]
    public async Task InvalidBackendRef_MissingService_Answers500ForItsShare()
    {
        var only = await GetAsync("invalid-refs", "/missing-only");
        Assert.True(only.Code == 500 && only.Echo is null, only.ToString());
        await AssertHalfFailAsync("/missing-half");
    }

    /// <summary>Two backendRefs of equal weight, one invalid: about half the requests get 500, the rest the valid backend.</summary>
    private async Task AssertHalfFailAsync(string path)
    {
        int ok = 0, failed = 0;
        for (var i = 0; i < 60; i++)
        {
            var r = await GetAsync("invalid-refs", $"{path}/{i}");
            if (r.Code == 500 && r.Echo is null) failed++;
            else if (r.Code == 200 && r.Service == "infra-backend-v2") ok++;
            else Assert.Fail(r.ToString());
        }
        // 30 expected of 60, standard deviation ~3.9.
        Assert.True(failed is >= 14 and <= 46, $"{path}: {failed} of 60 failed, {ok} reached infra-backend-v2");
    }

    [Theory]
    [InlineData("/enrolled")]
    [InlineData("/opted-out")]
    public async Task BackendProtocolH2c_IsSpokenInHttp2(string path)
    {
        // HTTPRouteBackendProtocolH2C: the client speaks HTTP/1.1, the backend port declares kubernetes.io/h2c.
        var r = await GetAsync("backend-protocol", path);
        Assert.True(r.Code == 200 && r.Service == "infra-backend-v2", r.ToString());
        Assert.StartsWith("HTTP/2", r.Echo!.Value.GetProperty("proto").GetString(), StringComparison.Ordinal);
    }

    // ---- Filters ----

    [Fact]
    public async Task RequestHeaderModifier_SetsAddsAndRemoves()
    {
        var r = await GetAsync("request-headers", "/route",
            ("x-header-set", "set-val"), ("X-Header-Add-Append", "append-val-1"), ("x-header-REMOVE", "remove-val"), ("X-Keep", "kept"));
        Assert.True(r.Code == 200, r.ToString());
        Assert.Equal("set-overwrites-values", r.RequestHeader("X-Header-Set"));
        Assert.Equal("header-val-1", r.RequestHeader("X-Header-Add"));
        Assert.Equal("append-val-1,header-val-2", r.RequestHeader("X-Header-Add-Append"));
        Assert.Null(r.RequestHeader("X-Header-Remove"));
        Assert.Equal("kept", r.RequestHeader("X-Keep"));
    }

    [Fact]
    public async Task RequestHeaderModifier_OnABackendRef_AppliesToThatBackend()
    {
        var r = await GetAsync("request-headers", "/backend");
        Assert.True(r.Code == 200 && r.Service == "infra-backend-v2", r.ToString());
        Assert.Equal("v2", r.RequestHeader("X-Backend"));
    }

    [Fact]
    public async Task ResponseHeaderModifier_SetsAddsAndRemoves()
    {
        var r = await GetAsync("response-headers", "/route",
            ("X-Echo-Set-Header", "X-Header-Set:set-val,X-Header-Add-Append:append-val-1,X-Header-Remove:remove-val,X-Keep:kept"));
        Assert.True(r.Code == 200, r.ToString());
        Assert.Equal("set-overwrites-values", r.Header("X-Header-Set"));
        Assert.Equal("header-val-1", r.Header("X-Header-Add"));
        Assert.Equal("append-val-1,header-val-2", r.Header("X-Header-Add-Append"));
        Assert.Null(r.Header("X-Header-Remove"));
        Assert.Equal("kept", r.Header("X-Keep"));
    }

    [Fact]
    public async Task ResponseHeaderModifier_OnABackendRef_AppliesToThatBackend()
    {
        var r = await GetAsync("response-headers", "/backend", ("X-Echo-Set-Header", "X-Backend:from-echo"));
        Assert.True(r.Code == 200 && r.Service == "infra-backend-v2", r.ToString());
        Assert.Equal("v2", r.Header("X-Backend"));
    }

    [Theory]
    [InlineData("/scheme/a", 302, "https://{host}/scheme/a")]
    [InlineData("/hostname/a", 302, "http://example.org/hostname/a")]
    [InlineData("/port/a", 302, "http://{host}:8083/port/a")]
    [InlineData("/https-port", 302, "https://{host}:8443/https-port")]
    [InlineData("/https-443", 302, "https://{host}/https-443")]
    [InlineData("/full/a/b", 302, "http://{host}/replacement")]
    [InlineData("/prefix/a/b", 302, "http://{host}/replacement/a/b")]
    [InlineData("/prefix", 302, "http://{host}/replacement")]
    [InlineData("/status-301", 301, "http://example.org/status-301")]
    [InlineData("/status-302", 302, "http://example.org/status-302")]
    [InlineData("/status-303", 303, "http://example.org/status-303")]
    [InlineData("/status-307", 307, "http://example.org/status-307")]
    [InlineData("/status-308", 308, "http://example.org/status-308")]
    public async Task RequestRedirect_BuildsTheLocation(string path, int status, string location)
    {
        var r = await GetAsync("redirect", path);
        Assert.True(r.Code == status && r.Echo is null, r.ToString());
        Assert.Equal(location.Replace("{host}", mesh.Host("redirect"), StringComparison.Ordinal), r.Header("Location"));
    }

    [Theory]
    [InlineData("/hostname", "http://example.org:8080/hostname")]
    [InlineData("/to-https", "https://{host}/to-https")]
    [InlineData("/to-http", "http://{host}/to-http")]
    public async Task RequestRedirect_DerivesThePort(string path, string location)
    {
        // On Service port 8080: no scheme keeps the request's port; a scheme brings its well-known port, left out.
        var r = await mesh.Client.SendAsync(HttpMethod.Get, $"http://{mesh.Host("redirect-8080")}:8080{path}");
        Assert.True(r.Code == 302 && r.Echo is null, r.ToString());
        Assert.Equal(location.Replace("{host}", mesh.Host("redirect-8080"), StringComparison.Ordinal), r.Header("Location"));
    }

    [Theory]
    [InlineData("/prefix/one/two", "/one/two")]
    [InlineData("/prefix/one", "/one")]
    [InlineData("/strip-prefix/three", "/three")]
    [InlineData("/strip-prefix", "/")]
    [InlineData("/full/one/two", "/one")]
    public async Task UrlRewrite_RewritesThePath(string path, string seen)
    {
        var r = await GetAsync("rewrite", path);
        Assert.True(r.Code == 200 && r.Service == "infra-backend-v1", r.ToString());
        Assert.Equal(seen, r.Path);
    }

    [Theory]
    [InlineData("/prefix/one/two?q=1&r=2", "/one/two?q=1&r=2")]
    [InlineData("/full/one/two?q=1", "/one?q=1")]
    public async Task UrlRewrite_KeepsTheQuery(string path, string seen)
    {
        var r = await GetAsync("rewrite", path);
        Assert.True(r.Code == 200 && r.Service == "infra-backend-v1", r.ToString());
        Assert.Equal(seen, r.Path);
    }

    [Theory]
    [InlineData("/a/bar", "/xyz/bar")] // prefix /a, replacement /xyz
    [InlineData("/b/bar", "/xyz/bar")] // prefix /b, replacement /xyz/
    [InlineData("/c/bar", "/xyz/bar")] // prefix /c/, replacement /xyz
    [InlineData("/d/bar", "/xyz/bar")] // prefix /d/, replacement /xyz/
    [InlineData("/a", "/xyz")]
    [InlineData("/a/", "/xyz/")]
    [InlineData("/c", "/xyz")]
    [InlineData("/b/", "/xyz/")]
    public async Task UrlRewrite_ReplacePrefixMatch_FollowsTheSpecTable(string path, string seen)
    {
        var r = await GetAsync("rewrite-prefix", path);
        Assert.True(r.Code == 200 && r.Service == "infra-backend-v1", r.ToString());
        Assert.Equal(seen, r.Path);
    }

    [Fact]
    public async Task UrlRewrite_RewritesTheHostname()
    {
        var r = await GetAsync("rewrite", "/hostname/x");
        Assert.True(r.Code == 200 && r.Service == "infra-backend-v2", r.ToString());
        Assert.Equal("rewritten.example.org", r.EchoHost);
        Assert.Equal("/hostname/x", r.Path);
    }

    [Fact]
    public async Task RequestMirror_CopiesToEveryMirror_PercentZeroToNone()
    {
        var path = "/mirror-all/" + Guid.NewGuid().ToString("N")[..8];
        var r = await GetAsync("mirror", path, ("X-Mirror-Test", "1"));
        Assert.True(r.Code == 200 && r.Service == "infra-backend-v1", r.ToString());
        await MeshRun.EventuallyAsync(() => Task.FromResult(BackendLog("infra-backend-v2").Contains(path, StringComparison.Ordinal)),
            TimeSpan.FromSeconds(10), () => Task.FromResult("the mirror never saw " + path + ":\n" + BackendLog("infra-backend-v2")));
        // `ambientctl logs deploy/NAME` shows the same: the echo logs every request it receives.
        var logs = await mesh.Run.CtlAsync(TimeSpan.FromSeconds(30), "logs", "deploy/infra-backend-v2", "-n", mesh.Namespace);
        Assert.True(logs.Code == 0, logs.Output);
        Assert.Contains(path, logs.Output, StringComparison.Ordinal);
        Assert.Equal(1, Occurrences(BackendLog("infra-backend-v1"), path));
        Assert.Equal(0, Occurrences(BackendLog("infra-backend-v3"), path));
    }

    [Fact]
    public async Task RequestMirror_CopiesTheRequestBody()
    {
        var path = "/mirror-all/body-" + Guid.NewGuid().ToString("N")[..8];
        var body = RandomBody(100_000);
        var r = await mesh.Client.SendAsync(HttpMethod.Post, $"http://{mesh.Host("mirror")}{path}", body);
        Assert.True(r.Code == 200 && r.Service == "infra-backend-v1", r.ToString());
        Assert.Equal(body.Length, r.Echo!.Value.GetProperty("bodyLength").GetInt64());
        // The echo logs a body it received whole by length and SHA-256 after the request line.
        await MeshRun.EventuallyAsync(() => Task.FromResult(LogLine("infra-backend-v2", path)?.EndsWith(BodyMark(body), StringComparison.Ordinal) == true),
            TimeSpan.FromSeconds(10), () => Task.FromResult($"the mirror never got the body of {path}: {LogLine("infra-backend-v2", path)}"));
    }

    [Fact]
    public async Task RequestMirror_Fraction_MirrorsItsShare()
    {
        var prefix = "/mirror-half/" + Guid.NewGuid().ToString("N")[..8] + "/";
        for (var i = 0; i < 60; i++)
        {
            var r = await GetAsync("mirror", prefix + i);
            Assert.True(r.Code == 200 && r.Service == "infra-backend-v1", r.ToString());
        }
        // The 100% mirror has seen all 60 once the mirrors are done; the 1/2 mirror about 30 (deviation ~3.9).
        await MeshRun.EventuallyAsync(() => Task.FromResult(Occurrences(BackendLog("infra-backend-v2"), prefix) == 60),
            TimeSpan.FromSeconds(10), () => Task.FromResult($"the 100% mirror saw {Occurrences(BackendLog("infra-backend-v2"), prefix)} of 60"));
        await Task.Delay(300, Ct);
        var half = Occurrences(BackendLog("infra-backend-v3"), prefix);
        Assert.True(half is >= 14 and <= 46, $"the 1/2 mirror saw {half} of 60");
    }

    [Fact]
    public async Task RequestMirror_ToAMissingService_IsDropped_RequestServed()
    {
        var r = await GetAsync("mirror", "/mirror-missing");
        Assert.True(r.Code == 200 && r.Service == "infra-backend-v1", r.ToString());
        Assert.Contains("ResolvedRefs=False/BackendNotFound", await ConditionsAsync("mirror-missing"));
    }

    // ---- Timeouts and retries ----

    [Fact]
    public async Task TimeoutRequest_Answers504()
    {
        var r = await GetAsync("timeouts", "/request?delay=3s");
        Assert.True(r.Code == 504, r.ToString());
        Assert.True(r.Elapsed < TimeSpan.FromSeconds(2.5), $"the 500ms timeout answered after {r.Elapsed.TotalMilliseconds:0}ms");
        var fast = await GetAsync("timeouts", "/request?delay=10ms");
        Assert.True(fast.Code == 200, fast.ToString());
    }

    [Fact]
    public async Task TimeoutBackendRequest_Answers504()
    {
        var r = await GetAsync("timeouts", "/backend?delay=3s");
        Assert.True(r.Code == 504, r.ToString());
        Assert.True(r.Elapsed < TimeSpan.FromSeconds(2.5), $"the 500ms backend timeout answered after {r.Elapsed.TotalMilliseconds:0}ms");
    }

    [Fact]
    public async Task TimeoutZero_DisablesTheTimeout()
    {
        var r = await GetAsync("timeouts", "/disabled?delay=1500ms");
        Assert.True(r.Code == 200 && r.Service == "infra-backend-v1", r.ToString());
    }

    [Fact]
    public async Task TimeoutBackendRequestZero_DisablesTheTimeout()
    {
        var r = await GetAsync("timeouts", "/backend-disabled?delay=1500ms");
        Assert.True(r.Code == 200 && r.Service == "infra-backend-v1", r.ToString());
    }

    [Fact]
    public async Task Retry_RetriesTheListedCodes_UpToAttempts()
    {
        var ok = await GetAsync("retry", $"/retry?responseCode=500&succeedAfter=2&uuid={Guid.NewGuid():N}");
        Assert.True(ok.Code == 200, "two retries should reach the third answer: " + ok);
        var exhausted = await GetAsync("retry", $"/retry?responseCode=500&succeedAfter=3&uuid={Guid.NewGuid():N}");
        Assert.True(exhausted.Code == 500, "three failures exhaust two retries: " + exhausted);
    }

    [Fact]
    public async Task Retry_SendsTheRequestBodyAgain()
    {
        var uuid = Guid.NewGuid().ToString("N");
        var body = RandomBody(100_000);
        var r = await mesh.Client.SendAsync(HttpMethod.Post, $"http://{mesh.Host("retry")}/retry?responseCode=500&succeedAfter=1&uuid={uuid}", body);
        Assert.True(r.Code == 200, "the retry should answer: " + r);
        Assert.Equal(Convert.ToHexStringLower(System.Security.Cryptography.SHA256.HashData(body)), r.Echo!.Value.GetProperty("bodySha256").GetString());
        var tries = BackendLog("infra-backend-v1").Split('\n').Where(l => l.Contains(uuid, StringComparison.Ordinal)).ToList();
        Assert.Equal(2, tries.Count);
        Assert.All(tries, l => Assert.EndsWith(BodyMark(body), l.TrimEnd('\r'), StringComparison.Ordinal));
    }

    [Fact]
    public async Task Retry_OtherCodes_AreNotRetried()
    {
        var r = await GetAsync("retry", $"/retry?responseCode=502&succeedAfter=1&uuid={Guid.NewGuid():N}");
        Assert.True(r.Code == 502, r.ToString());
        var none = await GetAsync("retry", $"/no-retry?responseCode=500&succeedAfter=1&uuid={Guid.NewGuid():N}");
        Assert.True(none.Code == 500, "a rule without retry retried a 500: " + none);
    }

    [Theory]
    [InlineData(500)]
    [InlineData(502)]
    [InlineData(503)]
    [InlineData(504)]
    public async Task Retry_EveryListedCode_IsRetried(int code)
    {
        var ok = await GetAsync("retry", $"/code-all-attempts-2?responseCode={code}&succeedAfter=1&uuid={Guid.NewGuid():N}");
        Assert.True(ok.Code == 200, ok.ToString());
        var exhausted = await GetAsync("retry", $"/code-all-attempts-2?responseCode={code}&succeedAfter=3&uuid={Guid.NewGuid():N}");
        Assert.True(exhausted.Code == code, exhausted.ToString());
    }

    [Fact]
    public async Task Retry_ZeroAttempts_DoesNotRetry()
    {
        var r = await GetAsync("retry", $"/code-all-attempts-0?responseCode=500&succeedAfter=1&uuid={Guid.NewGuid():N}");
        Assert.True(r.Code == 500, r.ToString());
    }

    [Fact]
    public async Task Retry_ABackendRequestTimeout_IsRetried()
    {
        // HTTPRouteRetryWithTimeouts: a try cut by timeouts.backendRequest is retried; all three time out here: 504.
        var uuid = Guid.NewGuid().ToString("N");
        var r = await GetAsync("retry", $"/backend-timeout?delay=400ms&uuid={uuid}");
        Assert.True(r.Code == 504, r.ToString());
        await MeshRun.EventuallyAsync(() => Task.FromResult(Occurrences(BackendLog("infra-backend-v1"), uuid) == 3), TimeSpan.FromSeconds(5),
            () => Task.FromResult($"the backend saw {Occurrences(BackendLog("infra-backend-v1"), uuid)} tries, not 1 + 2 retries"));
    }

    [Fact]
    public async Task Retry_StopsAtTheRequestTimeout()
    {
        // Tries of 300 ms each under a 1 s request timeout: the second succeeding fits, a fifth never comes.
        var ok = await GetAsync("retry", $"/request-timeout?delay=300ms&responseCode=500&succeedAfter=1&uuid={Guid.NewGuid():N}");
        Assert.True(ok.Code == 200, ok.ToString());
        var late = await GetAsync("retry", $"/request-timeout?delay=300ms&responseCode=500&succeedAfter=4&uuid={Guid.NewGuid():N}");
        Assert.True(late.Code == 504, late.ToString());
        Assert.True(late.Elapsed < TimeSpan.FromSeconds(2), $"the 1s request timeout answered after {late.Elapsed.TotalMilliseconds:0}ms");
    }

    [Fact]
    public async Task Retry_WaitsAtLeastTheBackoff()
    {
        var r = await GetAsync("retry", $"/backoff?responseCode=500&succeedAfter=1&uuid={Guid.NewGuid():N}");
        Assert.True(r.Code == 200, r.ToString());
        Assert.True(r.Elapsed >= TimeSpan.FromMilliseconds(950), $"retried after {r.Elapsed.TotalMilliseconds:0}ms, the backoff is 1s");
    }

    // ---- Consumer routes (GEP-1294 "Namespace boundaries"; upstream conformance MeshConsumerRoute) ----

    [Fact]
    public async Task ConsumerRoute_AffectsRequestsFromItsNamespaceOnly()
    {
        var url = $"http://{mesh.Host(GatewayConformanceMesh.ConsumedService)}/";
        var fromConsumer = await mesh.ConsumerClient.SendAsync(HttpMethod.Get, url);
        Assert.True(fromConsumer.Code == 200 && fromConsumer.Service == "infra-backend-v1" && fromConsumer.Header("X-Header-Set") == "set",
            fromConsumer.ToString());
        var fromProducer = await mesh.Client.SendAsync(HttpMethod.Get, url);
        Assert.True(fromProducer.Code == 200 && fromProducer.Service == "infra-backend-v1" && fromProducer.Header("X-Header-Set") is null,
            fromProducer.ToString());
    }

    [Fact]
    public async Task ConsumerRoute_ReplacesTheProducerRoutesForItsNamespace()
    {
        var url = $"http://{mesh.Host(GatewayConformanceMesh.ConsumedService)}/producer-only";
        var fromProducer = await mesh.Client.SendAsync(HttpMethod.Get, url);
        Assert.True(fromProducer.Code == 200 && fromProducer.Service == "infra-backend-v2" && fromProducer.Header("X-Header-Set") is null,
            fromProducer.ToString());
        var fromConsumer = await mesh.ConsumerClient.SendAsync(HttpMethod.Get, url);
        Assert.True(fromConsumer.Code == 200 && fromConsumer.Service == "infra-backend-v1" && fromConsumer.Header("X-Header-Set") == "set",
            fromConsumer.ToString());
    }

    [Fact]
    public async Task ConsumerRoute_ExplicitParentBackendRef_NeedsNoGrant()
    {
        var r = await mesh.ConsumerClient.SendAsync(HttpMethod.Get, $"http://{mesh.Host(GatewayConformanceMesh.ConsumedService)}/explicit-parent");
        Assert.True(r.Code == 200 && r.Service == "infra-backend-v1" && r.Header("X-Header-Set") == "explicit", r.ToString());
    }

    [Fact]
    public async Task Status_ConsumerRoute_IsAcceptedOnItsServiceParent()
    {
        var conditions = await ConditionsAsync("consumer-add-header", mesh.ConsumerNamespace);
        Assert.Contains("Accepted=True/Accepted", conditions);
        Assert.Contains("ResolvedRefs=True/ResolvedRefs", conditions);
    }

    // ---- Status ----

    [Fact]
    public async Task Status_ValidRoute_IsAcceptedWithRefsResolved()
    {
        var conditions = await ConditionsAsync("match-path");
        Assert.Contains("Accepted=True/Accepted", conditions);
        Assert.Contains("ResolvedRefs=True/ResolvedRefs", conditions);
    }

    [Fact]
    public async Task Status_UnknownBackendKind_IsInvalidKind()
    {
        var conditions = await ConditionsAsync("invalid-kind");
        Assert.Contains("Accepted=True/Accepted", conditions);
        Assert.Contains("ResolvedRefs=False/InvalidKind", conditions);
    }

    [Fact]
    public async Task Status_MissingBackendService_IsBackendNotFound()
    {
        var conditions = await ConditionsAsync("missing-backend");
        Assert.Contains("Accepted=True/Accepted", conditions);
        Assert.Contains("ResolvedRefs=False/BackendNotFound", conditions);
    }

    [Fact]
    public async Task Status_ParentPortTheServiceLacks_IsNotAccepted_AndRoutesNothing()
    {
        var conditions = await ConditionsAsync("wrong-port");
        Assert.Contains("Accepted=False/NoMatchingParent", conditions);
        await AssertBackendAsync("infra-backend-v1", "invalid-refs", "/wrong-port");
    }

    /// <summary>The route's conditions for its (one) parentRef as `Type=Status/Reason`, from `ambientctl get httproute -o json`.</summary>
    private async Task<List<string>> ConditionsAsync(string route, string? ns = null)
    {
        var get = await mesh.Run.CtlAsync(TimeSpan.FromSeconds(30), "get", "httproute", route, "-n", ns ?? mesh.Namespace, "-o", "json");
        Assert.True(get.Code == 0, get.Output);
        using var doc = JsonDocument.Parse(get.Output[get.Output.IndexOf('{', StringComparison.Ordinal)..]);
        var parent = Assert.Single(doc.RootElement.GetProperty("status").GetProperty("parents").EnumerateArray());
        return [.. parent.GetProperty("conditions").EnumerateArray()
            .Select(c => $"{c.GetProperty("type").GetString()}={c.GetProperty("status").GetString()}/{c.GetProperty("reason").GetString()}")];
    }

    /// <summary>The stdout of a backend Deployment's one pod so far.</summary>
    private string BackendLog(string deployment)
    {
        var prefix = $"pod-{mesh.Namespace}-{deployment}-";
        var pod = mesh.Run.ReadState().Components.Single(c => c.Name.StartsWith(prefix, StringComparison.Ordinal));
        return MeshRun.ReadLog(pod);
    }

    private static byte[] RandomBody(int length)
    {
        var body = new byte[length];
        Random.Shared.NextBytes(body);
        return body;
    }

    private static string BodyMark(byte[] body) => $" body={body.Length} sha256={Convert.ToHexStringLower(System.Security.Cryptography.SHA256.HashData(body))}";

    /// <summary>The backend's log line for the request to <paramref name="path"/>, without its line end; null until there is one.</summary>
    private string? LogLine(string deployment, string path) =>
        BackendLog(deployment).Split('\n').FirstOrDefault(l => l.Contains(path, StringComparison.Ordinal))?.TrimEnd('\r');

    private static int Occurrences(string text, string what)
    {
        var n = 0;
        for (var i = text.IndexOf(what, StringComparison.Ordinal); i >= 0; i = text.IndexOf(what, i + what.Length, StringComparison.Ordinal)) n++;
        return n;
    }
}

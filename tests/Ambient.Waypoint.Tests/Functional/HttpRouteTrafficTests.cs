using System.Net;
using System.Text.Json;
using Ambient.Core.Protos.Waypoint;
using static Ambient.Waypoint.Tests.Routing.RouteBuilders;

namespace Ambient.Waypoint.Tests.Functional;

/// <summary>One environment for the HTTPRoute traffic tests (they run one after another and replace the routes).</summary>
public sealed class HttpRouteEnvironment : IAsyncLifetime
{
    internal WaypointEnvironment Env { get; private set; } = null!;

    public async ValueTask InitializeAsync()
    {
        // The conformance namespace, so the routing tests' route builders apply as they are.
        Env = await WaypointEnvironment.StartAsync(Ns);
        Env.ServeServices("echo");
        Http = Env.HttpThroughWaypoint(new IPEndPoint(Env.Service("echo").Vips[0], WaypointEnvironment.HttpPort));
    }

    /// <summary>One client for all the tests: its tunnel to the waypoint stays open between them. (A tunnel reset
    /// when a test disposes its client has been seen to race with the next test's new tunnel on the same pooled HBONE
    /// connection, whose peer had closed it.)</summary>
    internal HttpClient Http { get; private set; } = null!;

    public async ValueTask DisposeAsync()
    {
        Http.Dispose();
        await Env.DisposeAsync();
    }
}

/// <summary>
/// HTTPRoutes applied end to end: client pod -> HBONE -> waypoint (routes, filters, timeouts, retries) -> HBONE ->
/// the echo sample in the backend pods, which answers with its pod name and what it received (the Gateway API
/// conformance echo contract). Routes are pushed through the waypoint's xDS handler, as istiod-lite sends them.
/// </summary>
[Collection(WaypointEnvironment.Collection)]
public sealed class HttpRouteTrafficTests(HttpRouteEnvironment fixture) : IClassFixture<HttpRouteEnvironment>
{
    private readonly WaypointEnvironment _env = fixture.Env;

    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    private string EchoHost => $"echo.{Ns}.svc.cluster.local";

    private async Task<(HttpResponseMessage Response, JsonElement Echo)> GetAsync(HttpClient http, string pathAndQuery,
        params (string Name, string Value)[] headers)
    {
        using var request = new HttpRequestMessage(HttpMethod.Get, $"http://{EchoHost}{pathAndQuery}");
        foreach (var (name, value) in headers)
        {
            request.Headers.TryAddWithoutValidation(name, value);
        }
        HttpResponseMessage response;
        try
        {
            response = await http.SendAsync(request, Ct);
        }
        catch (HttpRequestException ex)
        {
            throw new InvalidOperationException($"{ex.Message}\n{_env.Warnings()}\n{string.Join("\n", _env.Logs.Matching("").TakeLast(15))}", ex);
        }
        var body = await response.Content.ReadAsStringAsync(Ct);
        var echo = body.StartsWith('{') ? JsonDocument.Parse(body).RootElement.Clone() : default;
        return (response, echo);
    }

    /// <summary>A POST of <paramref name="body"/>, with a Content-Length or (<paramref name="chunked"/>) without one.</summary>
    private async Task<(HttpResponseMessage Response, JsonElement Echo)> PostAsync(string pathAndQuery, byte[] body, bool chunked)
    {
        using var request = new HttpRequestMessage(HttpMethod.Post, $"http://{EchoHost}{pathAndQuery}")
        {
            Content = chunked ? new StreamContent(new UnknownLengthStream(body)) : new ByteArrayContent(body),
        };
        var response = await fixture.Http.SendAsync(request, Ct);
        var text = await response.Content.ReadAsStringAsync(Ct);
        return (response, text.StartsWith('{') ? JsonDocument.Parse(text).RootElement.Clone() : default);
    }

    private static byte[] RandomBody(int length)
    {
        var body = new byte[length];
        Random.Shared.NextBytes(body);
        return body;
    }

    /// <summary>What the echo logs after a request line for a body it received whole.</summary>
    private static string BodyMark(byte[] body) => $" body={body.Length} sha256={Convert.ToHexStringLower(System.Security.Cryptography.SHA256.HashData(body))}";

    private static HTTPRouteFilter MirrorTo(string service) => new()
    {
        Type = HTTPRouteFilterType.RequestMirror,
        RequestMirror = new HTTPRequestMirrorFilter { BackendRef = new BackendRef { Kind = "Service", Namespace = Ns, Name = service, Port = 8080 } },
    };

    private static string Pod(JsonElement echo) => echo.GetProperty("pod").GetString()!;

    private static string? Header(JsonElement echo, string name) =>
        echo.GetProperty("headers").TryGetProperty(name, out var values) ? string.Join(",", values.EnumerateArray().Select(v => v.GetString())) : null;

    private static HTTPRouteRule Rule(HTTPRouteMatch match, params HTTPBackendRef[] backends)
    {
        var rule = new HTTPRouteRule();
        rule.Matches.Add(match);
        rule.BackendRefs.Add(backends);
        return rule;
    }

    [Fact(Timeout = WaypointEnvironment.TestTimeoutMs)]
    public async Task PathMatchesSplitTrafficBetweenTwoBackends()
    {
        _env.UseRoutes(MeshRoute("path-split", "echo",
            Routing.RouteBuilders.Rule(Prefix("/v2"), "infra-backend-v2"),
            Routing.RouteBuilders.Rule(Prefix("/"), "infra-backend-v1")));
        var http = fixture.Http;
        var (v2, echo2) = await GetAsync(http, "/v2/page");
        Assert.True(v2.StatusCode == HttpStatusCode.OK, $"{v2.StatusCode}\n{_env.Warnings()}");
        Assert.Equal("infra-backend-v2", Pod(echo2));
        Assert.Equal("/v2/page", echo2.GetProperty("path").GetString());
        var (_, echo1) = await GetAsync(http, "/v2x");
        Assert.Equal("infra-backend-v1", Pod(echo1));

        // The access log names the route, its rule and the backend chosen.
        var line = Assert.Single(_env.Logs.Matching("path=/v2/page"));
        Assert.Contains($"route={Ns}/path-split rule=0 backend={Ns}/infra-backend-v2:8080", line);
        Assert.Contains("dst.workload=infra-backend-v2", line);
    }

    [Fact(Timeout = WaypointEnvironment.TestTimeoutMs)]
    public async Task AHeaderMatchPicksItsBackend()
    {
        _env.UseRoutes(MeshRoute("header-match", "echo",
            Routing.RouteBuilders.Rule(Prefix("/").WithHeader("version", "two"), "infra-backend-v2"),
            Routing.RouteBuilders.Rule(Prefix("/"), "infra-backend-v1")));
        var http = fixture.Http;
        Assert.Equal("infra-backend-v2", Pod((await GetAsync(http, "/", ("Version", "two"))).Echo));
        Assert.Equal("infra-backend-v1", Pod((await GetAsync(http, "/", ("Version", "one"))).Echo));
        Assert.Equal("infra-backend-v1", Pod((await GetAsync(http, "/")).Echo));
    }

    [Fact(Timeout = WaypointEnvironment.TestTimeoutMs)]
    public async Task WeightsSplitTrafficNinetyTen()
    {
        _env.UseRoutes(MeshRoute("weighted", "echo",
            Rule(Prefix("/"), Backend("infra-backend-v1", weight: 90), Backend("infra-backend-v2", weight: 10))));
        var http = fixture.Http;
        var v1 = 0;
        var v2 = 0;
        for (var i = 0; i < 200; i++)
        {
            var pod = Pod((await GetAsync(http, "/weighted")).Echo);
            if (pod == "infra-backend-v1")
            {
                v1++;
            }
            else if (pod == "infra-backend-v2")
            {
                v2++;
            }
        }
        Assert.Equal(200, v1 + v2);
        // 180 expected, standard deviation ~4.2: [160, 196] is more than four deviations wide on each side.
        Assert.InRange(v1, 160, 196);
    }

    [Fact(Timeout = WaypointEnvironment.TestTimeoutMs)]
    public async Task RequestAndResponseHeaderModifiersAreApplied()
    {
        var rule = Routing.RouteBuilders.Rule(Prefix("/"), "infra-backend-v1")
            .WithFilter(new HTTPRouteFilter
            {
                Type = HTTPRouteFilterType.RequestHeaderModifier,
                RequestHeaderModifier = new HTTPHeaderFilter
                {
                    Set = { new HTTPHeader { Name = "X-Header-Set", Value = "set-overwrites-values" } },
                    Add = { new HTTPHeader { Name = "X-Header-Add", Value = "add-appends-values" } },
                    Remove = { "X-Header-Remove" },
                },
            })
            .WithFilter(new HTTPRouteFilter
            {
                Type = HTTPRouteFilterType.ResponseHeaderModifier,
                ResponseHeaderModifier = new HTTPHeaderFilter
                {
                    Set = { new HTTPHeader { Name = "X-Response-Set", Value = "from-route" } },
                    Remove = { "X-Echo-Removed" },
                },
            });
        _env.UseRoutes(MeshRoute("headers", "echo", rule));
        var http = fixture.Http;
        var (response, echo) = await GetAsync(http, "/headers",
            ("X-Header-Set", "original"), ("X-Header-Add", "original"), ("X-Header-Remove", "gone"),
            ("X-Echo-Set-Header", "X-Echo-Removed:yes,X-Echo-Kept:yes"));
        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        Assert.Equal("set-overwrites-values", Header(echo, "X-Header-Set"));
        Assert.Equal("original,add-appends-values", Header(echo, "X-Header-Add"));
        Assert.Null(Header(echo, "X-Header-Remove"));
        Assert.Equal("from-route", Assert.Single(response.Headers.GetValues("X-Response-Set")));
        Assert.False(response.Headers.Contains("X-Echo-Removed"));
        Assert.True(response.Headers.Contains("X-Echo-Kept"));
    }

    [Fact(Timeout = WaypointEnvironment.TestTimeoutMs)]
    public async Task ARedirectAnswersWithItsStatusAndLocation()
    {
        _env.UseRoutes(MeshRoute("redirect", "echo",
            Routing.RouteBuilders.Rule(Prefix("/old"), "infra-backend-v1").WithFilter(new HTTPRouteFilter
            {
                Type = HTTPRouteFilterType.RequestRedirect,
                RequestRedirect = new HTTPRequestRedirectFilter
                {
                    Hostname = "example.org",
                    StatusCode = 301,
                    Path = new HTTPPathModifier { Type = PathModifierType.ReplacePrefixMatch, ReplacePrefixMatch = "/new" },
                },
            })));
        var http = fixture.Http;
        var (response, _) = await GetAsync(http, "/old/page?q=1");
        Assert.Equal(HttpStatusCode.MovedPermanently, response.StatusCode);
        Assert.Equal("http://example.org/new/page?q=1", response.Headers.Location?.ToString());
        Assert.DoesNotContain("/old/page", _env.EchoLog("infra-backend-v1"));
    }

    [Fact(Timeout = WaypointEnvironment.TestTimeoutMs)]
    public async Task AUrlRewriteReplacesThePrefixAndTheHost()
    {
        _env.UseRoutes(MeshRoute("rewrite", "echo",
            Routing.RouteBuilders.Rule(Prefix("/prefix/one"), "infra-backend-v1").WithFilter(new HTTPRouteFilter
            {
                Type = HTTPRouteFilterType.UrlRewrite,
                UrlRewrite = new HTTPURLRewriteFilter
                {
                    Hostname = "rewritten.example",
                    Path = new HTTPPathModifier { Type = PathModifierType.ReplacePrefixMatch, ReplacePrefixMatch = "/one" },
                },
            })));
        var http = fixture.Http;
        var (response, echo) = await GetAsync(http, "/prefix/one/two?x=y");
        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        Assert.Equal("/one/two?x=y", echo.GetProperty("path").GetString());
        Assert.Equal("rewritten.example", echo.GetProperty("host").GetString());
    }

    [Fact(Timeout = WaypointEnvironment.TestTimeoutMs)]
    public async Task AMirrorReceivesACopyAndTheClientGetsTheMainBackend()
    {
        _env.UseRoutes(MeshRoute("mirror", "echo",
            Routing.RouteBuilders.Rule(Prefix("/mirror"), "infra-backend-v1").WithFilter(MirrorTo("infra-backend-v3"))));
        var http = fixture.Http;
        var (response, echo) = await GetAsync(http, "/mirror/copy-me");
        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        Assert.Equal("infra-backend-v1", Pod(echo));
        using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(10));
        while (!_env.EchoLog("infra-backend-v3").Contains("/mirror/copy-me"))
        {
            await Task.Delay(20, timeout.Token);
        }
    }

    [Theory(Timeout = WaypointEnvironment.TestTimeoutMs)]
    [InlineData(false)]
    [InlineData(true)]
    public async Task ATimedOutBackendRequestGets504(bool wholeRequest)
    {
        var rule = Routing.RouteBuilders.Rule(Prefix("/slow"), "infra-backend-v1");
        rule.Timeouts = wholeRequest ? new HTTPRouteTimeouts { RequestMs = 500 } : new HTTPRouteTimeouts { BackendRequestMs = 500 };
        _env.UseRoutes(MeshRoute("timeouts", "echo", rule));
        var http = fixture.Http;
        var (slow, _) = await GetAsync(http, $"/slow/{wholeRequest}?delay=2s");
        Assert.Equal(HttpStatusCode.GatewayTimeout, slow.StatusCode);
        var (fast, _) = await GetAsync(http, $"/slow/{wholeRequest}?delay=10ms");
        Assert.Equal(HttpStatusCode.OK, fast.StatusCode);
        Assert.Contains("flags=UT", Assert.Single(_env.Logs.Matching($"path=/slow/{wholeRequest}?delay=2s")));
    }

    [Fact(Timeout = WaypointEnvironment.TestTimeoutMs)]
    public async Task ARetriedCodeIsSentAgainUntilItSucceeds()
    {
        var rule = Routing.RouteBuilders.Rule(Prefix("/retry"), "infra-backend-v1");
        rule.Retry = new HTTPRouteRetry { Codes = { 503 }, Attempts = 2, BackoffMs = 10 };
        _env.UseRoutes(MeshRoute("retry", "echo", rule, Routing.RouteBuilders.Rule(Prefix("/"), "infra-backend-v1")));
        var http = fixture.Http;
        var uuid = Guid.NewGuid().ToString("N");
        var (response, echo) = await GetAsync(http, $"/retry?responseCode=503&succeedAfter=1&uuid={uuid}");
        Assert.True(response.StatusCode == HttpStatusCode.OK, $"{response.StatusCode}\n{_env.Warnings()}");
        Assert.Equal("infra-backend-v1", Pod(echo));
        // The backend saw the request twice: the 503 the waypoint withheld, then the 200.
        Assert.Equal(2, _env.EchoLog("infra-backend-v1").Split('\n').Count(l => l.Contains(uuid)));

        // Without a retry policy the 503 reaches the client.
        var (unretried, _) = await GetAsync(http, $"/other?responseCode=503&succeedAfter=1&uuid={uuid}x");
        Assert.Equal(HttpStatusCode.ServiceUnavailable, unretried.StatusCode);
    }

    [Theory(Timeout = WaypointEnvironment.TestTimeoutMs)]
    [InlineData(false)]
    [InlineData(true)]
    public async Task ARetriedPostSendsTheSameBodyAgain(bool chunked)
    {
        var rule = Routing.RouteBuilders.Rule(Prefix("/retry-body"), "infra-backend-v1");
        rule.Retry = new HTTPRouteRetry { Codes = { 503 }, Attempts = 2, BackoffMs = 10 };
        _env.UseRoutes(MeshRoute("retry-body", "echo", rule));
        var body = RandomBody(300_000);
        var uuid = Guid.NewGuid().ToString("N");
        var (response, echo) = await PostAsync($"/retry-body?responseCode=503&succeedAfter=1&uuid={uuid}", body, chunked);
        Assert.True(response.StatusCode == HttpStatusCode.OK, $"{response.StatusCode}\n{_env.Warnings()}");
        // The second attempt, which answered, got the whole body; so did the first, whose 503 the waypoint withheld.
        Assert.Equal(body.Length, echo.GetProperty("bodyLength").GetInt64());
        var tries = _env.EchoLog("infra-backend-v1").Split('\n').Where(l => l.Contains(uuid, StringComparison.Ordinal)).ToList();
        Assert.Equal(2, tries.Count);
        Assert.All(tries, l => Assert.EndsWith(BodyMark(body), l.TrimEnd('\r'), StringComparison.Ordinal));
    }

    [Theory(Timeout = WaypointEnvironment.TestTimeoutMs)]
    [InlineData(false)]
    [InlineData(true)]
    public async Task APostOverTheBufferLimitIsSentOnce_NotRetried_NorMirrored(bool chunked)
    {
        var rule = Routing.RouteBuilders.Rule(Prefix("/big-body"), "infra-backend-v1").WithFilter(MirrorTo("infra-backend-v3"));
        rule.Retry = new HTTPRouteRetry { Codes = { 503 }, Attempts = 2, BackoffMs = 10 };
        _env.UseRoutes(MeshRoute("big-body", "echo", rule));
        var body = RandomBody(Ambient.Waypoint.Forwarding.ReplayableRequestBody.BufferLimitBytes + 1);
        var uuid = Guid.NewGuid().ToString("N");
        var (response, echo) = await PostAsync($"/big-body?responseCode=503&succeedAfter=1&uuid={uuid}", body, chunked);
        // Envoy's rule: over the per-request buffer limit the request is sent once and its 503 is the answer.
        Assert.Equal(HttpStatusCode.ServiceUnavailable, response.StatusCode);
        Assert.Equal(body.Length, echo.GetProperty("bodyLength").GetInt64());
        var tries = _env.EchoLog("infra-backend-v1").Split('\n').Where(l => l.Contains(uuid, StringComparison.Ordinal)).ToList();
        Assert.EndsWith(BodyMark(body), Assert.Single(tries).TrimEnd('\r'), StringComparison.Ordinal);

        // A body under the limit on the same rule is mirrored; the big one before it never was.
        var small = RandomBody(1000);
        var smallUuid = Guid.NewGuid().ToString("N");
        var (ok, _) = await PostAsync($"/big-body?uuid={smallUuid}", small, chunked);
        Assert.Equal(HttpStatusCode.OK, ok.StatusCode);
        using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(10));
        while (!_env.EchoLog("infra-backend-v3").Contains(smallUuid, StringComparison.Ordinal))
        {
            await Task.Delay(20, timeout.Token);
        }
        Assert.DoesNotContain(uuid, _env.EchoLog("infra-backend-v3"), StringComparison.Ordinal);
    }

    [Fact(Timeout = WaypointEnvironment.TestTimeoutMs)]
    public async Task AMirrorReceivesTheRequestBody()
    {
        _env.UseRoutes(MeshRoute("mirror-body", "echo",
            Routing.RouteBuilders.Rule(Prefix("/mirror-body"), "infra-backend-v1").WithFilter(MirrorTo("infra-backend-v3"))));
        var body = RandomBody(200_000);
        var uuid = Guid.NewGuid().ToString("N");
        var (response, echo) = await PostAsync($"/mirror-body?uuid={uuid}", body, chunked: false);
        Assert.True(response.StatusCode == HttpStatusCode.OK, $"{response.StatusCode}\n{_env.Warnings()}");
        Assert.Equal("infra-backend-v1", Pod(echo));
        Assert.Equal(body.Length, echo.GetProperty("bodyLength").GetInt64());
        using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(10));
        string? mirrored;
        while ((mirrored = _env.EchoLog("infra-backend-v3").Split('\n').FirstOrDefault(l => l.Contains(uuid, StringComparison.Ordinal))) is null)
        {
            await Task.Delay(20, timeout.Token);
        }
        Assert.EndsWith(BodyMark(body), mirrored.TrimEnd('\r'), StringComparison.Ordinal);
    }

    [Fact(Timeout = WaypointEnvironment.TestTimeoutMs)]
    public async Task ATimedOutAttemptIsRetried_WhenTheRuleHasARetry()
    {
        // HTTPRouteRetry: "Implementations SHOULD retry on connection errors (disconnect, reset, timeout, TCP failure)
        // if a retry stanza is configured" (and the upstream HTTPRouteRetryWithTimeouts test expects it).
        var rule = Routing.RouteBuilders.Rule(Prefix("/slow-retry"), "infra-backend-v1");
        rule.Retry = new HTTPRouteRetry { Attempts = 2, BackoffMs = 10 };
        rule.Timeouts = new HTTPRouteTimeouts { BackendRequestMs = 200 };
        _env.UseRoutes(MeshRoute("slow-retry", "echo", rule));
        var http = fixture.Http;
        var uuid = Guid.NewGuid().ToString("N");
        var (response, _) = await GetAsync(http, $"/slow-retry?delay=400ms&uuid={uuid}");
        Assert.Equal(HttpStatusCode.GatewayTimeout, response.StatusCode);
        // One try and two retries, each cut at 200 ms.
        Assert.Equal(3, _env.EchoLog("infra-backend-v1").Split('\n').Count(l => l.Contains(uuid)));
        Assert.Contains("flags=UT", Assert.Single(_env.Logs.Matching($"path=/slow-retry?delay=400ms&uuid={uuid}")));
    }

    [Fact(Timeout = WaypointEnvironment.TestTimeoutMs)]
    public async Task ABackendWhosePortDeclaresH2c_IsSpokenToInHttp2_EvenWhenTheWaypointDoesNotServeIt()
    {
        // HTTPRouteBackendProtocolH2C: appProtocol kubernetes.io/h2c on the backend Service's port, which this
        // waypoint does not serve (istiod names the protocols of served Services only).
        _env.UseRoutes(MeshRoute("h2c-backend", "echo", Routing.RouteBuilders.Rule(Prefix("/h2c"), "infra-backend-v2-h2c")));
        var (response, echo) = await GetAsync(fixture.Http, "/h2c");
        Assert.True(response.StatusCode == HttpStatusCode.OK, $"{response.StatusCode}\n{_env.Warnings()}");
        Assert.Equal("infra-backend-v2", Pod(echo));
        Assert.Equal("HTTP/2.0", echo.GetProperty("proto").GetString());
    }

    [Fact(Timeout = WaypointEnvironment.TestTimeoutMs)]
    public async Task ABackendRefToAMissingServiceGets500()
    {
        _env.UseRoutes(MeshRoute("invalid", "echo", Routing.RouteBuilders.Rule(Prefix("/"), "no-such-service")));
        var http = fixture.Http;
        var (response, _) = await GetAsync(http, "/invalid");
        Assert.Equal(HttpStatusCode.InternalServerError, response.StatusCode);
    }

    [Fact(Timeout = WaypointEnvironment.TestTimeoutMs)]
    public async Task ARequestNoRuleMatchesGoesToTheAddressedService()
    {
        _env.UseRoutes(MeshRoute("only", "echo", Routing.RouteBuilders.Rule(Exact("/only"), "infra-backend-v2")));
        var http = fixture.Http;
        Assert.Equal("infra-backend-v2", Pod((await GetAsync(http, "/only")).Echo));
        using var response = await http.GetAsync($"http://{EchoHost}/elsewhere", Ct);
        // The fixture's own echo pod behind Service echo answers in plain text.
        Assert.Equal($"host={EchoHost} path=/elsewhere protocol=HTTP/1.1 method=GET", await response.Content.ReadAsStringAsync(Ct));
    }
}

/// <summary>A body whose length the client does not know up front, so it is sent chunked (HTTP/1.1).</summary>
internal sealed class UnknownLengthStream(byte[] data) : MemoryStream(data)
{
    public override bool CanSeek => false;
}

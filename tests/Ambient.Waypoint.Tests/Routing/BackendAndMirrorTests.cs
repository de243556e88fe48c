using Ambient.Core.Protos.Waypoint;
using Ambient.Waypoint.Routing;
using Xunit;
using static Ambient.Waypoint.Tests.Routing.RouteBuilders;

namespace Ambient.Waypoint.Tests.Routing;

public sealed class BackendAndMirrorTests
{
    private static HTTPRouteRule WeightedRule(params HTTPBackendRef[] backends)
    {
        var rule = Rule(Prefix("/"));
        rule.BackendRefs.Add(backends);
        return rule;
    }

    // conformance/tests/httproute-weight.go and mesh/httproute-weight.go: weights 70/30/0, checked within a
    // tolerance over many requests; a weight-0 backend never receives traffic.
    [Fact]
    public void WeightsSplitTrafficWithinTolerance()
    {
        var table = RouteTable.Build([MeshRoute("weighted", "echo",
            WeightedRule(Backend("echo-v1", 70), Backend("echo-v2", 30), Backend("echo-v3", 0)))], random: new SeededRandom(42));
        var counts = new Dictionary<string, int>();
        const int total = 10_000;
        for (var i = 0; i < total; i++)
        {
            var name = table.RouteTo(Request("/"));
            counts[name] = counts.GetValueOrDefault(name) + 1;
        }
        Assert.InRange(counts["echo-v1"] / (double)total, 0.67, 0.73);
        Assert.InRange(counts["echo-v2"] / (double)total, 0.27, 0.33);
        Assert.False(counts.ContainsKey("echo-v3"));
    }

    [Fact]
    public void AllWeightsZeroGives500()
    {
        var table = RouteTable.Build([MeshRoute("r", "echo", WeightedRule(Backend("a", 0), Backend("b", 0)))]);
        var plan = table.Route(Echo(), Request("/"));
        Assert.Equal(RouteOutcome.DirectResponse, plan.Outcome);
        Assert.Equal(500, plan.StatusCode);
    }

    // GAMMA (GEP-1426; conformance/tests/mesh-frontend.yaml and mesh-consumer-route.yaml): a rule of a Service-bound
    // route with no backendRefs sends the request on to the parent Service, on the port it was addressed to, with the
    // rule's filters applied.
    [Fact]
    public void NoBackendsOnAServiceParentForwardsToTheParentOnTheRequestsPort()
    {
        var rule = Rule(Prefix("/")).WithFilter(new HTTPRouteFilter
        {
            Type = HTTPRouteFilterType.ResponseHeaderModifier,
            ResponseHeaderModifier = new HTTPHeaderFilter { Set = { new HTTPHeader { Name = "X-Header-Set", Value = "set" } } },
        });
        var table = RouteTable.Build([MeshRoute("r", "echo", rule)]);
        var plan = table.Route(Echo(8080), Request("/", port: 8080));
        Assert.Equal(RouteOutcome.Forward, plan.Outcome);
        Assert.Equal(new BackendTarget(Ns, "echo", 8080), plan.Backend);
        var response = new Microsoft.AspNetCore.Http.HeaderDictionary();
        plan.ResponseHeaders.ApplyTo(response);
        Assert.Equal("set", response["X-Header-Set"].ToString());
    }

    // The same route on the waypoint's Gateway keeps the Gateway semantics: no backend, a 500.
    [Fact]
    public void NoBackendsOnAGatewayParentGives500()
    {
        var table = RouteTable.Build([GatewayRoute("r", [], Rule(Prefix("/")))], new GatewayTarget(Ns, "waypoint"));
        Assert.Equal("500", table.RouteTo(Request("/")));
    }

    [Fact]
    public void NoBackendsWithARedirectStillRedirectsOnAServiceParent()
    {
        var rule = Rule(Prefix("/")).WithFilter(new HTTPRouteFilter
        {
            Type = HTTPRouteFilterType.RequestRedirect,
            RequestRedirect = new HTTPRequestRedirectFilter { Hostname = "example.org", StatusCode = 302 },
        });
        var table = RouteTable.Build([MeshRoute("r", "echo", rule)]);
        Assert.Equal("302 http://example.org/", table.RouteTo(Request("/")));
    }

    // apis/v1/httproute_types.go, HTTPRouteRule.BackendRefs: "if two backends are specified with equal weights,
    // and one is invalid, 50 percent of traffic must receive a 500".
    [Fact]
    public void AnInvalidBackendsShareGets500()
    {
        var invalid = Backend("missing", 1);
        invalid.InvalidReason = "BackendNotFound";
        var table = RouteTable.Build([MeshRoute("r", "echo", WeightedRule(Backend("good", 1), invalid))],
            random: new ScriptedRandom(0, 1));
        Assert.Equal("good", table.RouteTo(Request("/")));
        Assert.Equal("500", table.RouteTo(Request("/")));
    }

    [Fact]
    public void ABackendOfAnotherKindIsInvalid()
    {
        var rule = Rule(Prefix("/"));
        rule.BackendRefs.Add(new HTTPBackendRef
        {
            BackendRef = new BackendRef { Group = "example.com", Kind = "Bucket", Name = "b", Port = 80 },
            Weight = 1,
        });
        Assert.Equal("500", RouteTable.Build([MeshRoute("r", "echo", rule)]).RouteTo(Request("/")));
    }

    [Fact]
    public void BackendNamespaceDefaultsToTheRoutes()
    {
        var rule = Rule(Prefix("/"));
        rule.BackendRefs.Add(new HTTPBackendRef { BackendRef = new BackendRef { Kind = "Service", Name = "b", Port = 81 }, Weight = 1 });
        var plan = RouteTable.Build([MeshRoute("r", "echo", rule)]).Route(Echo(), Request("/"));
        Assert.Equal(new BackendTarget(Ns, "b", 81), plan.Backend);
    }

    private static HTTPRouteFilter Mirror(string name, uint? percent = null, Fraction? fraction = null)
    {
        var mirror = new HTTPRequestMirrorFilter
        {
            BackendRef = new BackendRef { Kind = "Service", Namespace = Ns, Name = name, Port = 8080 },
            Fraction = fraction,
        };
        if (percent is { } p)
        {
            mirror.Percent = p;
        }
        return new HTTPRouteFilter { Type = HTTPRouteFilterType.RequestMirror, RequestMirror = mirror };
    }

    // conformance/tests/httproute-request-multiple-mirrors.go: every mirror of the rule gets a copy.
    [Fact]
    public void SeveralMirrorsAllReceiveACopy()
    {
        var table = RouteTable.Build([MeshRoute("r", "echo",
            Rule(Prefix("/multi-mirror"), "infra-backend-v1").WithFilter(Mirror("infra-backend-v2")).WithFilter(Mirror("infra-backend-v3")))]);
        var plan = table.Route(Echo(), Request("/multi-mirror"));
        Assert.Equal(["infra-backend-v2", "infra-backend-v3"], plan.Mirrors.Select(m => m.Name));
        Assert.Empty(table.Route(Echo(), Request("/other")).Mirrors);
    }

    // A mirror whose backendRef istiod-lite could not resolve (a cross-namespace Service no ReferenceGrant permits,
    // among others) mirrors nothing; the request itself is routed.
    [Fact]
    public void AnUnresolvedMirrorIsNotSent()
    {
        var unresolved = Mirror("infra-backend-v3");
        unresolved.RequestMirror.InvalidReason = "RefNotPermitted";
        var table = RouteTable.Build([MeshRoute("r", "echo",
            Rule(Prefix("/"), "infra-backend-v1").WithFilter(Mirror("infra-backend-v2")).WithFilter(unresolved))]);
        var plan = table.Route(Echo(), Request("/"));
        Assert.Equal("infra-backend-v1", plan.Backend!.Name);
        Assert.Equal(["infra-backend-v2"], plan.Mirrors.Select(m => m.Name));
    }

    // conformance/tests/httproute-request-percentage-mirror.go: percent 20, fraction 1/4 (and denominator default
    // 100), sampled through the injected random.
    [Fact]
    public void MirrorPercentAndFractionSampleThroughTheRandom()
    {
        var table = RouteTable.Build([MeshRoute("r", "echo",
            Rule(Prefix("/percent"), "v1").WithFilter(Mirror("m-percent", percent: 20)),
            Rule(Prefix("/fraction"), "v1").WithFilter(Mirror("m-fraction", fraction: new Fraction { Numerator = 1, Denominator = 4 })),
            Rule(Prefix("/zero"), "v1").WithFilter(Mirror("m-zero", percent: 0)))], random: new SeededRandom(7));
        var percent = 0;
        var fraction = 0;
        const int total = 10_000;
        for (var i = 0; i < total; i++)
        {
            percent += table.Route(Echo(), Request("/percent")).Mirrors.Count;
            fraction += table.Route(Echo(), Request("/fraction")).Mirrors.Count;
            Assert.Empty(table.Route(Echo(), Request("/zero")).Mirrors);
        }
        Assert.InRange(percent / (double)total, 0.18, 0.22);
        Assert.InRange(fraction / (double)total, 0.23, 0.27);
    }

    [Fact]
    public void TimeoutsAndRetryReachThePlan()
    {
        var rule = Rule(Prefix("/"), "v1");
        rule.Timeouts = new HTTPRouteTimeouts { RequestMs = 500, BackendRequestMs = 0 };
        rule.Retry = new HTTPRouteRetry { Codes = { 500, 503 }, BackoffMs = 25 };
        var plan = RouteTable.Build([MeshRoute("r", "echo", rule)]).Route(Echo(), Request("/"));
        Assert.Equal(TimeSpan.FromMilliseconds(500), plan.RequestTimeout);
        Assert.Null(plan.BackendRequestTimeout); // "0s" disables
        Assert.Equal([500, 503], plan.Retry!.Codes);
        Assert.Equal(RetryPolicy.DefaultAttempts, plan.Retry.Attempts);
        Assert.Equal(TimeSpan.FromMilliseconds(25), plan.Retry.Backoff);

        var noRetry = RouteTable.Build([MeshRoute("r", "echo", Rule(Prefix("/"), "v1"))]).Route(Echo(), Request("/"));
        Assert.Null(noRetry.Retry);
        Assert.Null(noRetry.RequestTimeout);
    }

    [Fact]
    public void MatchingAllocatesNothingForPlainRequests()
    {
        var table = RouteTable.Build([MeshRoute("r", "echo",
            Rule(Prefix("/api").WithHeader("x-version", "2").WithQuery("debug", "1"), "v2"),
            Rule(Prefix("/"), "v1"))]);
        var request = Request("/api/items?debug=1", headers: [H("x-version", "2")]);
        var target = Echo();
        Assert.Equal("v2", table.Route(target, request).Backend!.Name); // warm up
        var before = GC.GetAllocatedBytesForCurrentThread();
        for (var i = 0; i < 1_000; i++)
        {
            _ = table.Route(target, request);
        }
        Assert.Equal(0, GC.GetAllocatedBytesForCurrentThread() - before);
    }
}

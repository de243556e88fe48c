using Ambient.Core.Protos.Waypoint;
using Ambient.Waypoint.Routing;
using Xunit;
using static Ambient.Waypoint.Tests.Routing.RouteBuilders;

namespace Ambient.Waypoint.Tests.Routing;

/// <summary>Matching semantics, with expectations ported from kubernetes-sigs/gateway-api conformance tables.</summary>
public sealed class RouteMatchingTests
{
    // conformance/tests/mesh/httproute-matching.go (manifest tests/mesh/httproute-matching.yaml: one rule to echo-v1
    // on PathPrefix "/" or header version=one, one to echo-v2 on PathPrefix "/v2" or header version=two).
    [Theory]
    [InlineData("/", null, "echo-v1")]
    [InlineData("/example", null, "echo-v1")]
    [InlineData("/", "one", "echo-v1")]
    [InlineData("/v2", null, "echo-v2")]
    [InlineData("/v2/example", null, "echo-v2")]
    [InlineData("/", "two", "echo-v2")]
    [InlineData("/v2/", null, "echo-v2")]
    [InlineData("/v2example", null, "echo-v1")] // not a path segment prefix of /v2
    [InlineData("/foo/v2/example", null, "echo-v1")]
    public void MeshHttpRouteMatching(string path, string? version, string expected)
    {
        var table = RouteTable.Build([MeshRoute("mesh-matching", "echo",
            Rule([Prefix("/"), Prefix("/").WithHeader("version", "one")], "echo-v1"),
            Rule([Prefix("/v2"), Prefix("/").WithHeader("version", "two")], "echo-v2"))]);
        var headers = version is null ? null : new[] { H("Version", version) };
        Assert.Equal(expected, table.RouteTo(Request(path, headers: headers)));
    }

    // apis/v1/httproute_types.go, PathMatchType: "/abc" matches "/abc", "/abc/" and "/abc/def", not "/abcd";
    // a trailing "/" in the prefix value is ignored.
    [Theory]
    [InlineData("/abc", "/abc", true)]
    [InlineData("/abc", "/abc/", true)]
    [InlineData("/abc", "/abc/def", true)]
    [InlineData("/abc", "/abcd", false)]
    [InlineData("/abc/", "/abc", true)]
    [InlineData("/abc/", "/abc/def", true)]
    [InlineData("/abc/", "/abcd", false)]
    [InlineData("/", "/anything", true)]
    public void PathPrefixMatchesWholeSegments(string prefix, string path, bool matches)
    {
        var table = RouteTable.Build([MeshRoute("r", "echo", Rule(Prefix(prefix), "v1"))]);
        Assert.Equal(matches ? "v1" : "NoRoute", table.RouteTo(Request(path)));
    }

    [Theory]
    [InlineData("/exact", "v1")]
    [InlineData("/exact/", "NoRoute")]
    [InlineData("/exact/more", "NoRoute")]
    [InlineData("/EXACT", "NoRoute")]
    [InlineData("/exact?with=query", "v1")]
    public void ExactPathComparesTheWholePathWithoutTheQuery(string request, string expected)
    {
        var table = RouteTable.Build([MeshRoute("r", "echo", Rule(Exact("/exact"), "v1"))]);
        Assert.Equal(expected, table.RouteTo(Request(request)));
    }

    [Theory]
    [InlineData("/v1/users/42", "v1")]
    [InlineData("/v1/users/42/extra", "NoRoute")] // full match, not a search
    [InlineData("/x/v1/users/42", "NoRoute")]
    [InlineData("/v1/users/abc", "NoRoute")]
    public void RegularExpressionPathIsAFullMatch(string path, string expected)
    {
        var table = RouteTable.Build([MeshRoute("r", "echo", Rule(Regex(@"/v\d+/users/[0-9]+"), "v1"))]);
        Assert.Equal(expected, table.RouteTo(Request(path)));
    }

    [Fact]
    public void AnInvalidRegexNeverMatchesAndDoesNotThrow()
    {
        var table = RouteTable.Build([MeshRoute("r", "echo", Rule(Regex("/(unclosed"), "v1"), Rule(Prefix("/"), "v2"))]);
        Assert.Equal("v2", table.RouteTo(Request("/(unclosed")));
    }

    // conformance/tests/httproute-header-matching.go: exact values, names case-insensitive.
    [Theory]
    [InlineData("version", "one", "v1")]
    [InlineData("VERSION", "one", "v1")]
    [InlineData("Version", "ONE", "NoRoute")] // values are case-sensitive
    [InlineData("version", "one-and-more", "NoRoute")]
    [InlineData("other", "one", "NoRoute")]
    public void HeaderExactMatch(string name, string value, string expected)
    {
        var table = RouteTable.Build([MeshRoute("r", "echo", Rule(Prefix("/").WithHeader("version", "one"), "v1"))]);
        Assert.Equal(expected, table.RouteTo(Request("/", headers: [H(name, value)])));
    }

    [Fact]
    public void HeaderRepeatedInTheRequestIsMatchedAsOneCommaJoinedValue()
    {
        var table = RouteTable.Build([MeshRoute("r", "echo",
            Rule(Prefix("/").WithHeader("x-multi", "a,b"), "joined"))]);
        Assert.Equal("joined", table.RouteTo(Request("/", headers: [H("x-multi", "a"), H("x-multi", "b")])));
    }

    [Fact]
    public void OnlyTheFirstOfEquivalentHeaderNamesIsConsidered()
    {
        // "If multiple entries specify equivalent header names, only the first entry with an equivalent name MUST
        // be considered for a match."
        var table = RouteTable.Build([MeshRoute("r", "echo",
            Rule(Prefix("/").WithHeader("version", "one").WithHeader("VERSION", "two"), "v1"))]);
        Assert.Equal("v1", table.RouteTo(Request("/", headers: [H("version", "one")])));
    }

    [Theory]
    [InlineData("v1.2.3", "v1")]
    [InlineData("v12.0.1", "v1")]
    [InlineData("xv1.2.3", "NoRoute")]
    [InlineData("v1.2", "NoRoute")]
    public void HeaderRegularExpressionMatch(string value, string expected)
    {
        var table = RouteTable.Build([MeshRoute("r", "echo", Rule(
            Prefix("/").WithHeader("version", @"v\d+\.\d+\.\d+", HeaderMatchType.HeaderRegularExpression), "v1"))]);
        Assert.Equal(expected, table.RouteTo(Request("/", headers: [H("version", value)])));
    }

    // conformance/tests/httproute-query-param-matching.go (first table): animal=whale -> v1, animal=dolphin -> v2,
    // animal=dolphin AND color=blue, or ANIMAL=Whale -> v3 (names and values exact).
    [Theory]
    [InlineData("/?animal=whale", "v1")]
    [InlineData("/?animal=dolphin", "v2")]
    [InlineData("/?animal=dolphin&color=blue", "v3")]
    [InlineData("/?ANIMAL=Whale", "v3")]
    [InlineData("/?animal=whale&otherparam=irrelevant", "v1")]
    [InlineData("/?animal=dolphin&color=yellow", "v2")]
    [InlineData("/?color=blue", "NoRoute")]
    [InlineData("/?animal=dog", "NoRoute")]
    [InlineData("/?animal=whaledolphin", "NoRoute")]
    [InlineData("/", "NoRoute")]
    public void QueryParamExactMatch(string request, string expected)
    {
        var table = RouteTable.Build([MeshRoute("query-param-matching", "echo",
            Rule(Prefix("/").WithQuery("animal", "whale"), "v1"),
            Rule(Prefix("/").WithQuery("animal", "dolphin"), "v2"),
            Rule([Prefix("/").WithQuery("animal", "dolphin").WithQuery("color", "blue"),
                Prefix("/").WithQuery("ANIMAL", "Whale")], "v3"))]);
        Assert.Equal(expected, table.RouteTo(Request(request)));
    }

    [Theory]
    [InlineData("/?animal=whale&animal=dolphin", "whale")] // first value wins
    [InlineData("/?animal=dolphin&animal=whale", "NoRoute")]
    [InlineData("/?animal=wh%61le", "whale")] // percent-decoded before comparing
    public void QueryParamUsesTheFirstValue(string request, string expected)
    {
        var table = RouteTable.Build([MeshRoute("r", "echo", Rule(Prefix("/").WithQuery("animal", "whale"), "whale"))]);
        Assert.Equal(expected, table.RouteTo(Request(request)));
    }

    [Theory]
    [InlineData("/?id=123", "digits")]
    [InlineData("/?id=12a", "NoRoute")]
    public void QueryParamRegularExpressionMatch(string request, string expected)
    {
        var table = RouteTable.Build([MeshRoute("r", "echo",
            Rule(Prefix("/").WithQuery("id", "[0-9]+", HeaderMatchType.HeaderRegularExpression), "digits"))]);
        Assert.Equal(expected, table.RouteTo(Request(request)));
    }

    // conformance/tests/httproute-method-matching.go: POST -> v1, GET -> v2, other methods -> 404 (no route).
    [Theory]
    [InlineData("POST", "v1")]
    [InlineData("GET", "v2")]
    [InlineData("HEAD", "NoRoute")]
    [InlineData("post", "NoRoute")] // methods are case-sensitive
    public void MethodMatch(string method, string expected)
    {
        var table = RouteTable.Build([MeshRoute("method-matching", "echo",
            Rule(Prefix("/").WithMethod("POST"), "v1"),
            Rule(Prefix("/").WithMethod("GET"), "v2"))]);
        Assert.Equal(expected, table.RouteTo(Request("/", method: method)));
    }

    [Fact]
    public void ConditionsOfOneMatchAreAndedAndMatchesAreOred()
    {
        // conformance/tests/httproute-query-param-matching.go ("combinations which are ANDed"): /path4 with
        // animal=kraken needs the version=three header too; /path3?animal=shark is the other, ORed, match.
        var table = RouteTable.Build([MeshRoute("r", "echo",
            Rule([Prefix("/path3").WithQuery("animal", "shark"),
                Prefix("/path4").WithQuery("animal", "kraken").WithHeader("version", "three")], "v1"))]);
        Assert.Equal("v1", table.RouteTo(Request("/path3?animal=shark")));
        Assert.Equal("v1", table.RouteTo(Request("/path4?animal=kraken", headers: [H("version", "three")])));
        Assert.Equal("NoRoute", table.RouteTo(Request("/?animal=shark")));
        Assert.Equal("NoRoute", table.RouteTo(Request("/path4?animal=kraken")));
    }

    // conformance/tests/mesh/mesh-frontend-hostname.go: a mesh route applies by the Service the traffic is addressed
    // to, never by the Host header; and GEP-1426 says mesh routes infer nothing from spec.hostnames.
    [Fact]
    public void MeshRoutesFollowTheServiceNotTheHostAndIgnoreHostnames()
    {
        var v2Route = MeshRoute("echo-v2-route", "echo-v2", Rule(Prefix("/"), "echo-v2"));
        v2Route.Hostnames.Add("not-this-host.example.com");
        var table = RouteTable.Build([v2Route]);
        Assert.Equal("echo-v2", table.RouteTo(Request("/", host: "echo-v1"), new ServiceTarget(Ns, "echo-v2", 80)));
        Assert.Equal("NoRoute", table.RouteTo(Request("/", host: "echo-v2"), new ServiceTarget(Ns, "echo-v1", 80)));
    }

    // GEP-1426 "Ports": with parentRef.port the route applies to that port only; without, to every port.
    // conformance/tests/mesh/mesh-ports.go.
    [Fact]
    public void ParentRefPortLimitsTheRouteToThatPort()
    {
        var table = RouteTable.Build([
            MeshRoute("port-80", "echo", 80, Rule(Prefix("/"), "on-80")),
            MeshRoute("every-port", "echo", 0, Rule(Prefix("/all"), "all-ports")),
        ]);
        Assert.Equal("on-80", table.RouteTo(Request("/"), Echo(80)));
        Assert.Equal("NoRoute", table.RouteTo(Request("/"), Echo(8080)));
        Assert.Equal("all-ports", table.RouteTo(Request("/all"), Echo(8080)));
        Assert.Equal("all-ports", table.RouteTo(Request("/all"), Echo(80)));
    }

    [Theory]
    [InlineData("example.org", "example.org")]
    [InlineData("example.org:8080", "example.org")]
    [InlineData("[::1]:8080", "[::1]")]
    [InlineData("[::1]", "[::1]")]
    [InlineData("::1", "::1")]
    public void HostPortIsIgnored(string host, string expected)
    {
        Assert.Equal(expected, Request("/", host: host).HostWithoutPort.ToString());
    }

    [Fact]
    public void ServiceTargetFromHostnameUsesTheFirstLabel()
    {
        Assert.Equal(new ServiceTarget("shop", "reviews", 9080),
            ServiceTarget.FromHostname("shop", "reviews.shop.svc.cluster.local", 9080));
    }

    // GEP-1426 "Namespace boundaries": a consumer route (in another namespace than its Service) applies only to
    // clients in its own namespace, which then use it instead of the producer routes.
    [Fact]
    public void ConsumerRoutesApplyOnlyToClientsInTheirNamespace()
    {
        var consumer = new HTTPRoute { Namespace = "client-ns", Name = "consumer" };
        consumer.ParentRefs.Add(new ParentReference { Kind = "Service", Namespace = Ns, Name = "echo" });
        consumer.Rules.Add(Rule(Prefix("/"), "consumer-backend"));
        var table = RouteTable.Build([consumer, MeshRoute("producer", "echo", Rule(Prefix("/"), "producer-backend"))]);

        Assert.Equal("consumer-backend", table.Route(Echo(), Request("/"), clientNamespace: "client-ns").Backend!.Name);
        Assert.Equal("producer-backend", table.Route(Echo(), Request("/"), clientNamespace: "other-ns").Backend!.Name);
        Assert.Equal("producer-backend", table.Route(Echo(), Request("/")).Backend!.Name);
    }

    // GEP-1294 "Multiple routes for a Service": requests from a namespace with consumer routes use the (merged) set of
    // routes in that namespace, and only those; the producer routes are not consulted, not even for a path only they
    // match (such a request then goes to the Service as if no route existed).
    [Theory]
    [InlineData("client-ns", "/special", "NoRoute")]
    [InlineData("client-ns", "/consumer", "consumer-backend")]
    [InlineData("other-ns", "/special", "producer-special")]
    [InlineData("other-ns", "/consumer", "producer-backend")]
    [InlineData(Ns, "/special", "producer-special")]
    public void ConsumerRoutesReplaceTheProducerRoutesForTheirNamespace(string client, string path, string expected)
    {
        var table = RouteTable.Build([
            MeshRoute("producer", "echo", Rule(Exact("/special"), "producer-special"), Rule(Prefix("/"), "producer-backend")),
            ConsumerRoute("client-ns", "consumer", "echo", 0, Rule(Prefix("/consumer"), "consumer-backend")),
        ]);
        Assert.Equal(expected, RouteFor(table, Echo(), path, client));
    }

    // Within one consumer namespace routes merge with the usual precedence (specificity, then age, then name); another
    // namespace's consumer routes never apply.
    [Theory]
    [InlineData("client-ns", "/a/b", "newer-exact")]
    [InlineData("client-ns", "/a", "older-prefix")]
    [InlineData("client-ns", "/tie", "a-wins-the-tie")]
    [InlineData("elsewhere", "/a/b", "elsewhere-backend")]
    [InlineData("third-ns", "/a/b", "producer-backend")]
    public void ConsumerRoutesOfOneNamespaceMergeByPrecedence(string client, string path, string expected)
    {
        var table = RouteTable.Build([
            ConsumerRoute("client-ns", "newer", "echo", 0, Rule(Exact("/a/b"), "newer-exact")).Created(2000),
            ConsumerRoute("client-ns", "older", "echo", 0, Rule(Prefix("/a"), "older-prefix"), Rule(Prefix("/tie"), "older-tie")).Created(1000),
            ConsumerRoute("client-ns", "b", "echo", 0, Rule(Prefix("/tie"), "b-loses-the-tie")).Created(500),
            ConsumerRoute("client-ns", "a", "echo", 0, Rule(Prefix("/tie"), "a-wins-the-tie")).Created(500),
            ConsumerRoute("elsewhere", "theirs", "echo", 0, Rule(Prefix("/"), "elsewhere-backend")),
            MeshRoute("producer", "echo", Rule(Prefix("/"), "producer-backend")),
        ]);
        Assert.Equal(expected, RouteFor(table, Echo(), path, client));
    }

    // GEP-1294 "Ports": a consumer route naming port 80 replaces the producer routes on port 80 only.
    [Theory]
    [InlineData(80, "consumer-backend")]
    [InlineData(8080, "producer-backend")]
    public void AConsumerRouteOnOnePortLeavesOtherPortsToTheProducerRoutes(int port, string expected)
    {
        var table = RouteTable.Build([
            ConsumerRoute("client-ns", "consumer", "echo", 80, Rule(Prefix("/"), "consumer-backend")),
            MeshRoute("producer", "echo", Rule(Prefix("/"), "producer-backend")),
        ]);
        Assert.Equal(expected, RouteFor(table, Echo(port), "/", "client-ns", port));
    }

    private static string RouteFor(RouteTable table, ServiceTarget service, string path, string clientNamespace, int port = 80)
    {
        var plan = table.Route(service, Request(path, port: port), clientNamespace);
        return plan.Outcome == RouteOutcome.Forward ? plan.Backend!.Name : plan.Outcome.ToString();
    }

    // conformance/tests/httproute-matching-across-routes.go: two Gateway routes, hostnames [example.com,
    // example.net] and ["*.com"]; precedence applies across both routes for hosts both accept.
    [Theory]
    [InlineData("example.com", "/", null, "infra-backend-v1")]
    [InlineData("example.com", "/example", null, "infra-backend-v1")]
    [InlineData("example.net", "/example", null, "infra-backend-v1")]
    [InlineData("example.com", "/example", "one", "infra-backend-v1")]
    [InlineData("example.com", "/v2", null, "infra-backend-v2")]
    [InlineData("example.net", "/v2", null, "infra-backend-v1")] // v2 matches are limited to *.com
    [InlineData("example.com", "/v2/example", null, "infra-backend-v2")]
    [InlineData("example.com", "/", "two", "infra-backend-v2")]
    public void GatewayRoutesMatchAcrossRoutesWithinTheirHostnames(string host, string path, string? version,
        string expected)
    {
        var table = RouteTable.Build([
            GatewayRoute("matching-part1", ["example.com", "example.net"],
                Rule([Prefix("/"), Prefix("/").WithHeader("version", "one")], "infra-backend-v1")),
            GatewayRoute("matching-part2", ["*.com"],
                Rule([Prefix("/v2"), Prefix("/").WithHeader("version", "two")], "infra-backend-v2")),
        ], WaypointGateway);
        var headers = version is null ? null : new[] { H("Version", version) };
        Assert.Equal(expected, table.RouteTo(Request(path, host: host, headers: headers)));
    }

    [Theory]
    [InlineData("foo.example.com", "wild")]
    [InlineData("a.b.example.com", "wild")]
    [InlineData("FOO.EXAMPLE.COM:8080", "wild")] // port ignored, case-insensitive
    [InlineData("example.com", "NoRoute")]
    [InlineData("fooexample.com", "NoRoute")]
    public void WildcardHostnamesMatchOneOrMoreLabels(string host, string expected)
    {
        var table = RouteTable.Build([GatewayRoute("r", ["*.example.com"], Rule(Prefix("/"), "wild"))], WaypointGateway);
        Assert.Equal(expected, table.RouteTo(Request("/", host: host)));
    }

    [Fact]
    public void GatewayRoutesApplyOnlyWhereTheServiceHasNoRouteOfItsOwn()
    {
        var table = RouteTable.Build([
            GatewayRoute("gw", [], Rule(Prefix("/"), "via-gateway")),
            MeshRoute("svc", "echo", Rule(Prefix("/"), "via-service")),
        ], WaypointGateway);
        Assert.Equal("via-service", table.RouteTo(Request("/"), Echo()));
        Assert.Equal("via-gateway", table.RouteTo(Request("/"), new ServiceTarget(Ns, "other", 80)));
    }

    [Fact]
    public void RoutesForAnotherGatewayOrServiceAreIgnored()
    {
        var table = RouteTable.Build([GatewayRoute("gw", [], Rule(Prefix("/"), "x"))], new GatewayTarget(Ns, "other"));
        Assert.Equal("NoRoute", table.RouteTo(Request("/")));
        var plan = RouteTable.Build([MeshRoute("r", "echo", Rule(Exact("/only"), "x"))]).Route(Echo(), Request("/"));
        Assert.Equal(RouteOutcome.NoRoute, plan.Outcome);
        Assert.True(plan.ParentHasRoutes);
        Assert.False(RouteTable.Empty.Route(Echo(), Request("/")).ParentHasRoutes);
    }
}

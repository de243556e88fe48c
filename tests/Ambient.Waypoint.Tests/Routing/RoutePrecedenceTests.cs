using Ambient.Waypoint.Routing;
using Xunit;
using static Ambient.Waypoint.Tests.Routing.RouteBuilders;

namespace Ambient.Waypoint.Tests.Routing;

/// <summary>
/// Precedence across rules and routes, one test per tie-break of apis/v1/httproute_types.go (HTTPRouteRule):
/// Exact path, longest prefix, method, most headers, most query params, oldest route, "{namespace}/{name}",
/// then rule order. Each test lists the loser first so list order alone would pick the wrong rule.
/// </summary>
public sealed class RoutePrecedenceTests
{
    [Fact]
    public void ExactPathBeatsALongerPrefix()
    {
        var table = RouteTable.Build([MeshRoute("r", "echo",
            Rule(Prefix("/foo/bar"), "prefix"), Rule(Exact("/foo/bar"), "exact"))]);
        Assert.Equal("exact", table.RouteTo(Request("/foo/bar")));
        Assert.Equal("prefix", table.RouteTo(Request("/foo/bar/baz")));
    }

    [Fact]
    public void LongestPrefixWins()
    {
        var table = RouteTable.Build([MeshRoute("r", "echo",
            Rule(Prefix("/"), "root"), Rule(Prefix("/foo"), "foo"), Rule(Prefix("/foo/bar"), "foobar"))]);
        Assert.Equal("foobar", table.RouteTo(Request("/foo/bar/x")));
        Assert.Equal("foo", table.RouteTo(Request("/foo/baz")));
        Assert.Equal("root", table.RouteTo(Request("/other")));
    }

    [Fact]
    public void MethodMatchBeatsNoMethod()
    {
        var table = RouteTable.Build([MeshRoute("r", "echo",
            Rule(Prefix("/").WithHeader("a", "1"), "headers"), Rule(Prefix("/").WithMethod("GET"), "method"))]);
        // Method comes before header count in the order.
        Assert.Equal("method", table.RouteTo(Request("/", headers: [H("a", "1")])));
    }

    [Fact]
    public void MoreHeaderMatchesWin()
    {
        var table = RouteTable.Build([MeshRoute("r", "echo",
            Rule(Prefix("/").WithHeader("a", "1"), "one"),
            Rule(Prefix("/").WithHeader("a", "1").WithHeader("b", "2"), "two"))]);
        Assert.Equal("two", table.RouteTo(Request("/", headers: [H("a", "1"), H("b", "2")])));
        Assert.Equal("one", table.RouteTo(Request("/", headers: [H("a", "1")])));
    }

    [Fact]
    public void HeadersComeBeforeQueryParams()
    {
        var table = RouteTable.Build([MeshRoute("r", "echo",
            Rule(Prefix("/").WithQuery("q", "1").WithQuery("r", "2"), "queries"),
            Rule(Prefix("/").WithHeader("a", "1"), "header"))]);
        Assert.Equal("header", table.RouteTo(Request("/?q=1&r=2", headers: [H("a", "1")])));
    }

    [Fact]
    public void MoreQueryParamMatchesWin()
    {
        var table = RouteTable.Build([MeshRoute("r", "echo",
            Rule(Prefix("/").WithQuery("q", "1"), "one"),
            Rule(Prefix("/").WithQuery("q", "1").WithQuery("r", "2"), "two"))]);
        Assert.Equal("two", table.RouteTo(Request("/?q=1&r=2")));
    }

    // conformance/tests/httproute-query-param-matching.go (precedence cases): "/path5?animal=hydra" goes to the
    // rule with the longer path even though the other has a header match too.
    [Fact]
    public void PathLengthComesBeforeHeaderAndQueryCounts()
    {
        var table = RouteTable.Build([MeshRoute("r", "echo",
            Rule(Prefix("/").WithHeader("version", "four").WithQuery("animal", "hydra"), "infra-backend-v3"),
            Rule(Prefix("/path5").WithQuery("animal", "hydra"), "infra-backend-v1"))]);
        Assert.Equal("infra-backend-v1", table.RouteTo(Request("/path5?animal=hydra", headers: [H("version", "four")])));
        Assert.Equal("infra-backend-v3", table.RouteTo(Request("/?animal=hydra", headers: [H("version", "four")])));
    }

    [Fact]
    public void OldestRouteWinsATie()
    {
        var table = RouteTable.Build([
            MeshRoute("a-newer", "echo", Rule(Prefix("/"), "newer")).Created(2_000),
            MeshRoute("z-older", "echo", Rule(Prefix("/"), "older")).Created(1_000),
        ]);
        Assert.Equal("older", table.RouteTo(Request("/")));
    }

    [Fact]
    public void NamespaceSlashNameBreaksATieOfTimestamps()
    {
        var table = RouteTable.Build([
            MeshRoute("beta", "echo", Rule(Prefix("/"), "beta")).Created(1_000),
            MeshRoute("alpha", "echo", Rule(Prefix("/"), "alpha")).Created(1_000),
        ]);
        Assert.Equal("alpha", table.RouteTo(Request("/")));
    }

    [Fact]
    public void FirstRuleWinsWithinARoute()
    {
        var table = RouteTable.Build([MeshRoute("r", "echo",
            Rule(Prefix("/").WithHeader("a", "1"), "first"), Rule(Prefix("/").WithHeader("b", "2"), "second"))]);
        Assert.Equal("first", table.RouteTo(Request("/", headers: [H("a", "1"), H("b", "2")])));
    }

    // RegularExpression precedence is implementation-specific; Istio (pilot/pkg/config/kube/gateway/conversion.go,
    // getURIRank) ranks Exact over PathPrefix over RegularExpression, each tier by length.
    [Fact]
    public void RegexRanksBelowPrefixAsInIstio()
    {
        var table = RouteTable.Build([MeshRoute("r", "echo",
            Rule(Regex("/api/v1/users/[0-9]+"), "regex"), Rule(Prefix("/api"), "prefix"), Rule(Exact("/api/x"), "exact"))]);
        Assert.Equal("prefix", table.RouteTo(Request("/api/v1/users/1")));
        Assert.Equal("exact", table.RouteTo(Request("/api/x")));
        Assert.Equal("regex", RouteTable.Build([MeshRoute("r", "echo",
            Rule(Regex("/api/v1/users/[0-9]+"), "regex"), Rule(Prefix("/other"), "prefix"))]).RouteTo(Request("/api/v1/users/1")));
    }
}

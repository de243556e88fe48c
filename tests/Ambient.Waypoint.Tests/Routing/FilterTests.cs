using Ambient.Core.Protos.Waypoint;
using Ambient.Waypoint.Filters;
using Ambient.Waypoint.Routing;
using Microsoft.AspNetCore.Http;
using Xunit;
using static Ambient.Waypoint.Tests.Routing.RouteBuilders;

namespace Ambient.Waypoint.Tests.Routing;

public sealed class FilterTests
{
    private static HTTPRouteFilter RequestHeaders(HTTPHeaderFilter filter) =>
        new() { Type = HTTPRouteFilterType.RequestHeaderModifier, RequestHeaderModifier = filter };

    private static HTTPRouteFilter ResponseHeaders(HTTPHeaderFilter filter) =>
        new() { Type = HTTPRouteFilterType.ResponseHeaderModifier, ResponseHeaderModifier = filter };

    private static HTTPRouteFilter Rewrite(HTTPURLRewriteFilter rewrite) =>
        new() { Type = HTTPRouteFilterType.UrlRewrite, UrlRewrite = rewrite };

    private static HTTPRouteFilter Redirect(HTTPRequestRedirectFilter redirect) =>
        new() { Type = HTTPRouteFilterType.RequestRedirect, RequestRedirect = redirect };

    private static HTTPPathModifier ReplacePrefix(string value) =>
        new() { Type = PathModifierType.ReplacePrefixMatch, ReplacePrefixMatch = value };

    private static HTTPPathModifier ReplaceFull(string value) =>
        new() { Type = PathModifierType.ReplaceFullPath, ReplaceFullPath = value };

    private static HTTPHeaderFilter ConformanceHeaderFilter()
    {
        // conformance/tests/httproute-rewrite-path.yaml's RequestHeaderModifier.
        var filter = new HTTPHeaderFilter();
        filter.Set.Add(new HTTPHeader { Name = "X-Header-Set", Value = "set-overwrites-values" });
        filter.Add.Add(new HTTPHeader { Name = "X-Header-Add", Value = "header-val-1" });
        filter.Add.Add(new HTTPHeader { Name = "X-Header-Add-Append", Value = "header-val-2" });
        filter.Remove.Add("X-Header-Remove");
        return filter;
    }

    // conformance/tests/httproute-rewrite-path.go, cases 4 and 5 (headers part).
    [Fact]
    public void RequestHeaderModifierSetsAddsAndRemoves()
    {
        var table = RouteTable.Build([MeshRoute("r", "echo",
            Rule(Prefix("/"), "v1").WithFilter(RequestHeaders(ConformanceHeaderFilter())))]);
        var request = Request("/", headers: [H("X-Header-Remove", "remove-val"), H("X-Header-Add-Append", "append-val-1"),
            H("x-header-set", "set-val")]);
        var plan = table.Route(Echo(), request);
        plan.RequestHeaders.ApplyTo(request.Headers);

        Assert.Equal("header-val-1", request.Headers["X-Header-Add"].ToString());
        Assert.Equal("append-val-1,header-val-2", request.Headers["x-header-add-append"].ToString());
        Assert.Equal("set-overwrites-values", request.Headers["X-Header-Set"].ToString());
        Assert.False(request.Headers.ContainsKey("x-header-remove"));
    }

    // conformance/tests/httproute-response-header-modifier.go: route-level and backendRef-level filters both
    // apply to the response, route level first.
    [Fact]
    public void ResponseHeaderModifierAppliesRouteThenBackendLevel()
    {
        var routeLevel = new HTTPHeaderFilter();
        routeLevel.Set.Add(new HTTPHeader { Name = "X-Header-Set", Value = "route" });
        routeLevel.Add.Add(new HTTPHeader { Name = "X-Route", Value = "yes" });
        var backendLevel = new HTTPHeaderFilter();
        backendLevel.Set.Add(new HTTPHeader { Name = "X-Header-Set", Value = "backend" });
        backendLevel.Remove.Add("X-Server");
        var rule = Rule(Prefix("/"), "v1").WithFilter(ResponseHeaders(routeLevel));
        rule.BackendRefs[0].Filters.Add(ResponseHeaders(backendLevel));
        var table = RouteTable.Build([MeshRoute("r", "echo", rule)]);

        var response = new HeaderDictionary { ["X-Server"] = "upstream" };
        table.Route(Echo(), Request("/")).ResponseHeaders.ApplyTo(response);
        Assert.Equal("backend", response["x-header-set"].ToString());
        Assert.Equal("yes", response["X-Route"].ToString());
        Assert.False(response.ContainsKey("X-Server"));
    }

    // apis/v1/httproute_types.go, HTTPPathModifier.ReplacePrefixMatch table, row by row.
    [Theory]
    [InlineData("/foo/bar", "/foo", "/xyz", "/xyz/bar")]
    [InlineData("/foo/bar", "/foo", "/xyz/", "/xyz/bar")]
    [InlineData("/foo/bar", "/foo/", "/xyz", "/xyz/bar")]
    [InlineData("/foo/bar", "/foo/", "/xyz/", "/xyz/bar")]
    [InlineData("/foo", "/foo", "/xyz", "/xyz")]
    [InlineData("/foo/", "/foo", "/xyz", "/xyz/")]
    [InlineData("/foo/bar", "/foo", "", "/bar")]
    [InlineData("/foo/", "/foo", "", "/")]
    [InlineData("/foo", "/foo", "", "/")]
    [InlineData("/foo/", "/foo", "/", "/")]
    [InlineData("/foo", "/foo", "/", "/")]
    public void ReplacePrefixMatchFollowsTheSpecTable(string path, string prefix, string replacement, string expected)
    {
        var table = RouteTable.Build([MeshRoute("r", "echo",
            Rule(Prefix(prefix), "v1").WithFilter(Rewrite(new HTTPURLRewriteFilter { Path = ReplacePrefix(replacement) })))]);
        Assert.Equal(expected, table.Route(Echo(), Request(path)).RewrittenPath);
    }

    // conformance/tests/mesh/httproute-rewrite-path.go and conformance/tests/httproute-rewrite-path.go.
    [Theory]
    [InlineData("/prefix/one/two", "/one/two")]
    [InlineData("/strip-prefix/three", "/three")]
    [InlineData("/strip-prefix", "/")]
    [InlineData("/full/one/two", "/one")]
    [InlineData("/full/rewrite-path-and-modify-headers/test", "/test")]
    [InlineData("/prefix/rewrite-path-and-modify-headers/one", "/prefix/one")]
    public void UrlRewritePathConformanceCases(string path, string expected)
    {
        var table = RouteTable.Build([MeshRoute("rewrite-path", "echo",
            Rule(Prefix("/prefix/one"), "echo-v1").WithFilter(Rewrite(new() { Path = ReplacePrefix("/one") })),
            Rule(Prefix("/strip-prefix"), "echo-v1").WithFilter(Rewrite(new() { Path = ReplacePrefix("/") })),
            Rule(Prefix("/full/one"), "echo-v1").WithFilter(Rewrite(new() { Path = ReplaceFull("/one") })),
            Rule(Prefix("/full/rewrite-path-and-modify-headers"), "echo-v1")
                .WithFilter(Rewrite(new() { Path = ReplaceFull("/test") })),
            Rule(Prefix("/prefix/rewrite-path-and-modify-headers"), "echo-v1")
                .WithFilter(Rewrite(new() { Path = ReplacePrefix("/prefix") })))]);
        var plan = table.Route(Echo(), Request(path));
        Assert.Equal(RouteOutcome.Forward, plan.Outcome);
        Assert.Equal(expected, plan.RewrittenPath);
    }

    // conformance/tests/httproute-rewrite-host.go: the Host sent upstream is replaced, the path kept.
    [Fact]
    public void UrlRewriteHostname()
    {
        var table = RouteTable.Build([MeshRoute("r", "echo",
            Rule(Prefix("/one"), "v1").WithFilter(Rewrite(new() { Hostname = "one.example.org" })))]);
        var plan = table.Route(Echo(), Request("/one"));
        Assert.Equal("one.example.org", plan.RewrittenHost);
        Assert.Null(plan.RewrittenPath);
    }

    // conformance/tests/httproute-redirect-port-and-scheme.go, listener on port 80 (http).
    [Theory]
    [InlineData("", 0u, "http://example.org/p")] // scheme-nil-and-port-nil
    [InlineData("", 80u, "http://example.org/p")] // scheme-nil-and-port-80
    [InlineData("", 8080u, "http://example.org:8080/p")] // scheme-nil-and-port-8080
    [InlineData("https", 0u, "https://example.org/p")] // scheme-https-and-port-nil
    [InlineData("https", 443u, "https://example.org/p")] // scheme-https-and-port-443
    [InlineData("https", 8443u, "https://example.org:8443/p")] // scheme-https-and-port-8443
    public void RedirectPortDerivationOnPort80(string scheme, uint port, string location)
    {
        Assert.Equal("302 " + location, RedirectTo(scheme, port, "http", 80));
    }

    // Same file, listener on port 8080 (http).
    [Theory]
    [InlineData("", 0u, "http://example.org:8080/p")] // request port kept
    [InlineData("", 80u, "http://example.org/p")]
    [InlineData("https", 0u, "https://example.org/p")] // scheme's well-known port, not the listener's
    public void RedirectPortDerivationOnPort8080(string scheme, uint port, string location)
    {
        Assert.Equal("302 " + location, RedirectTo(scheme, port, "http", 8080));
    }

    // Same file, listener on port 443 (https).
    [Theory]
    [InlineData("", 0u, "https://example.org/p")]
    [InlineData("", 443u, "https://example.org/p")]
    [InlineData("", 8443u, "https://example.org:8443/p")]
    [InlineData("http", 0u, "http://example.org/p")]
    [InlineData("http", 80u, "http://example.org/p")]
    [InlineData("http", 8080u, "http://example.org:8080/p")]
    public void RedirectPortDerivationOnPort443(string scheme, uint port, string location)
    {
        Assert.Equal("302 " + location, RedirectTo(scheme, port, "https", 443));
    }

    private static string RedirectTo(string scheme, uint port, string requestScheme, int requestPort)
    {
        var table = RouteTable.Build([MeshRoute("r", "echo", Rule(Prefix("/"))
            .WithFilter(Redirect(new() { Scheme = scheme, Port = port, StatusCode = 302 })))]);
        return table.RouteTo(Request("/p", host: "example.org", scheme: requestScheme, port: requestPort));
    }

    // conformance/tests/mesh/httproute-redirect-port.go: port 8083 on a Service port 80, with host and status.
    [Theory]
    [InlineData("/port", "302 http://echo:8083/port")]
    [InlineData("/port-and-host", "302 http://example.org:8083/port-and-host")]
    [InlineData("/port-and-status", "301 http://echo:8083/port-and-status")]
    [InlineData("/port-and-host-and-status", "302 http://example.org:8083/port-and-host-and-status")]
    public void MeshRedirectPort(string path, string expected)
    {
        var table = RouteTable.Build([MeshRoute("mesh-redirect-port", "echo", 80,
            Rule(Prefix("/port")).WithFilter(Redirect(new() { Port = 8083, StatusCode = 302 })),
            Rule(Prefix("/port-and-host")).WithFilter(Redirect(new() { Hostname = "example.org", Port = 8083, StatusCode = 302 })),
            Rule(Prefix("/port-and-status")).WithFilter(Redirect(new() { Port = 8083, StatusCode = 301 })),
            Rule(Prefix("/port-and-host-and-status"))
                .WithFilter(Redirect(new() { Port = 8083, Hostname = "example.org", StatusCode = 302 })))]);
        Assert.Equal(expected, table.RouteTo(Request(path, host: "echo")));
    }

    // conformance/tests/httproute-redirect-path.go: ReplacePrefixMatch and ReplaceFullPath in the Location.
    [Theory]
    [InlineData("/original-prefix/lemon", "302 http://echo/replacement-prefix/lemon")]
    [InlineData("/full/path/original", "302 http://echo/full-path-replacement")]
    [InlineData("/path-and-host/x?q=1", "302 http://example.org/replacement-prefix/x?q=1")]
    public void RedirectPath(string request, string expected)
    {
        var table = RouteTable.Build([MeshRoute("redirect-path", "echo", 80,
            Rule(Prefix("/original-prefix")).WithFilter(Redirect(new() { Path = ReplacePrefix("/replacement-prefix"), StatusCode = 302 })),
            Rule(Prefix("/full")).WithFilter(Redirect(new() { Path = ReplaceFull("/full-path-replacement"), StatusCode = 302 })),
            Rule(Prefix("/path-and-host"))
                .WithFilter(Redirect(new() { Hostname = "example.org", Path = ReplacePrefix("/replacement-prefix"), StatusCode = 302 })))]);
        Assert.Equal(expected, table.RouteTo(Request(request, host: "echo:80")));
    }

    [Fact]
    public void HeaderEditsChainRouteLevelThenBackendLevel()
    {
        var first = HeaderEdits.From(new HTTPHeaderFilter { Set = { new HTTPHeader { Name = "a", Value = "1" } } });
        var second = HeaderEdits.From(new HTTPHeaderFilter { Remove = { "a" } });
        var headers = new HeaderDictionary();
        first.Then(second).ApplyTo(headers);
        Assert.False(headers.ContainsKey("a"));
        Assert.Same(first, first.Then(HeaderEdits.Empty));
    }
}

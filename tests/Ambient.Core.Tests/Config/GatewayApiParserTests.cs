using Ambient.Config.Yaml;
using Ambient.Core.Config;
using Ambient.Core.Protos.Waypoint;

namespace Ambient.Core.Tests.Config;

// Gateway and HTTPRoute as the Gateway API CRDs (gateway.networking.k8s.io/v1) accept, default and refuse them. The
// manifests follow the API's own examples (site-src/guides: http-routing, traffic-splitting, http-redirect-rewrite,
// http-header-modifier, http-request-mirroring, http-timeouts) and the mesh (GAMMA) profile's Service parentRefs.
public class GatewayApiParserTests
{
    private const string File = "/cfg/routes.yaml";

    private const string Gateways = """
        apiVersion: gateway.networking.k8s.io/v1
        kind: Gateway
        metadata: {name: waypoint, namespace: shop, labels: {istio.io/waypoint-for: service}}
        spec:
          gatewayClassName: istio-waypoint
          listeners: [{name: mesh, port: 15008, protocol: HBONE}]
        ---
        apiVersion: gateway.networking.k8s.io/v1beta1
        kind: Gateway
        metadata: {name: edge}
        spec:
          gatewayClassName: other
          listeners:
            - name: http
              port: 80
              protocol: HTTP
            - name: vendor
              port: 8443
              protocol: example.com/special
        """;

    [Fact]
    public void WaypointGatewayIsParsed()
    {
        var result = ManifestParser.Parse(File, Gateways);

        Assert.Empty(result.Errors);
        var waypoint = Assert.IsType<GatewayResource>(result.Resources[0]);
        Assert.Equal("Gateway/shop/waypoint", waypoint.Key);
        Assert.True(waypoint.IsWaypoint);
        Assert.Equal("service", waypoint.Metadata.Label("istio.io/waypoint-for"));
        Assert.Equal(new GatewayListener("mesh", 15008, "HBONE"), Assert.Single(waypoint.Listeners));
        var edge = Assert.IsType<GatewayResource>(result.Resources[1]);
        Assert.False(edge.IsWaypoint);
        Assert.Equal("gateway.networking.k8s.io/v1beta1", edge.ApiVersion);
        Assert.Equal(new[] { new GatewayListener("http", 80, "HTTP"), new GatewayListener("vendor", 8443, "example.com/special") }, edge.Listeners);
        // Records compare by value: an unchanged file yields equal resources.
        Assert.Equal(result.Resources, ManifestParser.Parse(File, Gateways).Resources);
    }

    public static TheoryData<string, int, string, string> BadGateways => new()
    {
        { "spec:\n  listeners: [{name: mesh, port: 15008, protocol: HBONE}]", 5, "spec.gatewayClassName", "Required value" },
        { "spec:\n  gatewayClassName: istio-waypoint", 5, "spec.listeners", "Required value" },
        { "spec:\n  gatewayClassName: istio-waypoint\n  listeners:\n    - {name: mesh, port: 15008, protocol: HBONE}\n    - {name: mesh, port: 15009, protocol: HBONE}", 8, "spec.listeners[1].name", "Duplicate value: \"mesh\"" },
        { "spec:\n  gatewayClassName: istio-waypoint\n  listeners:\n    - {name: Mesh, port: 15008, protocol: HBONE}", 7, "spec.listeners[0].name", "Invalid value: \"Mesh\"" },
        { "spec:\n  gatewayClassName: istio-waypoint\n  listeners:\n    - {name: mesh, port: 0, protocol: HBONE}", 7, "spec.listeners[0].port", "must be between 1 and 65535" },
        { "spec:\n  gatewayClassName: istio-waypoint\n  listeners:\n    - {name: mesh, port: 65536, protocol: HBONE}", 7, "spec.listeners[0].port", "must be between 1 and 65535" },
        { "spec:\n  gatewayClassName: istio-waypoint\n  listeners:\n    - {name: mesh, port: 15008}", 7, "spec.listeners[0].protocol", "Required value" },
        { "spec:\n  gatewayClassName: istio-waypoint\n  listeners:\n    - {name: mesh, port: 15008, protocol: \"\"}", 7, "spec.listeners[0].protocol", "Required value" },
        { "spec:\n  gatewayClassName: istio-waypoint\n  listeners:\n    - {name: a, port: 15008, protocol: HBONE}\n    - {name: b, port: 15008, protocol: HBONE}", 8, "spec.listeners", "Combination of port, protocol and hostname must be unique for each listener" },
        { "spec:\n  gatewayClassName: istio-waypoint\n  listeners:\n    - {name: a, port: 15008, protocol: HBONE, hostname: \"1.2.3.4\"}", 7, "spec.listeners[0].hostname", "IPs are not allowed" },
    };

    [Theory]
    [MemberData(nameof(BadGateways))]
    public void BadGatewaysAreRejectedWithLineAndField(string spec, int line, string field, string message)
    {
        var result = ManifestParser.Parse(File, "apiVersion: gateway.networking.k8s.io/v1\nkind: Gateway\nmetadata: {name: waypoint, namespace: shop}\n" + spec);

        Assert.Empty(result.Resources);
        AssertError(result, line, field, message);
    }

    [Fact]
    public void GatewayOfAnotherApiVersionIsRejected()
    {
        var result = ManifestParser.Parse(File, "apiVersion: gateway.networking.k8s.io/v2\nkind: Gateway\nmetadata: {name: w}\nspec:\n  gatewayClassName: c\n  listeners: [{name: a, port: 1, protocol: HTTP}]\n");

        AssertError(result, 1, "apiVersion",
            "Gateway is served by apiVersion \"gateway.networking.k8s.io/v1\" or \"gateway.networking.k8s.io/v1beta1\"");
    }

    private const string FullRoute = """
        apiVersion: gateway.networking.k8s.io/v1
        kind: HTTPRoute
        metadata:
          name: bar-route
          namespace: shop
          creationTimestamp: "2024-01-02T03:04:05.250Z"
          generation: 7
        spec:
          parentRefs:
          - name: example-gateway
            sectionName: mesh
          - group: ""
            kind: Service
            name: reviews
            port: 9080
          hostnames:
          - "bar.example.com"
          - "*.example.org"
          rules:
          - name: canary
            matches:
            - path: {type: Exact, value: /login}
              headers:
              - type: Exact
                name: Env
                value: canary
              - type: RegularExpression
                name: x-version
                value: "v[0-9]+"
              queryParams:
              - name: Debug
                value: "1"
              - type: RegularExpression
                name: q
                value: "^a.*"
              method: POST
            - headers: [{name: x-any, value: "yes"}]
            filters:
            - type: RequestHeaderModifier
              requestHeaderModifier:
                set: [{name: x-set, value: s}]
                add: [{name: x-add, value: a}]
                remove: [x-remove]
            - type: ResponseHeaderModifier
              responseHeaderModifier:
                add: [{name: x-resp, value: r}]
            - type: RequestMirror
              requestMirror:
                backendRef: {name: mirror-svc, port: 8080}
                percent: 25
            - type: RequestMirror
              requestMirror:
                backendRef: {name: mirror2, namespace: other, port: 8081}
                fraction: {numerator: 1, denominator: 3}
            - type: URLRewrite
              urlRewrite:
                hostname: rewritten.example.com
                path: {type: ReplaceFullPath, replaceFullPath: /new}
            backendRefs:
            - name: bar-svc-canary
              port: 8080
              weight: 90
              filters:
              - type: ResponseHeaderModifier
                responseHeaderModifier:
                  set: [{name: x-backend, value: canary}]
            - name: bar-svc
              namespace: other
              port: 8080
              weight: 0
            - group: example.com
              kind: Bucket
              name: static
            timeouts: {request: 10s, backendRequest: 500ms}
            retry: {codes: [500, 502], attempts: 3, backoff: 1h2m}
          - matches:
            - path: {type: PathPrefix, value: /old}
            filters:
            - type: RequestRedirect
              requestRedirect:
                scheme: https
                hostname: new.example.com
                port: 8443
                statusCode: 301
                path: {type: ReplacePrefixMatch, replacePrefixMatch: ""}
          - backendRefs:
            - name: default-svc
              port: 80
            timeouts: {request: 0s}
        """;

    [Fact]
    public void EveryFieldOfAnHttpRouteIsParsedWithDefaults()
    {
        var result = ManifestParser.Parse(File, FullRoute);

        Assert.Empty(result.Errors);
        var route = Assert.IsType<HttpRouteResource>(Assert.Single(result.Resources));
        Assert.Equal("HTTPRoute/shop/bar-route", route.Key);
        var expected = new HTTPRoute
        {
            Namespace = "shop",
            Name = "bar-route",
            CreationTimestampMs = new DateTimeOffset(2024, 1, 2, 3, 4, 5, 250, TimeSpan.Zero).ToUnixTimeMilliseconds(),
            Generation = 7,
            ParentRefs =
            {
                new ParentReference { Group = "gateway.networking.k8s.io", Kind = "Gateway", Namespace = "shop", Name = "example-gateway", SectionName = "mesh" },
                new ParentReference { Group = "", Kind = "Service", Namespace = "shop", Name = "reviews", Port = 9080 },
            },
            Hostnames = { "bar.example.com", "*.example.org" },
            Rules =
            {
                new HTTPRouteRule
                {
                    Name = "canary",
                    Matches =
                    {
                        new HTTPRouteMatch
                        {
                            Path = new HTTPPathMatch { Type = PathMatchType.Exact, Value = "/login" },
                            Headers =
                            {
                                new HTTPHeaderMatch { Type = HeaderMatchType.HeaderExact, Name = "env", Value = "canary" },
                                new HTTPHeaderMatch { Type = HeaderMatchType.HeaderRegularExpression, Name = "x-version", Value = "v[0-9]+" },
                            },
                            QueryParams =
                            {
                                new HTTPQueryParamMatch { Type = HeaderMatchType.HeaderExact, Name = "Debug", Value = "1" },
                                new HTTPQueryParamMatch { Type = HeaderMatchType.HeaderRegularExpression, Name = "q", Value = "^a.*" },
                            },
                            Method = "POST",
                        },
                        new HTTPRouteMatch
                        {
                            Path = new HTTPPathMatch { Type = PathMatchType.PathPrefix, Value = "/" },
                            Headers = { new HTTPHeaderMatch { Type = HeaderMatchType.HeaderExact, Name = "x-any", Value = "yes" } },
                        },
                    },
                    Filters =
                    {
                        new HTTPRouteFilter
                        {
                            Type = HTTPRouteFilterType.RequestHeaderModifier,
                            RequestHeaderModifier = new HTTPHeaderFilter
                            {
                                Set = { new HTTPHeader { Name = "x-set", Value = "s" } },
                                Add = { new HTTPHeader { Name = "x-add", Value = "a" } },
                                Remove = { "x-remove" },
                            },
                        },
                        new HTTPRouteFilter
                        {
                            Type = HTTPRouteFilterType.ResponseHeaderModifier,
                            ResponseHeaderModifier = new HTTPHeaderFilter { Add = { new HTTPHeader { Name = "x-resp", Value = "r" } } },
                        },
                        new HTTPRouteFilter
                        {
                            Type = HTTPRouteFilterType.RequestMirror,
                            RequestMirror = new HTTPRequestMirrorFilter
                            {
                                BackendRef = new BackendRef { Group = "", Kind = "Service", Namespace = "shop", Name = "mirror-svc", Port = 8080 },
                                Percent = 25,
                            },
                        },
                        new HTTPRouteFilter
                        {
                            Type = HTTPRouteFilterType.RequestMirror,
                            RequestMirror = new HTTPRequestMirrorFilter
                            {
                                BackendRef = new BackendRef { Group = "", Kind = "Service", Namespace = "other", Name = "mirror2", Port = 8081 },
                                Fraction = new Fraction { Numerator = 1, Denominator = 3 },
                            },
                        },
                        new HTTPRouteFilter
                        {
                            Type = HTTPRouteFilterType.UrlRewrite,
                            UrlRewrite = new HTTPURLRewriteFilter
                            {
                                Hostname = "rewritten.example.com",
                                Path = new HTTPPathModifier { Type = PathModifierType.ReplaceFullPath, ReplaceFullPath = "/new" },
                            },
                        },
                    },
                    BackendRefs =
                    {
                        new HTTPBackendRef
                        {
                            BackendRef = new BackendRef { Group = "", Kind = "Service", Namespace = "shop", Name = "bar-svc-canary", Port = 8080 },
                            Weight = 90,
                            Filters =
                            {
                                new HTTPRouteFilter
                                {
                                    Type = HTTPRouteFilterType.ResponseHeaderModifier,
                                    ResponseHeaderModifier = new HTTPHeaderFilter { Set = { new HTTPHeader { Name = "x-backend", Value = "canary" } } },
                                },
                            },
                        },
                        new HTTPBackendRef
                        {
                            BackendRef = new BackendRef { Group = "", Kind = "Service", Namespace = "other", Name = "bar-svc", Port = 8080 },
                            Weight = 0,
                        },
                        new HTTPBackendRef
                        {
                            BackendRef = new BackendRef { Group = "example.com", Kind = "Bucket", Namespace = "shop", Name = "static" },
                            Weight = 1,
                            InvalidReason = "InvalidKind",
                        },
                    },
                    Timeouts = new HTTPRouteTimeouts { RequestMs = 10_000, BackendRequestMs = 500 },
                    Retry = new HTTPRouteRetry { Codes = { 500, 502 }, Attempts = 3, BackoffMs = 3_720_000 },
                },
                new HTTPRouteRule
                {
                    Matches = { new HTTPRouteMatch { Path = new HTTPPathMatch { Type = PathMatchType.PathPrefix, Value = "/old" } } },
                    Filters =
                    {
                        new HTTPRouteFilter
                        {
                            Type = HTTPRouteFilterType.RequestRedirect,
                            RequestRedirect = new HTTPRequestRedirectFilter
                            {
                                Scheme = "https",
                                Hostname = "new.example.com",
                                Port = 8443,
                                StatusCode = 301,
                                Path = new HTTPPathModifier { Type = PathModifierType.ReplacePrefixMatch, ReplacePrefixMatch = "" },
                            },
                        },
                    },
                },
                new HTTPRouteRule
                {
                    Matches = { new HTTPRouteMatch { Path = new HTTPPathMatch { Type = PathMatchType.PathPrefix, Value = "/" } } },
                    BackendRefs =
                    {
                        new HTTPBackendRef { BackendRef = new BackendRef { Group = "", Kind = "Service", Namespace = "shop", Name = "default-svc", Port = 80 }, Weight = 1 },
                    },
                    Timeouts = new HTTPRouteTimeouts { RequestMs = 0 },
                },
            },
        };
        Assert.Equal(expected, route.Spec);
        // "0s" is kept as an explicit zero (timeout disabled), not dropped as absent.
        Assert.True(route.Spec.Rules[2].Timeouts.HasRequestMs);
        Assert.False(route.Spec.Rules[2].Timeouts.HasBackendRequestMs);
        // Records compare by value, so an unchanged file yields an equal resource (no new generation).
        Assert.Equal(route, ManifestParser.Parse(File, FullRoute).Resources[0]);
        // And the spec survives the wire unchanged.
        Assert.Equal(expected, HTTPRoute.Parser.ParseFrom(Google.Protobuf.MessageExtensions.ToByteArray(route.Spec)));
    }

    [Fact]
    public void DefaultsAreAppliedAsTheApiDoes()
    {
        var result = ManifestParser.Parse(File, """
            apiVersion: gateway.networking.k8s.io/v1beta1
            kind: HTTPRoute
            metadata: {name: minimal}
            spec:
              parentRefs: [{name: waypoint}, {kind: Service, group: "", name: echo, namespace: demo}]
              rules:
              - matches: [{path: {value: /v1}}, {path: {type: Exact}}, {method: GET}]
                backendRefs: [{name: echo, port: 80}]
                filters:
                - type: RequestRedirect
                  requestRedirect: {hostname: example.com}
              - backendRefs: [{name: echo, port: 80, kind: Service, group: ""}]
            """);

        var errors = string.Join("\n", result.Errors);
        // A RequestRedirect next to backendRefs is refused: take it out and look at the defaults.
        Assert.Contains("RequestRedirect filter must not be used together with backendRefs", errors, StringComparison.Ordinal);

        result = ManifestParser.Parse(File, """
            apiVersion: gateway.networking.k8s.io/v1beta1
            kind: HTTPRoute
            metadata: {name: minimal}
            spec:
              parentRefs: [{name: waypoint}, {kind: Service, group: "", name: echo, namespace: demo}]
              rules:
              - matches: [{path: {value: /v1}}, {path: {type: Exact}}, {method: GET}]
                backendRefs: [{name: echo, port: 80}]
              - filters:
                - type: RequestRedirect
                  requestRedirect: {hostname: example.com}
            """);
        Assert.Empty(result.Errors);
        var spec = Assert.IsType<HttpRouteResource>(Assert.Single(result.Resources)).Spec;
        Assert.Equal("default", spec.Namespace);
        Assert.Equal(0, spec.CreationTimestampMs);
        Assert.Equal(0, spec.Generation);
        Assert.Empty(spec.Hostnames);
        Assert.Equal(new ParentReference { Group = "gateway.networking.k8s.io", Kind = "Gateway", Namespace = "default", Name = "waypoint" }, spec.ParentRefs[0]);
        Assert.Equal(new ParentReference { Group = "", Kind = "Service", Namespace = "demo", Name = "echo" }, spec.ParentRefs[1]);
        var matches = spec.Rules[0].Matches;
        Assert.Equal(new HTTPPathMatch { Type = PathMatchType.PathPrefix, Value = "/v1" }, matches[0].Path);
        Assert.Equal(new HTTPPathMatch { Type = PathMatchType.Exact, Value = "/" }, matches[1].Path);
        Assert.Equal(new HTTPPathMatch { Type = PathMatchType.PathPrefix, Value = "/" }, matches[2].Path);
        Assert.Equal("GET", matches[2].Method);
        Assert.Equal(new HTTPBackendRef { BackendRef = new BackendRef { Group = "", Kind = "Service", Namespace = "default", Name = "echo", Port = 80 }, Weight = 1 },
            Assert.Single(spec.Rules[0].BackendRefs));
        Assert.Null(spec.Rules[0].Timeouts);
        Assert.Null(spec.Rules[0].Retry);
        // A rule without matches matches every request; a redirect without statusCode answers 302.
        Assert.Equal(new HTTPPathMatch { Type = PathMatchType.PathPrefix, Value = "/" }, Assert.Single(spec.Rules[1].Matches).Path);
        var redirect = Assert.Single(spec.Rules[1].Filters).RequestRedirect;
        Assert.Equal(302u, redirect.StatusCode);
        Assert.Equal("", redirect.Scheme);
        Assert.Equal(0u, redirect.Port);
        Assert.Null(redirect.Path);
    }

    [Fact]
    public void RouteWithoutRulesGetsTheDefaultRule()
    {
        var result = ManifestParser.Parse(File, "apiVersion: gateway.networking.k8s.io/v1\nkind: HTTPRoute\nmetadata: {name: r}\nspec:\n  parentRefs: [{name: w}]\n");

        Assert.Empty(result.Errors);
        var rule = Assert.Single(((HttpRouteResource)result.Resources[0]).Spec.Rules);
        Assert.Equal(new HTTPRouteRule { Matches = { new HTTPRouteMatch { Path = new HTTPPathMatch { Type = PathMatchType.PathPrefix, Value = "/" } } } }, rule);
    }

    [Fact]
    public void ErrorsNameTheLineOfTheOffendingNode()
    {
        var result = ManifestParser.Parse(File, """
            apiVersion: gateway.networking.k8s.io/v1
            kind: HTTPRoute
            metadata: {name: r, namespace: shop}
            spec:
              rules:
              - matches:
                - path:
                    type: PathPrefix
                    value: /a//b
                backendRefs:
                - name: echo
                  port: 80
                  weight: 1000001
                timeouts:
                  request: 10
            """);

        Assert.Empty(result.Resources);
        Assert.Equal(3, result.Errors.Length);
        AssertError(result, 9, "spec.rules[0].matches[0].path.value", "Invalid value: \"/a//b\": must not contain '//' when type one of ['Exact', 'PathPrefix']");
        AssertError(result, 13, "spec.rules[0].backendRefs[0].weight", "Invalid value: 1000001: must be between 0 and 1000000, inclusive");
        AssertError(result, 15, "spec.rules[0].timeouts.request", "must be a string");
        Assert.Equal("/cfg/routes.yaml:9: spec.rules[0].matches[0].path.value: Invalid value: \"/a//b\": must not contain '//' when type one of ['Exact', 'PathPrefix']",
            result.Errors[0].ToString());
    }

    // Each rules snippet starts on line 9 of the document Route() builds; flow style keeps every node on that line.
    public static TheoryData<string, string, string> BadRules => new()
    {
        // HTTPPathMatch CEL rules.
        { "- matches: [{path: {type: Exact, value: foo}}]", "spec.rules[0].matches[0].path.value", "value must be an absolute path and start with '/'" },
        { "- matches: [{path: {value: /a/./b}}]", "spec.rules[0].matches[0].path.value", "must not contain '/./'" },
        { "- matches: [{path: {value: /a/../b}}]", "spec.rules[0].matches[0].path.value", "must not contain '/../'" },
        { "- matches: [{path: {value: /a%2fb}}]", "spec.rules[0].matches[0].path.value", "must not contain '%2f'" },
        { "- matches: [{path: {value: /a%2Fb}}]", "spec.rules[0].matches[0].path.value", "must not contain '%2F'" },
        { "- matches: [{path: {value: \"/a#b\"}}]", "spec.rules[0].matches[0].path.value", "must not contain '#'" },
        { "- matches: [{path: {type: Exact, value: /a/..}}]", "spec.rules[0].matches[0].path.value", "must not end with '/..'" },
        { "- matches: [{path: {type: Exact, value: /a/.}}]", "spec.rules[0].matches[0].path.value", "must not end with '/.'" },
        { "- matches: [{path: {value: \"/a<b\"}}]", "spec.rules[0].matches[0].path.value", "must only contain valid characters" },
        { "- matches: [{path: {value: \"/a b\"}}]", "spec.rules[0].matches[0].path.value", "must only contain valid characters" },
        { "- matches: [{path: {type: Prefix, value: /a}}]", "spec.rules[0].matches[0].path.type", "type must be one of ['Exact', 'PathPrefix', 'RegularExpression']" },
        { "- matches: [{path: {type: RegularExpression, value: \"/(a\"}}]", "spec.rules[0].matches[0].path.value", "not a valid regular expression" },
        { "- matches: [{path: {type: RegularExpression, value: \"/(a)\\\\1\"}}]", "spec.rules[0].matches[0].path.value", "not a valid regular expression" },
        { "- matches: [{path: {type: RegularExpression, value: \"/(?=a)\"}}]", "spec.rules[0].matches[0].path.value", "not a valid regular expression" },
        // Headers, query parameters, method.
        { "- matches: [{headers: [{name: \":method\", value: GET}]}]", "spec.rules[0].matches[0].headers[0].name", "must be an HTTP header name" },
        { "- matches: [{headers: [{name: a, value: x}, {name: a, value: z}]}]", "spec.rules[0].matches[0].headers[1].name", "Duplicate value: \"a\"" },
        { "- matches: [{headers: [{name: a}]}]", "spec.rules[0].matches[0].headers[0].value", "Required value" },
        { "- matches: [{headers: [{name: a, value: x, type: Prefix}]}]", "spec.rules[0].matches[0].headers[0].type", "supported values: \"Exact\", \"RegularExpression\"" },
        { "- matches: [{headers: [{name: a, value: \"[\", type: RegularExpression}]}]", "spec.rules[0].matches[0].headers[0].value", "not a valid regular expression" },
        { "- matches: [{queryParams: [{name: q, value: x}, {name: q, value: z}]}]", "spec.rules[0].matches[0].queryParams[1].name", "Duplicate value: \"q\"" },
        { "- matches: [{queryParams: [{name: q, value: \"(\", type: RegularExpression}]}]", "spec.rules[0].matches[0].queryParams[0].value", "not a valid regular expression" },
        { "- matches: [{method: get}]", "spec.rules[0].matches[0].method", "supported values: \"GET\"" },
        // Backends.
        { "- backendRefs: [{name: a, port: 80, weight: -1}]", "spec.rules[0].backendRefs[0].weight", "must be between 0 and 1000000" },
        { "- backendRefs: [{name: a, port: 80, weight: 1000001}]", "spec.rules[0].backendRefs[0].weight", "must be between 0 and 1000000" },
        { "- backendRefs: [{name: a}]", "spec.rules[0].backendRefs[0]", "Must have port for Service reference" },
        { "- backendRefs: [{port: 80}]", "spec.rules[0].backendRefs[0].name", "Required value" },
        { "- backendRefs: [{name: a, port: 0}]", "spec.rules[0].backendRefs[0].port", "must be between 1 and 65535" },
        { "- backendRefs: [{name: a, port: 80, namespace: Other}]", "spec.rules[0].backendRefs[0].namespace", "RFC 1123 label" },
        // Filters: type and field agree, known types only, repetition and combination rules.
        { "- filters: [{type: RequestHeaderModifier, responseHeaderModifier: {add: [{name: a, value: b}]}}]", "spec.rules[0].filters[0].responseHeaderModifier", "filter.responseHeaderModifier must be nil if the filter.type is not ResponseHeaderModifier" },
        { "- filters: [{type: RequestHeaderModifier, responseHeaderModifier: {add: [{name: a, value: b}]}}]", "spec.rules[0].filters[0].requestHeaderModifier", "filter.requestHeaderModifier must be specified for RequestHeaderModifier filter.type" },
        { "- filters: [{type: URLRewrite}]", "spec.rules[0].filters[0].urlRewrite", "filter.urlRewrite must be specified for URLRewrite filter.type" },
        { "- filters: [{type: ExtensionRef, extensionRef: {group: example.com, kind: Foo, name: bar}}]", "spec.rules[0].filters[0].type", "\"ExtensionRef\": the ExtensionRef filter is not supported" },
        { "- filters: [{type: CORS, cors: {allowOrigins: [\"*\"]}}]", "spec.rules[0].filters[0].type", "\"CORS\": the CORS filter is not supported" },
        { "- filters: [{type: Magic}]", "spec.rules[0].filters[0].type", "Unsupported value: \"Magic\"" },
        { "- filters: [{requestHeaderModifier: {add: [{name: a, value: b}]}}]", "spec.rules[0].filters[0].type", "Required value" },
        { "- filters: [{type: RequestRedirect, requestRedirect: {port: 8080}}, {type: URLRewrite, urlRewrite: {hostname: a.b}}]", "spec.rules[0].filters", "May specify either httpRouteFilterRequestRedirect or httpRouteFilterRequestRewrite, but not both" },
        { "- filters: [{type: RequestHeaderModifier, requestHeaderModifier: {remove: [a]}}, {type: RequestHeaderModifier, requestHeaderModifier: {remove: [b]}}]", "spec.rules[0].filters", "RequestHeaderModifier filter cannot be repeated" },
        { "- filters: [{type: URLRewrite, urlRewrite: {hostname: a.b}}, {type: URLRewrite, urlRewrite: {hostname: c.d}}]", "spec.rules[0].filters", "URLRewrite filter cannot be repeated" },
        { "- backendRefs: [{name: a, port: 80, filters: [{type: RequestRedirect, requestRedirect: {port: 1}}, {type: URLRewrite, urlRewrite: {hostname: a.b}}]}]", "spec.rules[0].backendRefs[0].filters", "but not both" },
        { "- {backendRefs: [{name: a, port: 80}], filters: [{type: RequestRedirect, requestRedirect: {port: 1}}]}", "spec.rules[0]", "RequestRedirect filter must not be used together with backendRefs" },
        // Header modifiers.
        { "- filters: [{type: RequestHeaderModifier, requestHeaderModifier: {set: [{name: a, value: x}, {name: a, value: z}]}}]", "spec.rules[0].filters[0].requestHeaderModifier.set[1].name", "Duplicate value: \"a\"" },
        { "- filters: [{type: ResponseHeaderModifier, responseHeaderModifier: {add: [{name: \"a b\", value: x}]}}]", "spec.rules[0].filters[0].responseHeaderModifier.add[0].name", "must be an HTTP header name" },
        { "- filters: [{type: RequestHeaderModifier, requestHeaderModifier: {remove: [a, a]}}]", "spec.rules[0].filters[0].requestHeaderModifier.remove[1]", "Duplicate value: \"a\"" },
        // Redirect and rewrite.
        { "- filters: [{type: RequestRedirect, requestRedirect: {statusCode: 304}}]", "spec.rules[0].filters[0].requestRedirect.statusCode", "Unsupported value: 304" },
        { "- filters: [{type: RequestRedirect, requestRedirect: {scheme: ftp}}]", "spec.rules[0].filters[0].requestRedirect.scheme", "supported values: \"http\", \"https\"" },
        { "- filters: [{type: RequestRedirect, requestRedirect: {port: 70000}}]", "spec.rules[0].filters[0].requestRedirect.port", "must be between 1 and 65535" },
        { "- filters: [{type: RequestRedirect, requestRedirect: {hostname: \"*.example.com\"}}]", "spec.rules[0].filters[0].requestRedirect.hostname", "a wildcard is not allowed" },
        { "- filters: [{type: URLRewrite, urlRewrite: {path: {type: ReplaceFullPath, replacePrefixMatch: /x}}}]", "spec.rules[0].filters[0].urlRewrite.path", "replaceFullPath must be specified when type is set to 'ReplaceFullPath'" },
        { "- filters: [{type: URLRewrite, urlRewrite: {path: {type: ReplaceFullPath, replacePrefixMatch: /x}}}]", "spec.rules[0].filters[0].urlRewrite.path", "type must be 'ReplacePrefixMatch' when replacePrefixMatch is set" },
        { "- filters: [{type: URLRewrite, urlRewrite: {path: {type: Prefix}}}]", "spec.rules[0].filters[0].urlRewrite.path.type", "supported values: \"ReplaceFullPath\", \"ReplacePrefixMatch\"" },
        { "- {matches: [{path: {type: Exact, value: /a}}], filters: [{type: URLRewrite, urlRewrite: {path: {type: ReplacePrefixMatch, replacePrefixMatch: /b}}}]}", "spec.rules[0]", "exactly one PathPrefix match must be specified" },
        { "- {matches: [{path: {value: /a}}, {path: {value: /c}}], filters: [{type: RequestRedirect, requestRedirect: {path: {type: ReplacePrefixMatch, replacePrefixMatch: /b}}}]}", "spec.rules[0]", "exactly one PathPrefix match must be specified" },
        { "- {matches: [{path: {type: RegularExpression, value: /a}}], backendRefs: [{name: a, port: 80, filters: [{type: URLRewrite, urlRewrite: {path: {type: ReplacePrefixMatch, replacePrefixMatch: /b}}}]}]}", "spec.rules[0]", "within backendRefs, when using" },
        // Mirror.
        { "- filters: [{type: RequestMirror, requestMirror: {backendRef: {name: m, port: 80}, percent: 101}}]", "spec.rules[0].filters[0].requestMirror.percent", "must be between 0 and 100" },
        { "- filters: [{type: RequestMirror, requestMirror: {backendRef: {name: m, port: 80}, percent: 5, fraction: {numerator: 1}}}]", "spec.rules[0].filters[0].requestMirror", "Only one of percent or fraction may be specified" },
        { "- filters: [{type: RequestMirror, requestMirror: {backendRef: {name: m, port: 80}, fraction: {numerator: 4, denominator: 3}}}]", "spec.rules[0].filters[0].requestMirror.fraction", "numerator must be less than or equal to denominator" },
        { "- filters: [{type: RequestMirror, requestMirror: {backendRef: {name: m, port: 80}, fraction: {numerator: 0, denominator: 0}}}]", "spec.rules[0].filters[0].requestMirror.fraction.denominator", "must be between 1 and" },
        { "- filters: [{type: RequestMirror, requestMirror: {percent: 5}}]", "spec.rules[0].filters[0].requestMirror.backendRef", "Required value" },
        // Timeouts and retry.
        { "- timeouts: {request: 10}", "spec.rules[0].timeouts.request", "must be a string" },
        { "- timeouts: {request: 1d}", "spec.rules[0].timeouts.request", "must be a Gateway API duration" },
        { "- timeouts: {request: 1.5s}", "spec.rules[0].timeouts.request", "must be a Gateway API duration" },
        { "- timeouts: {request: 123456s}", "spec.rules[0].timeouts.request", "must be a Gateway API duration" },
        { "- timeouts: {backendRequest: -1s}", "spec.rules[0].timeouts.backendRequest", "must be a Gateway API duration" },
        { "- timeouts: {request: 1s, backendRequest: 2s}", "spec.rules[0].timeouts", "backendRequest timeout cannot be longer than request timeout" },
        { "- retry: {codes: [399]}", "spec.rules[0].retry.codes[0]", "must be between 400 and 599" },
        { "- retry: {codes: [500, 600]}", "spec.rules[0].retry.codes[1]", "must be between 400 and 599" },
        { "- retry: {codes: [500, 500]}", "spec.rules[0].retry.codes[1]", "Duplicate value: 500" },
        { "- retry: {attempts: -1}", "spec.rules[0].retry.attempts", "must be between 0 and" },
        { "- retry: {backoff: soon}", "spec.rules[0].retry.backoff", "must be a Gateway API duration" },
        // Rule names.
        { "- name: Bad_Name", "spec.rules[0].name", "RFC 1123 subdomain" },
        { "- name: a\n  - name: a", "spec.rules", "rule name must be unique within the route" },
    };

    [Theory]
    [MemberData(nameof(BadRules))]
    public void BadRulesAreRejectedWithLineAndField(string rules, string field, string message)
    {
        var result = ManifestParser.Parse(File, Route(rules));

        Assert.Empty(result.Resources);
        var line = field == "spec.rules" ? 10 : 9;
        AssertError(result, line, field, message);
    }

    private static string Route(string rules) =>
        "apiVersion: gateway.networking.k8s.io/v1\nkind: HTTPRoute\nmetadata:\n  name: r\n  namespace: shop\nspec:\n  parentRefs: [{name: waypoint}]\n  rules:\n  "
        + rules + "\n";

    public static TheoryData<string, int, string, string> BadRouteFields => new()
    {
        { "  hostnames: [\"1.2.3.4\"]", 7, "spec.hostnames[0]", "IPs are not allowed" },
        { "  hostnames: [Example.com]", 7, "spec.hostnames[0]", "must be an RFC 1123 hostname" },
        { "  hostnames: [\"*\"]", 7, "spec.hostnames[0]", "must be an RFC 1123 hostname" },
        { "  hostnames: [\"a.*.com\"]", 7, "spec.hostnames[0]", "must be an RFC 1123 hostname" },
        { "  parentRefs: [{kind: Service}]", 7, "spec.parentRefs[0].name", "Required value" },
        { "  parentRefs: [{name: w, port: 0}]", 7, "spec.parentRefs[0].port", "must be between 1 and 65535" },
        { "  parentRefs: [{name: w, kind: \"1x\"}]", 7, "spec.parentRefs[0].kind", "must be a kind name" },
        { "  parentRefs: [{name: w}, {name: w}]", 7, "spec.parentRefs", "sectionName or port must be unique when parentRefs includes 2 or more references to the same parent" },
        { "  parentRefs: [{name: w, sectionName: a}, {name: w}]", 7, "spec.parentRefs", "sectionName or port must be specified when parentRefs includes 2 or more references to the same parent" },
        { "  parentRefs: [{name: w, sectionName: a}, {name: w, sectionName: a}]", 7, "spec.parentRefs", "must be unique" },
        { "  parentRefs: [{name: w, port: 80}, {name: w, port: 80}]", 7, "spec.parentRefs", "must be unique" },
    };

    [Theory]
    [MemberData(nameof(BadRouteFields))]
    public void BadRouteFieldsAreRejectedWithLineAndField(string specBody, int line, string field, string message)
    {
        var result = ManifestParser.Parse(File, "apiVersion: gateway.networking.k8s.io/v1\nkind: HTTPRoute\nmetadata:\n  name: r\n  namespace: shop\nspec:\n" + specBody + "\n");

        Assert.Empty(result.Resources);
        AssertError(result, line, field, message);
    }

    [Fact]
    public void DistinctReferencesToOneParentAreAccepted()
    {
        var result = ManifestParser.Parse(File, "apiVersion: gateway.networking.k8s.io/v1\nkind: HTTPRoute\nmetadata: {name: r}\nspec:\n"
            + "  parentRefs: [{name: w, sectionName: a}, {name: w, sectionName: b}, {name: w, namespace: other}, {name: w, kind: Service, group: \"\"}]\n");

        Assert.Empty(result.Errors);
        Assert.Equal(4, ((HttpRouteResource)result.Resources[0]).Spec.ParentRefs.Count);
    }

    [Fact]
    public void BadMetadataTimestampIsRejected()
    {
        var result = ManifestParser.Parse(File, "apiVersion: gateway.networking.k8s.io/v1\nkind: HTTPRoute\nmetadata:\n  name: r\n  creationTimestamp: yesterday\nspec: {}\n");

        AssertError(result, 5, "metadata.creationTimestamp", "must be an RFC 3339 timestamp");
    }

    [Fact]
    public void OffsetTimestampsAreConvertedToUtcMilliseconds()
    {
        var result = ManifestParser.Parse(File, "apiVersion: gateway.networking.k8s.io/v1\nkind: HTTPRoute\nmetadata:\n  name: r\n  creationTimestamp: 2024-01-02T05:04:05+02:00\nspec: {}\n");

        Assert.Empty(result.Errors);
        Assert.Equal(new DateTimeOffset(2024, 1, 2, 3, 4, 5, TimeSpan.Zero).ToUnixTimeMilliseconds(), ((HttpRouteResource)result.Resources[0]).Spec.CreationTimestampMs);
    }

    [Theory]
    [InlineData("rules", 17, "spec.rules", "Too many: 17: must have at most 16 items")]
    [InlineData("matches", 65, "spec.rules[0].matches", "Too many: 65: must have at most 64 items")]
    [InlineData("backendRefs", 17, "spec.rules[0].backendRefs", "Too many: 17: must have at most 16 items")]
    [InlineData("filters", 17, "spec.rules[0].filters", "Too many: 17: must have at most 16 items")]
    [InlineData("hostnames", 17, "spec.hostnames", "Too many: 17: must have at most 16 items")]
    [InlineData("parentRefs", 33, "spec.parentRefs", "Too many: 33: must have at most 32 items")]
    [InlineData("headers", 17, "spec.rules[0].matches[0].headers", "Too many: 17: must have at most 16 items")]
    [InlineData("totalMatches", 9, "spec.rules", "the total number of matches across all rules in a route must be less than 128")]
    public void ListLimitsAreEnforced(string list, int count, string field, string message)
    {
        string Repeat(Func<int, string> item) => "[" + string.Join(", ", Enumerable.Range(0, count).Select(item)) + "]";
        var spec = list switch
        {
            "rules" => "rules: " + Repeat(i => "{name: r" + i + "}"),
            "matches" => "rules: [{matches: " + Repeat(i => "{path: {value: /m" + i + "}}") + "}]",
            "backendRefs" => "rules: [{backendRefs: " + Repeat(i => "{name: b" + i + ", port: 80}") + "}]",
            "filters" => "rules: [{filters: " + Repeat(i => "{type: RequestMirror, requestMirror: {backendRef: {name: m" + i + ", port: 80}}}") + "}]",
            "hostnames" => "hostnames: " + Repeat(i => "h" + i + ".example.com"),
            "parentRefs" => "parentRefs: " + Repeat(i => "{name: p" + i + "}"),
            "headers" => "rules: [{matches: [{headers: " + Repeat(i => "{name: h" + i + ", value: v}") + "}]}]",
            // Nine rules of 60 matches each: within each rule's limit, over the route's.
            _ => "rules: " + Repeat(_ => "{matches: [" + string.Join(", ", Enumerable.Range(0, 60).Select(m => "{path: {value: /m" + m + "}}")) + "]}"),
        };
        var result = ManifestParser.Parse(File, "apiVersion: gateway.networking.k8s.io/v1\nkind: HTTPRoute\nmetadata: {name: r}\nspec:\n  " + spec + "\n");

        Assert.Empty(result.Resources);
        AssertError(result, 5, field, message);
    }

    [Fact]
    public void HeaderNamesRepeatedInAnotherCaseAreIgnoredAfterTheFirst()
    {
        var result = ManifestParser.Parse(File, Route("- matches: [{headers: [{name: X-Env, value: a}, {name: x-env, value: b}]}]"));

        Assert.Empty(result.Errors);
        var header = Assert.Single(((HttpRouteResource)result.Resources[0]).Spec.Rules[0].Matches[0].Headers);
        Assert.Equal(new HTTPHeaderMatch { Name = "x-env", Value = "a" }, header);
    }

    [Fact]
    public void BackendOfAnotherKindIsKeptAndMarkedInvalid()
    {
        var result = ManifestParser.Parse(File, Route("- backendRefs: [{name: a, port: 80, weight: 3}, {name: b, kind: ServiceImport, group: multicluster.x-k8s.io, port: 80}, {name: c, kind: Pod, port: 80}]"));

        Assert.Empty(result.Errors);
        var backends = ((HttpRouteResource)result.Resources[0]).Spec.Rules[0].BackendRefs;
        Assert.Equal(["", "InvalidKind", "InvalidKind"], backends.Select(b => b.InvalidReason));
        Assert.Equal([3u, 1u, 1u], backends.Select(b => b.Weight));
    }

    [Theory]
    [InlineData("10s", 10_000UL)]
    [InlineData("500ms", 500UL)]
    [InlineData("1h2m", 3_720_000UL)]
    [InlineData("1h1m1s1ms", 3_661_001UL)]
    [InlineData("0s", 0UL)]
    [InlineData("99999ms", 99_999UL)]
    [InlineData("2m30s", 150_000UL)]
    public void DurationsFollowGep2257(string text, ulong ms)
    {
        Assert.Equal(ms, Validation.Duration(text, out var problem));
        Assert.Null(problem);
    }

    [Theory]
    [InlineData("")]
    [InlineData("1")]
    [InlineData("1d")]
    [InlineData("1.5s")]
    [InlineData("100000s")]
    [InlineData("1s1s1s1s1s")]
    [InlineData(" 1s")]
    public void NonDurationsAreRefused(string text)
    {
        Assert.Null(Validation.Duration(text, out var problem));
        Assert.NotNull(problem);
    }

    private static void AssertError(ParseResult result, int line, string field, string message) =>
        ConfigAssert.HasError(result.Errors, File, line, field, message);
}

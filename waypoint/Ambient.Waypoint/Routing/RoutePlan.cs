using Ambient.Core.Protos.Waypoint;
using Ambient.Waypoint.Filters;

namespace Ambient.Waypoint.Routing;

internal enum RouteOutcome
{
    /// <summary>No route matched. <see cref="RoutePlan.ParentHasRoutes"/> tells whether any route was bound to the
    /// target at all; either way the waypoint sends the request to the Service as if there were no HTTPRoute
    /// (Istio's default).</summary>
    NoRoute,

    /// <summary>Forward to <see cref="RoutePlan.Backend"/> after the rewrites and header edits.</summary>
    Forward,

    /// <summary>Answer <see cref="RoutePlan.StatusCode"/> with <see cref="RoutePlan.Location"/>.</summary>
    Redirect,

    /// <summary>Answer <see cref="RoutePlan.StatusCode"/> (500: no valid backend for this request's share).</summary>
    DirectResponse,
}

/// <summary>
/// What the forwarder does with one request, as decided by the route table: a value it applies, so the routing
/// engine never touches sockets or the request itself.
/// <para>
/// Applying it: NoRoute: forward to the addressed Service unchanged. Redirect / DirectResponse: answer
/// StatusCode (with Location for a redirect), after ResponseHeaders. Forward: apply RequestHeaders to the request,
/// then RewrittenHost / RewrittenPath (query kept), send to Backend with RequestTimeout (whole exchange, retries
/// included) and BackendRequestTimeout (each attempt) and Retry; send a copy to each of Mirrors without waiting;
/// apply ResponseHeaders to the upstream response.
/// </para>
/// </summary>
internal readonly struct RoutePlan
{
    public RouteOutcome Outcome { get; init; }

    /// <summary>True when routes were bound to the target, even if none matched this request.</summary>
    public bool ParentHasRoutes { get; init; }

    /// <summary>The rule that matched (null for <see cref="RouteOutcome.NoRoute"/>): route namespace/name and rule
    /// for logs and metrics, timeouts and retries.</summary>
    public CompiledRule? Rule { get; init; }

    /// <summary>The chosen backend for <see cref="RouteOutcome.Forward"/>.</summary>
    public BackendTarget? Backend { get; init; }

    /// <summary>The path to send upstream (URLRewrite), or null to keep the request's path. The query is kept.</summary>
    public string? RewrittenPath { get; init; }

    /// <summary>The Host to send upstream (URLRewrite hostname), or null to keep the request's Host.</summary>
    public string? RewrittenHost { get; init; }

    /// <summary>Request header edits (route level, then the chosen backendRef's); apply before forwarding.</summary>
    public HeaderEdits RequestHeaders { get; init; }

    /// <summary>Response header edits (route level, then the chosen backendRef's); apply to the response, including
    /// the waypoint's own redirect.</summary>
    public HeaderEdits ResponseHeaders { get; init; }

    /// <summary>Redirect or direct-response status code.</summary>
    public int StatusCode { get; init; }

    /// <summary>The redirect's Location header.</summary>
    public string? Location { get; init; }

    /// <summary>The mirrors sampled for this request (empty when none): send a copy of the (rewritten) request to
    /// each and ignore its response.</summary>
    public IReadOnlyList<BackendTarget> Mirrors { get; init; }

    public TimeSpan? RequestTimeout => Rule?.RequestTimeout;

    public TimeSpan? BackendRequestTimeout => Rule?.BackendRequestTimeout;

    public RetryPolicy? Retry => Rule?.Retry;

    internal static RoutePlan NoRoute(bool parentHasRoutes) => new()
    {
        Outcome = RouteOutcome.NoRoute,
        ParentHasRoutes = parentHasRoutes,
        RequestHeaders = HeaderEdits.Empty,
        ResponseHeaders = HeaderEdits.Empty,
        Mirrors = [],
    };

    /// <param name="parentService">The addressed Service when the rule's route is bound to it (GAMMA); null for a
    /// route bound to the waypoint's Gateway.</param>
    internal static RoutePlan For(CompiledRule rule, CompiledMatch match, in RequestFacts request, IRouteRandom random,
        ServiceTarget? parentService = null)
    {
        var matchedPrefix = match.PathType == PathMatchType.PathPrefix ? match.PathValue : null;
        if (rule.Redirect is { } redirect)
        {
            return new RoutePlan
            {
                Outcome = RouteOutcome.Redirect,
                ParentHasRoutes = true,
                Rule = rule,
                StatusCode = redirect.StatusCode == 0 ? 302 : (int)redirect.StatusCode,
                Location = RequestRedirect.Location(redirect, request, matchedPrefix),
                RequestHeaders = rule.RequestHeaders,
                ResponseHeaders = rule.ResponseHeaders,
                Mirrors = [],
            };
        }

        if (rule.Backends.Length == 0 && parentService is { } parent)
        {
            return ToParentService(rule, match, request, random, parent);
        }

        var backend = rule.PickBackend(random);
        if (backend?.Target is null)
        {
            // All weights zero, no backendRefs on a Gateway-bound route, or this request's share belongs to an
            // invalid reference.
            return new RoutePlan
            {
                Outcome = RouteOutcome.DirectResponse,
                ParentHasRoutes = true,
                Rule = rule,
                StatusCode = 500,
                RequestHeaders = rule.RequestHeaders,
                ResponseHeaders = rule.ResponseHeaders,
                Mirrors = [],
            };
        }

        return Forward(rule, matchedPrefix, request, random, backend.Target, backend.RequestHeaders, backend.ResponseHeaders);
    }

    /// <summary>
    /// GAMMA: a rule of a Service-bound route with no backendRefs sends the request on to the parent Service itself,
    /// on the port it was addressed to, with the rule's filters applied. The Gateway API spec's "no backendRefs: 500"
    /// is Gateway semantics; the mesh conformance tests expect the parent: conformance/tests/mesh-frontend.yaml (a
    /// route on Service echo-v2 with only a ResponseHeaderModifier; requests to echo-v2 get 200 from v2 with the
    /// header) and mesh-consumer-route.yaml (the same shape as a consumer route, from which MeshConsumerRoute expects
    /// 200 from the parent with the header). An empty list only: backendRefs that are all invalid or all weight 0
    /// still answer 500, as the spec says (like convertHTTPRoute's weightSum check in Istio's
    /// pilot/pkg/config/kube/gateway/conversion.go). A RequestRedirect rule answers before this is reached.
    /// </summary>
    private static RoutePlan ToParentService(CompiledRule rule, CompiledMatch match, in RequestFacts request,
        IRouteRandom random, ServiceTarget parent)
    {
        var matchedPrefix = match.PathType == PathMatchType.PathPrefix ? match.PathValue : null;
        // One small allocation on this path only: the target's port is the request's, not known when compiling.
        var target = new BackendTarget(parent.Namespace, parent.Name, parent.Port);
        return Forward(rule, matchedPrefix, request, random, target, rule.RequestHeaders, rule.ResponseHeaders);
    }

    private static RoutePlan Forward(CompiledRule rule, string? matchedPrefix, in RequestFacts request, IRouteRandom random,
        BackendTarget target, HeaderEdits requestHeaders, HeaderEdits responseHeaders)
    {
        string? rewrittenPath = null;
        string? rewrittenHost = null;
        if (rule.Rewrite is { } rewrite)
        {
            rewrittenPath = PathModifier.Apply(rewrite.Path, request.Path, matchedPrefix);
            rewrittenHost = rewrite.Hostname.Length > 0 ? rewrite.Hostname : null;
        }

        return new RoutePlan
        {
            Outcome = RouteOutcome.Forward,
            ParentHasRoutes = true,
            Rule = rule,
            Backend = target,
            RewrittenPath = rewrittenPath,
            RewrittenHost = rewrittenHost,
            RequestHeaders = requestHeaders,
            ResponseHeaders = responseHeaders,
            Mirrors = SampleMirrors(rule.Mirrors, random),
        };
    }

    private static IReadOnlyList<BackendTarget> SampleMirrors(MirrorTarget[] mirrors, IRouteRandom random)
    {
        if (mirrors.Length == 0)
        {
            return [];
        }
        List<BackendTarget>? chosen = null;
        foreach (var mirror in mirrors)
        {
            if (mirror.Sample(random))
            {
                (chosen ??= new List<BackendTarget>(mirrors.Length)).Add(mirror.Target);
            }
        }
        return chosen is null ? [] : chosen;
    }
}

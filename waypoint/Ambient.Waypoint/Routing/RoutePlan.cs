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

    internal static RoutePlan For(CompiledRule rule, CompiledMatch match, in RequestFacts request, IRouteRandom random)
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

        var backend = rule.PickBackend(random);
        if (backend?.Target is null)
        {
            // All weights zero, no backendRefs, or this request's share belongs to an invalid reference.
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
            Backend = backend.Target,
            RewrittenPath = rewrittenPath,
            RewrittenHost = rewrittenHost,
            RequestHeaders = backend.RequestHeaders,
            ResponseHeaders = backend.ResponseHeaders,
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

using Ambient.Core.Protos.Waypoint;
using Ambient.Waypoint.Filters;

namespace Ambient.Waypoint.Routing;

/// <summary>A Service backend (a backendRef or a mirror target): where the forwarder sends the request.</summary>
internal sealed record BackendTarget(string Namespace, string Name, int Port);

/// <summary>
/// One backendRef of a rule, with the header edits of its route and its own filters already combined (route level
/// first, then backendRef level) so the request path does no merging.
/// </summary>
internal sealed class CompiledBackend
{
    public CompiledBackend(BackendTarget? target, int weight, string invalidReason,
        HeaderEdits requestHeaders, HeaderEdits responseHeaders)
    {
        Target = target;
        Weight = weight;
        InvalidReason = invalidReason;
        RequestHeaders = requestHeaders;
        ResponseHeaders = responseHeaders;
    }

    /// <summary>Null when the reference is invalid: the request gets a 500.</summary>
    public BackendTarget? Target { get; }

    public int Weight { get; }

    /// <summary>"" when valid; else the ResolvedRefs reason (InvalidKind, BackendNotFound, RefNotPermitted).</summary>
    public string InvalidReason { get; }

    public HeaderEdits RequestHeaders { get; }

    public HeaderEdits ResponseHeaders { get; }
}

/// <summary>One RequestMirror filter: the target and the share of requests copied to it.</summary>
internal sealed class MirrorTarget
{
    public MirrorTarget(BackendTarget target, int numerator, int denominator)
    {
        Target = target;
        Numerator = numerator;
        Denominator = denominator;
    }

    public BackendTarget Target { get; }

    public int Numerator { get; }

    public int Denominator { get; }

    public bool Always => Numerator >= Denominator;

    public bool Sample(IRouteRandom random) =>
        Always || (Numerator > 0 && random.Next(Denominator) < Numerator);
}

/// <summary>
/// HTTPRouteRetry: the response codes that are retried, the number of retries after the first try
/// ("attempts"), and the wait before each retry (null: the forwarder's default).
/// </summary>
internal sealed record RetryPolicy(IReadOnlyList<int> Codes, int Attempts, TimeSpan? Backoff)
{
    /// <summary>Istio's default number of attempts, used when the route asks for retries without a count.</summary>
    public const int DefaultAttempts = 2;
}

/// <summary>
/// One HTTPRouteRule compiled for the request path: filters split by kind, backends with cumulative weights,
/// timeouts and retry policy as the forwarder wants them.
/// </summary>
internal sealed class CompiledRule
{
    private readonly int[] _cumulativeWeights;

    public CompiledRule(HTTPRoute route, int ruleIndex)
    {
        var rule = route.Rules[ruleIndex];
        RouteNamespace = route.Namespace;
        RouteName = route.Name;
        RuleIndex = ruleIndex;
        RuleName = rule.Name;

        var requestHeaders = HeaderEdits.Empty;
        var responseHeaders = HeaderEdits.Empty;
        var mirrors = new List<MirrorTarget>();
        foreach (var filter in rule.Filters)
        {
            switch (filter.Type)
            {
                case HTTPRouteFilterType.RequestHeaderModifier:
                    requestHeaders = requestHeaders.Then(HeaderEdits.From(filter.RequestHeaderModifier));
                    break;
                case HTTPRouteFilterType.ResponseHeaderModifier:
                    responseHeaders = responseHeaders.Then(HeaderEdits.From(filter.ResponseHeaderModifier));
                    break;
                case HTTPRouteFilterType.RequestRedirect:
                    Redirect ??= filter.RequestRedirect;
                    break;
                case HTTPRouteFilterType.UrlRewrite:
                    Rewrite ??= filter.UrlRewrite;
                    break;
                case HTTPRouteFilterType.RequestMirror:
                    if (CompileMirror(filter.RequestMirror, route.Namespace) is { } mirror)
                    {
                        mirrors.Add(mirror);
                    }
                    break;
            }
        }
        RequestHeaders = requestHeaders;
        ResponseHeaders = responseHeaders;
        Mirrors = mirrors.ToArray();

        Backends = new CompiledBackend[rule.BackendRefs.Count];
        _cumulativeWeights = new int[Backends.Length];
        var total = 0;
        for (var i = 0; i < Backends.Length; i++)
        {
            Backends[i] = CompileBackend(rule.BackendRefs[i], route.Namespace, requestHeaders, responseHeaders);
            // Weights are capped by the API at 1,000,000 each; saturate rather than overflow on absurd input.
            total = (int)Math.Min(int.MaxValue, (long)total + Backends[i].Weight);
            _cumulativeWeights[i] = total;
        }
        TotalWeight = total;

        RequestTimeout = PositiveMilliseconds(rule.Timeouts is { HasRequestMs: true } t1 ? t1.RequestMs : null);
        BackendRequestTimeout = PositiveMilliseconds(
            rule.Timeouts is { HasBackendRequestMs: true } t2 ? t2.BackendRequestMs : null);
        if (rule.Retry is { } retry)
        {
            var codes = new int[retry.Codes.Count];
            for (var i = 0; i < codes.Length; i++)
            {
                codes[i] = (int)retry.Codes[i];
            }
            Retry = new RetryPolicy(codes,
                retry.HasAttempts ? (int)retry.Attempts : RetryPolicy.DefaultAttempts,
                retry.HasBackoffMs ? TimeSpan.FromMilliseconds(retry.BackoffMs) : null);
        }
    }

    public string RouteNamespace { get; }

    public string RouteName { get; }

    public int RuleIndex { get; }

    public string RuleName { get; }

    /// <summary>Route-level RequestHeaderModifier (already folded into each backend's edits).</summary>
    public HeaderEdits RequestHeaders { get; }

    /// <summary>Route-level ResponseHeaderModifier (already folded into each backend's edits); applies alone to
    /// responses the waypoint makes itself (redirects).</summary>
    public HeaderEdits ResponseHeaders { get; }

    public HTTPRequestRedirectFilter? Redirect { get; }

    public HTTPURLRewriteFilter? Rewrite { get; }

    public MirrorTarget[] Mirrors { get; }

    public CompiledBackend[] Backends { get; }

    public int TotalWeight { get; }

    /// <summary>timeouts.request; null when absent or "0s" (disabled).</summary>
    public TimeSpan? RequestTimeout { get; }

    /// <summary>timeouts.backendRequest; null when absent or "0s" (disabled).</summary>
    public TimeSpan? BackendRequestTimeout { get; }

    /// <summary>Null when the rule has no retry stanza: the caller applies the mesh default.</summary>
    public RetryPolicy? Retry { get; }

    /// <summary>
    /// A backend by weight (weight 0 is never chosen); null when every weight is 0 or there is no backend, where
    /// the spec wants a 500.
    /// </summary>
    public CompiledBackend? PickBackend(IRouteRandom random)
    {
        if (TotalWeight <= 0)
        {
            return null;
        }
        var ticket = Backends.Length == 1 ? 0 : random.Next(TotalWeight);
        for (var i = 0; i < _cumulativeWeights.Length; i++)
        {
            if (ticket < _cumulativeWeights[i])
            {
                return Backends[i];
            }
        }
        return null;
    }

    private static TimeSpan? PositiveMilliseconds(ulong? ms) =>
        ms is > 0 ? TimeSpan.FromMilliseconds(ms.Value) : null;

    internal static BackendTarget? ServiceBackend(BackendRef? reference, string routeNamespace)
    {
        if (reference is null || reference.Group.Length != 0 ||
            (reference.Kind.Length != 0 && reference.Kind != "Service") || reference.Name.Length == 0)
        {
            return null;
        }
        var ns = reference.Namespace.Length == 0 ? routeNamespace : reference.Namespace;
        return new BackendTarget(ns, reference.Name, (int)reference.Port);
    }

    private static CompiledBackend CompileBackend(HTTPBackendRef backend, string routeNamespace,
        HeaderEdits routeRequestHeaders, HeaderEdits routeResponseHeaders)
    {
        var target = backend.InvalidReason.Length == 0 ? ServiceBackend(backend.BackendRef, routeNamespace) : null;
        var invalidReason = target is null && backend.InvalidReason.Length == 0 ? "InvalidKind" : backend.InvalidReason;
        var requestHeaders = routeRequestHeaders;
        var responseHeaders = routeResponseHeaders;
        foreach (var filter in backend.Filters)
        {
            if (filter.Type == HTTPRouteFilterType.RequestHeaderModifier)
            {
                requestHeaders = requestHeaders.Then(HeaderEdits.From(filter.RequestHeaderModifier));
            }
            else if (filter.Type == HTTPRouteFilterType.ResponseHeaderModifier)
            {
                responseHeaders = responseHeaders.Then(HeaderEdits.From(filter.ResponseHeaderModifier));
            }
        }
        return new CompiledBackend(target, (int)Math.Min(backend.Weight, int.MaxValue), invalidReason,
            requestHeaders, responseHeaders);
    }

    private static MirrorTarget? CompileMirror(HTTPRequestMirrorFilter? mirror, string routeNamespace)
    {
        // A reference istiod-lite could not resolve (a cross-namespace Service no ReferenceGrant permits among them)
        // mirrors nothing.
        if (mirror is null || mirror.InvalidReason.Length > 0 || ServiceBackend(mirror.BackendRef, routeNamespace) is not { } target)
        {
            return null;
        }
        if (mirror.HasPercent)
        {
            return new MirrorTarget(target, (int)Math.Min(mirror.Percent, 100), 100);
        }
        if (mirror.Fraction is { } fraction)
        {
            var denominator = fraction.Denominator == 0 ? 100 : (int)Math.Min(fraction.Denominator, int.MaxValue);
            return new MirrorTarget(target, (int)Math.Min(fraction.Numerator, (uint)denominator), denominator);
        }
        return new MirrorTarget(target, 1, 1);
    }
}

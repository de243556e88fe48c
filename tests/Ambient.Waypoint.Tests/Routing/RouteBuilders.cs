using Ambient.Core.Protos.Waypoint;
using Ambient.Waypoint.Routing;
using Microsoft.AspNetCore.Http;

namespace Ambient.Waypoint.Tests.Routing;

/// <summary>Terse constructors for routes as istiod-lite sends them (defaults applied), and for requests.</summary>
internal static class RouteBuilders
{
    public const string Ns = "gateway-conformance-mesh";

    public static HTTPRoute MeshRoute(string name, string service, params HTTPRouteRule[] rules) =>
        MeshRoute(name, service, 0, rules);

    public static HTTPRoute MeshRoute(string name, string service, uint port, params HTTPRouteRule[] rules)
    {
        var route = new HTTPRoute { Namespace = Ns, Name = name };
        route.ParentRefs.Add(new ParentReference { Group = "", Kind = "Service", Namespace = Ns, Name = service, Port = port });
        route.Rules.Add(rules);
        return route;
    }

    /// <summary>A consumer route: in <paramref name="ns"/>, for the Service <paramref name="service"/> of <see cref="Ns"/>.</summary>
    public static HTTPRoute ConsumerRoute(string ns, string name, string service, uint port, params HTTPRouteRule[] rules)
    {
        var route = MeshRoute(name, service, port, rules);
        route.Namespace = ns;
        return route;
    }

    public static HTTPRoute GatewayRoute(string name, string[] hostnames, params HTTPRouteRule[] rules)
    {
        var route = new HTTPRoute { Namespace = Ns, Name = name };
        route.ParentRefs.Add(new ParentReference
        {
            Group = "gateway.networking.k8s.io", Kind = "Gateway", Namespace = Ns, Name = "waypoint",
        });
        route.Hostnames.Add(hostnames);
        route.Rules.Add(rules);
        return route;
    }

    public static readonly GatewayTarget WaypointGateway = new(Ns, "waypoint");

    public static HTTPRouteRule Rule(HTTPRouteMatch[] matches, params string[] backends)
    {
        var rule = new HTTPRouteRule();
        rule.Matches.Add(matches.Length == 0 ? [Prefix("/")] : matches);
        foreach (var backend in backends)
        {
            rule.BackendRefs.Add(Backend(backend));
        }
        return rule;
    }

    public static HTTPRouteRule Rule(HTTPRouteMatch match, params string[] backends) => Rule([match], backends);

    public static HTTPBackendRef Backend(string name, uint weight = 1, uint port = 8080) => new()
    {
        BackendRef = new BackendRef { Group = "", Kind = "Service", Namespace = Ns, Name = name, Port = port },
        Weight = weight,
    };

    public static HTTPRouteMatch Prefix(string value) =>
        new() { Path = new HTTPPathMatch { Type = PathMatchType.PathPrefix, Value = value } };

    public static HTTPRouteMatch Exact(string value) =>
        new() { Path = new HTTPPathMatch { Type = PathMatchType.Exact, Value = value } };

    public static HTTPRouteMatch Regex(string value) =>
        new() { Path = new HTTPPathMatch { Type = PathMatchType.RegularExpression, Value = value } };

    public static HTTPRouteMatch WithHeader(this HTTPRouteMatch match, string name, string value,
        HeaderMatchType type = HeaderMatchType.HeaderExact)
    {
        match.Headers.Add(new HTTPHeaderMatch { Type = type, Name = name, Value = value });
        return match;
    }

    public static HTTPRouteMatch WithQuery(this HTTPRouteMatch match, string name, string value,
        HeaderMatchType type = HeaderMatchType.HeaderExact)
    {
        match.QueryParams.Add(new HTTPQueryParamMatch { Type = type, Name = name, Value = value });
        return match;
    }

    public static HTTPRouteMatch WithMethod(this HTTPRouteMatch match, string method)
    {
        match.Method = method;
        return match;
    }

    public static HTTPRouteRule WithFilter(this HTTPRouteRule rule, HTTPRouteFilter filter)
    {
        rule.Filters.Add(filter);
        return rule;
    }

    public static HTTPRoute Created(this HTTPRoute route, long ms)
    {
        route.CreationTimestampMs = ms;
        return route;
    }

    /// <summary>"/path?query" as the conformance tables write requests.</summary>
    public static RequestFacts Request(string pathAndQuery, string host = "echo", string method = "GET",
        IEnumerable<KeyValuePair<string, string>>? headers = null, string scheme = "http", int port = 80)
    {
        var q = pathAndQuery.IndexOf('?');
        var path = q < 0 ? pathAndQuery : pathAndQuery[..q];
        var query = q < 0 ? "" : pathAndQuery[q..];
        var dictionary = new HeaderDictionary();
        foreach (var (name, value) in headers ?? [])
        {
            dictionary.Append(name, value);
        }
        return new RequestFacts(method, path, query, host, dictionary, scheme, port);
    }

    public static KeyValuePair<string, string> H(string name, string value) => new(name, value);

    public static ServiceTarget Echo(int port = 80) => new(Ns, "echo", port);

    /// <summary>The backend a request reaches, or "500", "NoRoute" or "302 location".</summary>
    public static string RouteTo(this RouteTable table, in RequestFacts request, ServiceTarget? service = null)
    {
        var plan = table.Route(service ?? Echo(), request);
        return plan.Outcome switch
        {
            RouteOutcome.Forward => plan.Backend!.Name,
            RouteOutcome.NoRoute => "NoRoute",
            RouteOutcome.Redirect => $"{plan.StatusCode} {plan.Location}",
            _ => plan.StatusCode.ToString(System.Globalization.CultureInfo.InvariantCulture),
        };
    }
}

/// <summary>A scripted random: returns the given tickets in turn (modulo the bound).</summary>
internal sealed class ScriptedRandom(params int[] tickets) : IRouteRandom
{
    private int _next;

    public int Next(int maxExclusive) => tickets[_next++ % tickets.Length] % maxExclusive;
}

internal sealed class SeededRandom(int seed) : IRouteRandom
{
    private readonly Random _random = new(seed);

    public int Next(int maxExclusive) => _random.Next(maxExclusive);
}

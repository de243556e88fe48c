using Ambient.Core.Protos.Waypoint;

namespace Ambient.Waypoint.Routing;

/// <summary>
/// The HTTPRoutes a waypoint serves, compiled into one immutable table. Build a new table on every xDS update and
/// swap the reference (Volatile.Write); readers never lock.
/// <para>
/// Parents: a route whose parentRef is a Service (group "", kind Service) applies to traffic addressed to that
/// Service, on the parentRef's port or, with port 0, on every port. A route whose parentRef is the waypoint's own
/// Gateway applies to requests for a Service that has no Service-bound route on that port, filtered by the route's
/// hostnames against the Host. Service (GAMMA) routes ignore hostnames: GEP-1426 says mesh implementations SHOULD
/// NOT infer any functionality from them.
/// </para>
/// <para>
/// GEP-1426 namespace boundaries: a route in the Service's namespace is a producer route and applies to every
/// client; a route in another namespace is a consumer route and applies only to clients in the route's namespace,
/// which then use their consumer routes instead of the producer routes.
/// </para>
/// <para>
/// Precedence, across every rule of every applicable route (apis/v1/httproute_types.go, HTTPRouteRule): Exact path,
/// then the longest path, then a method match, then the most header matches, then the most query-param matches;
/// then the oldest route (creationTimestamp), then "{namespace}/{name}" alphabetically, then rule order (and match
/// order within a rule). RegularExpression precedence is implementation-specific: like Istio (getURIRank in
/// pilot/pkg/config/kube/gateway/conversion.go) we rank Exact over PathPrefix over RegularExpression, each tier by
/// the length of its value.
/// </para>
/// </summary>
internal sealed class RouteTable
{
    public static readonly RouteTable Empty = new([], null, [], SharedRouteRandom.Instance);

    private readonly Dictionary<(string Namespace, string Name), ServiceRoutes> _services;
    private readonly GatewayTarget? _gateway;
    private readonly RouteEntry[] _gatewayEntries;
    private readonly IRouteRandom _random;

    private RouteTable(Dictionary<(string, string), ServiceRoutes> services, GatewayTarget? gateway,
        RouteEntry[] gatewayEntries, IRouteRandom random)
    {
        _services = services;
        _gateway = gateway;
        _gatewayEntries = gatewayEntries;
        _random = random;
    }

    /// <summary>The number of routes the table was built from.</summary>
    public int RouteCount { get; private init; }

    /// <param name="routes">Every HTTPRoute the waypoint received (defaults already applied by istiod-lite).</param>
    /// <param name="gateway">The waypoint's own Gateway, for routes bound to it; null to ignore such routes.</param>
    /// <param name="random">Weights and mirror sampling; the shared random when null.</param>
    public static RouteTable Build(IEnumerable<HTTPRoute> routes, GatewayTarget? gateway = null,
        IRouteRandom? random = null)
    {
        var services = new Dictionary<(string, string), ServiceRoutesBuilder>();
        var gatewayEntries = new List<RouteEntry>();
        var count = 0;
        foreach (var route in routes)
        {
            count++;
            var compiled = CompileEntries(route);
            if (compiled.Count == 0)
            {
                continue;
            }
            // A route with two parentRefs to the same parent must not double its entries.
            var seenPorts = new HashSet<(string, string, int)>();
            var boundToGateway = false;
            foreach (var parent in route.ParentRefs)
            {
                var parentNamespace = parent.Namespace.Length == 0 ? route.Namespace : parent.Namespace;
                if (IsService(parent))
                {
                    if (!seenPorts.Add((parentNamespace, parent.Name, (int)parent.Port)))
                    {
                        continue;
                    }
                    if (!services.TryGetValue((parentNamespace, parent.Name), out var builder))
                    {
                        services[(parentNamespace, parent.Name)] = builder = new ServiceRoutesBuilder();
                    }
                    // Producer when the route lives with its Service, consumer (for its own namespace) otherwise.
                    var group = route.Namespace == parentNamespace ? builder.Producer : builder.Consumer(route.Namespace);
                    group.Add((int)parent.Port, compiled);
                }
                else if (!boundToGateway && gateway is { } gw && IsGateway(parent) &&
                    parentNamespace == gw.Namespace && parent.Name == gw.Name)
                {
                    boundToGateway = true;
                    foreach (var entry in compiled)
                    {
                        gatewayEntries.Add(entry.WithHostnames(route.Hostnames));
                    }
                }
            }
        }

        var built = new Dictionary<(string, string), ServiceRoutes>(services.Count);
        foreach (var (key, builder) in services)
        {
            built[key] = builder.Build();
        }
        var gatewaySorted = gatewayEntries.ToArray();
        Array.Sort(gatewaySorted, RouteEntry.Precedence);
        return new RouteTable(built, gateway, gatewaySorted, random ?? SharedRouteRandom.Instance) { RouteCount = count };
    }

    /// <summary>
    /// Chooses the rule for a request to <paramref name="service"/> and turns it into a plan (backend by weight,
    /// rewrites, redirect, header edits, mirrors, timeouts, retries).
    /// </summary>
    /// <param name="clientNamespace">The calling workload's namespace when known, for consumer routes.</param>
    public RoutePlan Route(in ServiceTarget service, in RequestFacts request, string? clientNamespace = null)
    {
        var entry = Match(service, request, clientNamespace, out var parentHasRoutes, out var boundToService);
        return entry is null
            ? RoutePlan.NoRoute(parentHasRoutes)
            : RoutePlan.For(entry.Rule, entry.Match, request, _random, boundToService ? service : null);
    }

    /// <summary>The highest-precedence entry matching the request, or null. <paramref name="boundToService"/> tells
    /// whether it came from a route bound to the addressed Service (GAMMA) rather than to the waypoint's Gateway.</summary>
    internal RouteEntry? Match(in ServiceTarget service, in RequestFacts request, string? clientNamespace,
        out bool parentHasRoutes, out bool boundToService)
    {
        parentHasRoutes = false;
        boundToService = false;
        if (_services.TryGetValue((service.Namespace, service.Name), out var routes))
        {
            var entries = routes.For(service.Port, clientNamespace);
            if (entries.Length > 0)
            {
                parentHasRoutes = true;
                foreach (var entry in entries)
                {
                    if (entry.Match.Matches(request))
                    {
                        boundToService = true;
                        return entry;
                    }
                }
                return null;
            }
        }

        if (_gatewayEntries.Length > 0)
        {
            parentHasRoutes = true;
            var host = request.HostWithoutPort;
            foreach (var entry in _gatewayEntries)
            {
                if (entry.HostMatches(host) && entry.Match.Matches(request))
                {
                    return entry;
                }
            }
        }
        return null;
    }

    private static bool IsService(ParentReference parent) =>
        parent.Group.Length == 0 && parent.Kind == "Service";

    private static bool IsGateway(ParentReference parent) =>
        parent.Group == "gateway.networking.k8s.io" && (parent.Kind == "Gateway" || parent.Kind.Length == 0);

    private static List<RouteEntry> CompileEntries(HTTPRoute route)
    {
        var entries = new List<RouteEntry>();
        var key = route.Namespace + "/" + route.Name;
        for (var r = 0; r < route.Rules.Count; r++)
        {
            var rule = new CompiledRule(route, r);
            var matches = route.Rules[r].Matches;
            if (matches.Count == 0)
            {
                // istiod-lite never sends this, but the API's default is one match on PathPrefix "/".
                entries.Add(new RouteEntry(rule, new CompiledMatch(new HTTPRouteMatch()), route.CreationTimestampMs, key, r, 0));
                continue;
            }
            for (var m = 0; m < matches.Count; m++)
            {
                entries.Add(new RouteEntry(rule, new CompiledMatch(matches[m]), route.CreationTimestampMs, key, r, m));
            }
        }
        return entries;
    }

    /// <summary>The entries of one group (producer, or one consumer namespace) by port; port 0 routes included in
    /// every port's list, so a lookup is one dictionary probe.</summary>
    private sealed class PortIndex
    {
        public static readonly PortIndex None = new([], new Dictionary<int, RouteEntry[]>());

        private readonly RouteEntry[] _anyPort;
        private readonly Dictionary<int, RouteEntry[]> _byPort;

        public PortIndex(RouteEntry[] anyPort, Dictionary<int, RouteEntry[]> byPort)
        {
            _anyPort = anyPort;
            _byPort = byPort;
        }

        public RouteEntry[] For(int port) => _byPort.TryGetValue(port, out var entries) ? entries : _anyPort;
    }

    private sealed class PortIndexBuilder
    {
        private readonly Dictionary<int, List<RouteEntry>> _byPort = [];

        public void Add(int port, List<RouteEntry> entries)
        {
            if (!_byPort.TryGetValue(port, out var list))
            {
                _byPort[port] = list = [];
            }
            list.AddRange(entries);
        }

        public PortIndex Build()
        {
            var anyPortList = _byPort.TryGetValue(0, out var all) ? all : [];
            var anyPort = Sorted(anyPortList);
            var byPort = new Dictionary<int, RouteEntry[]>();
            foreach (var (port, list) in _byPort)
            {
                if (port != 0)
                {
                    byPort[port] = Sorted([.. list, .. anyPortList]);
                }
            }
            return new PortIndex(anyPort, byPort);
        }

        private static RouteEntry[] Sorted(List<RouteEntry> list)
        {
            var array = list.ToArray();
            Array.Sort(array, RouteEntry.Precedence);
            return array;
        }
    }

    private sealed class ServiceRoutes
    {
        private readonly PortIndex _producer;
        private readonly Dictionary<string, PortIndex> _consumers;

        public ServiceRoutes(PortIndex producer, Dictionary<string, PortIndex> consumers)
        {
            _producer = producer;
            _consumers = consumers;
        }

        public RouteEntry[] For(int port, string? clientNamespace)
        {
            if (clientNamespace is not null && _consumers.TryGetValue(clientNamespace, out var consumer))
            {
                var entries = consumer.For(port);
                if (entries.Length > 0)
                {
                    return entries;
                }
            }
            return _producer.For(port);
        }
    }

    private sealed class ServiceRoutesBuilder
    {
        private readonly Dictionary<string, PortIndexBuilder> _consumers = [];

        public PortIndexBuilder Producer { get; } = new();

        public PortIndexBuilder Consumer(string routeNamespace)
        {
            if (!_consumers.TryGetValue(routeNamespace, out var builder))
            {
                _consumers[routeNamespace] = builder = new PortIndexBuilder();
            }
            return builder;
        }

        public ServiceRoutes Build()
        {
            var consumers = new Dictionary<string, PortIndex>(_consumers.Count);
            foreach (var (ns, builder) in _consumers)
            {
                consumers[ns] = builder.Build();
            }
            return new ServiceRoutes(Producer.Build(), consumers);
        }
    }
}

/// <summary>One match of one rule of one route, placed in the precedence order.</summary>
internal sealed class RouteEntry
{
    public static readonly IComparer<RouteEntry> Precedence = Comparer<RouteEntry>.Create(Compare);

    private readonly string[] _exactHosts;
    private readonly string[] _wildcardSuffixes;

    public RouteEntry(CompiledRule rule, CompiledMatch match, long createdMs, string key, int ruleIndex, int matchIndex,
        string[]? exactHosts = null, string[]? wildcardSuffixes = null)
    {
        Rule = rule;
        Match = match;
        CreatedMs = createdMs;
        Key = key;
        RuleIndex = ruleIndex;
        MatchIndex = matchIndex;
        _exactHosts = exactHosts ?? [];
        _wildcardSuffixes = wildcardSuffixes ?? [];
    }

    public CompiledRule Rule { get; }

    public CompiledMatch Match { get; }

    public long CreatedMs { get; }

    /// <summary>"{namespace}/{name}" of the route.</summary>
    public string Key { get; }

    public int RuleIndex { get; }

    public int MatchIndex { get; }

    public RouteEntry WithHostnames(IEnumerable<string> hostnames)
    {
        var exact = new List<string>();
        var wildcard = new List<string>();
        foreach (var hostname in hostnames)
        {
            if (hostname.StartsWith("*.", StringComparison.Ordinal))
            {
                wildcard.Add(hostname[1..]); // ".example.com"
            }
            else if (hostname.Length > 0)
            {
                exact.Add(hostname);
            }
        }
        return new RouteEntry(Rule, Match, CreatedMs, Key, RuleIndex, MatchIndex, exact.ToArray(), wildcard.ToArray());
    }

    /// <summary>
    /// Route hostnames against the Host (port already removed): none means every host; "*.example.com" matches
    /// "foo.example.com" and "foo.bar.example.com" but not "example.com" (Listener/HTTPRoute hostname docs).
    /// </summary>
    public bool HostMatches(ReadOnlySpan<char> host)
    {
        if (_exactHosts.Length == 0 && _wildcardSuffixes.Length == 0)
        {
            return true;
        }
        foreach (var exact in _exactHosts)
        {
            if (host.Equals(exact, StringComparison.OrdinalIgnoreCase))
            {
                return true;
            }
        }
        foreach (var suffix in _wildcardSuffixes)
        {
            if (host.Length > suffix.Length && host.EndsWith(suffix, StringComparison.OrdinalIgnoreCase))
            {
                return true;
            }
        }
        return false;
    }

    private static int Compare(RouteEntry? a, RouteEntry? b)
    {
        if (ReferenceEquals(a, b))
        {
            return 0;
        }
        if (a is null)
        {
            return 1;
        }
        if (b is null)
        {
            return -1;
        }
        int c;
        if ((c = PathRank(b.Match.PathType).CompareTo(PathRank(a.Match.PathType))) != 0 ||
            (c = b.Match.PathLength.CompareTo(a.Match.PathLength)) != 0 ||
            (c = (b.Match.Method is not null).CompareTo(a.Match.Method is not null)) != 0 ||
            (c = b.Match.HeaderCount.CompareTo(a.Match.HeaderCount)) != 0 ||
            (c = b.Match.QueryParamCount.CompareTo(a.Match.QueryParamCount)) != 0 ||
            (c = a.CreatedMs.CompareTo(b.CreatedMs)) != 0 ||
            (c = string.CompareOrdinal(a.Key, b.Key)) != 0 ||
            (c = a.RuleIndex.CompareTo(b.RuleIndex)) != 0)
        {
            return c;
        }
        return a.MatchIndex.CompareTo(b.MatchIndex);
    }

    private static int PathRank(PathMatchType type) => type switch
    {
        PathMatchType.Exact => 3,
        PathMatchType.PathPrefix => 2,
        _ => 1,
    };
}

using System.Collections.Immutable;
using Ambient.Core.Config;
using Ambient.Core.Protos.Waypoint;
using Ambient.Core.Protos.Workload;

namespace Ambient.Core.Model;

/// <summary>One Gateway API status condition (metav1.Condition without the timestamps).</summary>
internal sealed record StatusCondition(string Type, bool Status, string Reason, string Message);

/// <summary>The conditions of one route for one of its parentRefs (HTTPRoute status.parents[]).</summary>
internal sealed record RouteParentStatus(ParentReference ParentRef, ImmutableArray<StatusCondition> Conditions);

internal sealed record HttpRouteStatus(string Namespace, string Name, ImmutableArray<RouteParentStatus> Parents);

internal sealed record GatewayStatus(string Namespace, string Name, ImmutableArray<StatusCondition> Conditions);

/// <summary>What one waypoint is sent: its routes (backend refs resolved) and the protocols of the Services it serves.</summary>
internal sealed record WaypointRoutes(ImmutableArray<HTTPRoute> Routes, ImmutableArray<ServiceProtocols> Protocols)
{
    public static WaypointRoutes Empty { get; } = new([], []);
}

/// <summary>The outcome of binding every HTTPRoute to the mesh: per-waypoint config and the status of every route and waypoint.</summary>
internal sealed class WaypointRouting
{
    public static WaypointRouting Empty { get; } = new(new Dictionary<string, WaypointRoutes>(), [], []);

    private readonly IReadOnlyDictionary<string, WaypointRoutes> _byWaypoint;

    public WaypointRouting(IReadOnlyDictionary<string, WaypointRoutes> byWaypoint, ImmutableArray<HttpRouteStatus> routes, ImmutableArray<GatewayStatus> gateways)
    {
        _byWaypoint = byWaypoint;
        Routes = routes;
        Gateways = gateways;
    }

    public ImmutableArray<HttpRouteStatus> Routes { get; }
    public ImmutableArray<GatewayStatus> Gateways { get; }

    /// <summary>By waypoint key <c>ns/name</c>; empty for an unknown waypoint.</summary>
    public WaypointRoutes For(string waypointKey) => _byWaypoint.GetValueOrDefault(waypointKey) ?? WaypointRoutes.Empty;
}

/// <summary>
/// Binds HTTPRoutes to waypoints (the GAMMA mesh profile: a parentRef is a Service, whose waypoint applies the route,
/// or the waypoint's Gateway itself) and computes the Gateway API status conditions on the way. A pure function of the
/// snapshot (its ReferenceGrants among it, so adding or removing a grant rebinds the routes it concerns).
/// </summary>
internal static class HttpRouteBinder
{
    public const string GatewayGroup = "gateway.networking.k8s.io";

    private const string HttpRouteKind = "HTTPRoute";

    public static WaypointRouting Bind(MeshSnapshot snapshot)
    {
        var waypoints = snapshot.Waypoints;
        if (waypoints.IsEmpty && snapshot.HttpRoutes.IsEmpty)
        {
            return WaypointRouting.Empty;
        }
        var routesByWaypoint = new Dictionary<string, List<HTTPRoute>>(StringComparer.Ordinal);
        var routeStatuses = ImmutableArray.CreateBuilder<HttpRouteStatus>(snapshot.HttpRoutes.Length);
        foreach (var route in snapshot.HttpRoutes)
        {
            routeStatuses.Add(BindRoute(snapshot, route, routesByWaypoint));
        }

        var byWaypoint = new Dictionary<string, WaypointRoutes>(waypoints.Length, StringComparer.Ordinal);
        var gatewayStatuses = ImmutableArray.CreateBuilder<GatewayStatus>(waypoints.Length);
        foreach (var w in waypoints)
        {
            var protocols = ImmutableArray.CreateBuilder<ServiceProtocols>();
            foreach (var s in snapshot.Services)
            {
                if (s.Waypoint?.Host is { } host && host == w.Service)
                {
                    protocols.Add(ProtocolsOf(s));
                }
            }
            var routes = routesByWaypoint.TryGetValue(w.Key, out var list) ? [.. list] : ImmutableArray<HTTPRoute>.Empty;
            byWaypoint[w.Key] = new WaypointRoutes(routes, protocols.DrainToImmutable());
            gatewayStatuses.Add(new GatewayStatus(w.Namespace, w.Name, [
                new StatusCondition("Accepted", true, "Accepted", "accepted as a waypoint"),
                w.Address is not null && w.Node.Length > 0
                    ? new StatusCondition("Programmed", true, "Programmed", $"runs as pod {w.Namespace}/{w.PodName} on node {w.Node}, address {w.Address}")
                    : new StatusCondition("Programmed", false, "AddressNotAssigned", "no node or address for the waypoint pod"),
            ]));
        }
        return new WaypointRouting(byWaypoint, routeStatuses.DrainToImmutable(), gatewayStatuses.DrainToImmutable());
    }

    /// <summary>
    /// A served Service's ports and what they speak: <c>appProtocol</c> first, else the port name as Istio reads it
    /// (<c>http</c>, <c>http-*</c>, <c>http2</c>, <c>http2-*</c>, <c>grpc</c>, <c>grpc-*</c>), else TCP.
    /// </summary>
    public static ServiceProtocols ProtocolsOf(ServiceInfo service)
    {
        var result = new ServiceProtocols { Namespace = service.Namespace, Hostname = service.Hostname };
        foreach (var p in service.Ports)
        {
            var protocol = p.AppProtocol switch
            {
                AppProtocol.Http11 => PortAppProtocol.Http,
                AppProtocol.Http2 => PortAppProtocol.Http2,
                AppProtocol.Grpc => PortAppProtocol.Grpc,
                AppProtocol.Tcp or AppProtocol.Tls => PortAppProtocol.Tcp,
                _ => FromPortName(p.Name),
            };
            result.Ports.Add(new PortProtocol { ServicePort = (uint)p.Port, Protocol = protocol });
        }
        return result;
    }

    private static PortAppProtocol FromPortName(string? name)
    {
        if (name is null)
        {
            return PortAppProtocol.Tcp;
        }
        var dash = name.IndexOf('-', StringComparison.Ordinal);
        var prefix = dash < 0 ? name : name[..dash];
        return prefix.ToLowerInvariant() switch
        {
            "http" => PortAppProtocol.Http,
            "http2" => PortAppProtocol.Http2,
            "grpc" => PortAppProtocol.Grpc,
            _ => PortAppProtocol.Tcp,
        };
    }

    private static HttpRouteStatus BindRoute(MeshSnapshot snapshot, HttpRouteResource route, Dictionary<string, List<HTTPRoute>> routesByWaypoint)
    {
        var ns = route.Metadata.Namespace;
        var resolved = route.Spec.Clone();
        resolved.Namespace = ns;
        resolved.Name = route.Metadata.Name;
        var refsProblem = ResolveBackends(snapshot, resolved);
        var unsupported = UnsupportedFilter(resolved);

        var resolvedRefs = refsProblem is { } problem
            ? new StatusCondition("ResolvedRefs", false, problem.Reason, problem.Message)
            : new StatusCondition("ResolvedRefs", true, "ResolvedRefs", "all references resolved");
        var parents = ImmutableArray.CreateBuilder<RouteParentStatus>(resolved.ParentRefs.Count);
        var sentTo = new HashSet<string>(StringComparer.Ordinal);
        foreach (var parent in resolved.ParentRefs)
        {
            var (accepted, waypoint) = BindParent(snapshot, route, parent);
            if (accepted.Status && unsupported is not null)
            {
                accepted = new StatusCondition("Accepted", false, "UnsupportedValue", unsupported);
                waypoint = null;
            }
            parents.Add(new RouteParentStatus(parent, [accepted, resolvedRefs]));
            if (waypoint is not null && sentTo.Add(waypoint.Key))
            {
                if (!routesByWaypoint.TryGetValue(waypoint.Key, out var list))
                {
                    routesByWaypoint.Add(waypoint.Key, list = []);
                }
                list.Add(resolved);
            }
        }
        return new HttpRouteStatus(ns, route.Metadata.Name, parents.DrainToImmutable());
    }

    /// <summary>The parentRef's Accepted condition and, when accepted, the waypoint that applies the route.</summary>
    private static (StatusCondition Accepted, WaypointInfo? Waypoint) BindParent(MeshSnapshot snapshot, HttpRouteResource route, ParentReference parent)
    {
        var routeNs = route.Metadata.Namespace;
        var ns = parent.Namespace.Length > 0 ? parent.Namespace : routeNs;
        var kind = parent.Kind.Length > 0 ? parent.Kind : "Gateway"; // the API's default parent kind
        var group = parent.Group.Length > 0 || parent.Kind.Length > 0 ? parent.Group : GatewayGroup;
        var name = ns + "/" + parent.Name;
        if (kind == "Service" && group is "" or "core")
        {
            var service = snapshot.FindServiceByKey(ns + "/" + ServiceInfo.KubernetesHostname(parent.Name, ns, snapshot.Options.DomainSuffix));
            if (service is null)
            {
                return (NotAccepted("NoMatchingParent", $"Service {name} does not exist"), null);
            }
            if (parent.Port != 0 && !service.TryGetPort((int)parent.Port, out _))
            {
                return (NotAccepted("NoMatchingParent", $"Service {name} has no port {parent.Port}"), null);
            }
            if (parent.SectionName.Length > 0 && !HasPortNamed(service, parent.SectionName))
            {
                return (NotAccepted("NoMatchingParent", $"Service {name} has no port named {parent.SectionName}"), null);
            }
            if (service.Waypoint?.Host is not { } host || snapshot.FindWaypointByService(host) is not { } serving)
            {
                return (NotAccepted("NoMatchingParent", $"Service {name} has no waypoint ({WaypointLabels.UseWaypoint}); no proxy applies the route"), null);
            }
            // GEP-1294 "Namespace boundaries": a route in another namespace than its Service is a consumer route. It is
            // bound like a producer route, to the waypoint serving the Service; that waypoint tells clients apart by the
            // namespace of their SPIFFE identity and applies the route only to clients of the route's namespace.
            return ns == routeNs
                ? (Accepted($"bound to waypoint {serving.Key} through Service {name}"), serving)
                : (Accepted($"bound to waypoint {serving.Key} through Service {name} as a consumer route: applies to clients in namespace {routeNs}"), serving);
        }
        if (kind == "Gateway" && group == GatewayGroup)
        {
            if (snapshot.FindWaypoint(ns, parent.Name) is not { } waypoint)
            {
                return (NotAccepted("NoMatchingParent", $"Gateway {name} is not a waypoint of this mesh (class {GatewayResource.WaypointClass})"), null);
            }
            var matched = false;
            var allowed = false;
            foreach (var l in waypoint.Gateway.Listeners.IsDefault ? [] : waypoint.Gateway.Listeners)
            {
                if ((parent.SectionName.Length == 0 || l.Name == parent.SectionName) && (parent.Port == 0 || l.Port == parent.Port))
                {
                    matched = true;
                    allowed |= WaypointInfo.ListenerAllows(l, waypoint.Namespace, routeNs, snapshot.FindNamespace(routeNs));
                }
            }
            if (!matched)
            {
                return (NotAccepted("NoMatchingParent", $"Gateway {name} has no listener matching sectionName '{parent.SectionName}' port {parent.Port}"), null);
            }
            return allowed
                ? (Accepted($"bound to waypoint {waypoint.Key}"), waypoint)
                : (NotAccepted("NotAllowedByListeners", $"no listener of Gateway {name} allows routes from namespace {routeNs}"), null);
        }
        return (NotAccepted("UnsupportedValue", $"parentRef kind '{group}/{kind}' is not supported (Service or {GatewayGroup}/Gateway)"), null);
    }

    private static StatusCondition Accepted(string message) => new("Accepted", true, "Accepted", message);

    private static StatusCondition NotAccepted(string reason, string message) => new("Accepted", false, reason, message);

    private static bool HasPortNamed(ServiceInfo service, string name)
    {
        foreach (var p in service.Ports)
        {
            if (p.Name == name)
            {
                return true;
            }
        }
        return false;
    }

    /// <summary>
    /// Fills every backendRef's namespace and invalid_reason (the waypoint answers 500 for an invalid one's share) and
    /// returns the first problem for the ResolvedRefs condition, or null when every reference resolved.
    /// </summary>
    private static (string Reason, string Message)? ResolveBackends(MeshSnapshot snapshot, HTTPRoute route)
    {
        (string, string)? first = null;
        foreach (var rule in route.Rules)
        {
            foreach (var backend in rule.BackendRefs)
            {
                if (backend.BackendRef is null)
                {
                    continue;
                }
                var problem = Resolve(snapshot, route, backend.BackendRef);
                backend.InvalidReason = problem?.Reason ?? "";
                var mirrors = ResolveMirrors(snapshot, route, backend.Filters);
                first ??= problem ?? mirrors;
            }
            var ruleMirrors = ResolveMirrors(snapshot, route, rule.Filters);
            first ??= ruleMirrors;
        }
        return first;
    }

    private static (string Reason, string Message)? ResolveMirrors(MeshSnapshot snapshot, HTTPRoute route, IEnumerable<HTTPRouteFilter> filters)
    {
        (string, string)? first = null;
        foreach (var f in filters)
        {
            if (f.Type == HTTPRouteFilterType.RequestMirror && f.RequestMirror?.BackendRef is { } mirror)
            {
                var problem = Resolve(snapshot, route, mirror);
                f.RequestMirror.InvalidReason = problem?.Reason ?? "";
                first ??= problem;
            }
        }
        return first;
    }

    private static (string Reason, string Message)? Resolve(MeshSnapshot snapshot, HTTPRoute route, BackendRef backend)
    {
        var routeNamespace = route.Namespace;
        if (backend.Namespace.Length == 0)
        {
            backend.Namespace = routeNamespace;
        }
        var name = backend.Namespace + "/" + backend.Name;
        if (backend.Group is not ("" or "core") || backend.Kind is not ("" or "Service"))
        {
            return ("InvalidKind", $"backendRef {name}: kind '{backend.Group}/{backend.Kind}' is not supported (Service only)");
        }
        if (backend.Namespace != routeNamespace && !IsParentService(route, backend) && !Permitted(snapshot, routeNamespace, backend))
        {
            return ("RefNotPermitted", $"backendRef {name} is in another namespace and no ReferenceGrant there permits HTTPRoutes of namespace {routeNamespace} to refer to it");
        }
        if (snapshot.FindServiceByKey(backend.Namespace + "/" + ServiceInfo.KubernetesHostname(backend.Name, backend.Namespace, snapshot.Options.DomainSuffix)) is null)
        {
            return ("BackendNotFound", $"backendRef Service {name} does not exist");
        }
        return null;
    }

    /// <summary>
    /// Whether <paramref name="backend"/> names one of the route's own Service parents. GEP-1294 "Namespace boundaries":
    /// mesh routes augment Services rather than expose them, so a ReferenceGrant is needed only where a reference reaches
    /// further than the client could anyway. A consumer route sending to (or mirroring to) the very Service its clients
    /// called reaches nothing new: upstream MeshConsumerRoute sends to its parent in the producer namespace with no grant.
    /// Every other cross-namespace Service keeps needing a grant, as for producer routes.
    /// </summary>
    private static bool IsParentService(HTTPRoute route, BackendRef backend)
    {
        foreach (var parent in route.ParentRefs)
        {
            if (parent.Kind == "Service" && parent.Group is "" or "core" && parent.Name == backend.Name
                && (parent.Namespace.Length > 0 ? parent.Namespace : route.Namespace) == backend.Namespace)
            {
                return true;
            }
        }
        return false;
    }

    /// <summary>
    /// A cross-namespace reference to a Service is permitted when a ReferenceGrant in the Service's namespace trusts
    /// HTTPRoutes of the route's namespace (<c>from</c>) and names that Service or all Services (<c>to</c>).
    /// </summary>
    private static bool Permitted(MeshSnapshot snapshot, string routeNamespace, BackendRef backend)
    {
        foreach (var grant in snapshot.ReferenceGrants)
        {
            if (grant.Metadata.Namespace == backend.Namespace
                && grant.Permits(GatewayGroup, HttpRouteKind, routeNamespace, "", "Service", backend.Name))
            {
                return true;
            }
        }
        return false;
    }

    /// <summary>A filter type the waypoint does not implement (ExtensionRef and any future one): the route is not accepted.</summary>
    private static string? UnsupportedFilter(HTTPRoute route)
    {
        foreach (var rule in route.Rules)
        {
            foreach (var f in rule.Filters)
            {
                if (f.Type == HTTPRouteFilterType.FilterUnspecified)
                {
                    return $"rule '{rule.Name}' has a filter type the waypoint does not support";
                }
            }
            foreach (var b in rule.BackendRefs)
            {
                foreach (var f in b.Filters)
                {
                    if (f.Type == HTTPRouteFilterType.FilterUnspecified)
                    {
                        return $"rule '{rule.Name}' has a backendRef filter type the waypoint does not support";
                    }
                }
            }
        }
        return null;
    }
}

using System.Collections.Immutable;
using Ambient.Core.Config;
using Ambient.Core.Protos.Waypoint;

namespace Ambient.TestCommon;

/// <summary>
/// Gateway API records built in code, as the YAML parser produces them (defaults applied), for tests of what the mesh
/// does with them rather than of the parser.
/// </summary>
public static class GatewayApiFixtures
{
    private static readonly SourceLocation Source = new("gateway-api.yaml", 1);
    private static readonly ImmutableSortedDictionary<string, string> Empty = ImmutableSortedDictionary<string, string>.Empty;

    /// <summary>A waypoint Gateway as <c>ambientctl waypoint apply</c> (and istioctl) writes it.</summary>
    public static GatewayResource Waypoint(
        string ns, string name = "waypoint", string? waypointFor = null, string? node = null, string allowedFrom = "Same",
        string gatewayClass = GatewayResource.WaypointClass)
    {
        var labels = waypointFor is null ? Empty : Empty.Add("istio.io/waypoint-for", waypointFor);
        var annotations = node is null ? Empty : Empty.Add("ambient.dev/node", node);
        return new GatewayResource("gateway.networking.k8s.io/v1", new ObjectMeta(name, ns, labels, annotations), Source, gatewayClass,
            [new GatewayListener("mesh", 15008, "HBONE") { AllowedNamespacesFrom = allowedFrom }]);
    }

    /// <summary>An HTTPRoute with the given parents and one rule sending everything to <paramref name="backends"/>.</summary>
    public static HttpRouteResource Route(string ns, string name, ParentReference[] parents, params BackendRef[] backends)
    {
        var spec = new HTTPRoute { Namespace = ns, Name = name };
        spec.ParentRefs.AddRange(parents);
        var rule = new HTTPRouteRule();
        rule.Matches.Add(new HTTPRouteMatch { Path = new HTTPPathMatch { Type = PathMatchType.PathPrefix, Value = "/" } });
        foreach (var b in backends)
        {
            rule.BackendRefs.Add(new HTTPBackendRef { BackendRef = b, Weight = 1 });
        }
        spec.Rules.Add(rule);
        return new HttpRouteResource("gateway.networking.k8s.io/v1", new ObjectMeta(name, ns, Empty, Empty), Source, spec);
    }

    public static ParentReference ServiceParent(string name, uint port = 0, string ns = "") =>
        new() { Group = "", Kind = "Service", Name = name, Port = port, Namespace = ns };

    public static ParentReference GatewayParent(string name, string ns = "", string sectionName = "") =>
        new() { Group = "gateway.networking.k8s.io", Kind = "Gateway", Name = name, Namespace = ns, SectionName = sectionName };

    public static BackendRef Backend(string name, uint port, string ns = "", string kind = "Service", string group = "") =>
        new() { Group = group, Kind = kind, Name = name, Port = port, Namespace = ns };

    /// <summary>A ReferenceGrant in <paramref name="ns"/> letting HTTPRoutes of <paramref name="fromNamespace"/> refer to
    /// the Service <paramref name="toService"/> there (every Service when null).</summary>
    public static ReferenceGrantResource Grant(string ns, string name, string fromNamespace, string? toService = null,
        string fromKind = "HTTPRoute", string toKind = "Service") =>
        new("gateway.networking.k8s.io/v1beta1", new ObjectMeta(name, ns, Empty, Empty), Source,
            [new ReferenceGrantFrom("gateway.networking.k8s.io", fromKind, fromNamespace)], [new ReferenceGrantTo("", toKind, toService)]);
}

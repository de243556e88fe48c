using System.Globalization;
using System.Text.Json.Nodes;
using Ambient.Core.Config;
using Ambient.Core.Protos.AuthorizationPolicies;
using Ambient.Ctl.Cli;

namespace Ambient.Ctl.Inspect;

/// <summary>
/// One kind `ambientctl get` lists: its names as kubectl takes them, its table columns (the default ones, then the
/// extra ones of <c>-o wide</c>) and one row per resource. Matched by the manifest's <c>kind</c>, so a kind the parser
/// does not type yet (kept as <see cref="UnknownResource"/>) is listed by name until it is.
/// </summary>
internal sealed record ResourceKind(
    string Kind,
    string Plural,
    string[] ShortNames,
    bool Namespaced,
    string[] Columns,
    string[] WideColumns,
    Func<Resource, MeshRuntime, Cell[]> Row)
{
    public bool Names(string text) =>
        text.Equals(Plural, StringComparison.OrdinalIgnoreCase) || text.Equals(Kind, StringComparison.OrdinalIgnoreCase)
        || Array.Exists(ShortNames, s => s.Equals(text, StringComparison.OrdinalIgnoreCase));
}

/// <summary>Every kind the mesh reads; adding one is one entry here.</summary>
internal static class ResourceKinds
{
    public static IReadOnlyList<ResourceKind> All { get; } =
    [
        new("Namespace", "namespaces", ["ns"], false, ["status", "dataplane-mode", "use-waypoint"], ["labels"],
            (r, _) => [Active, r.Metadata.Label("istio.io/dataplane-mode") ?? "-", r.Metadata.Label("istio.io/use-waypoint") ?? "-", Labels(r)]),
        new("Pod", "pods", ["po"], true, ["ready", "status", "restarts", "ip", "node"], ["service-account", "labels"], PodRow),
        new("Service", "services", ["svc"], true, ["type", "cluster-ip", "port(s)"], ["selector", "use-waypoint"], ServiceRow),
        new("ServiceAccount", "serviceaccounts", ["sa"], true, [], [], (_, _) => []),
        new("Gateway", "gateways", ["gtw"], true, ["class", "waypoint-for", "programmed"], ["listeners"], GatewayRow),
        new("HTTPRoute", "httproutes", [], true, ["hostnames", "parents", "accepted", "resolved-refs"], ["rules"], HttpRouteRow),
        new("Deployment", "deployments", ["deploy"], true, [], ["labels"], (r, _) => [Labels(r)]),
        new("AuthorizationPolicy", "authorizationpolicies", ["ap"], true, ["action", "enforced-by", "warnings"], ["scope", "dry-run", "rules"], PolicyRow),
        new("PeerAuthentication", "peerauthentications", ["pa"], true, ["mode", "port-level", "enforced-as", "warnings"], ["level", "selector"], PeerAuthenticationRow),
    ];

    private static readonly Cell Active = new("Active", Tone.Good);

    public static ResourceKind? Find(string text)
    {
        foreach (var k in All)
        {
            if (k.Names(text)) return k;
        }
        return null;
    }

    private static Cell Labels(Resource r) =>
        r.Metadata.Labels.IsEmpty ? "<none>" : string.Join(",", r.Metadata.Labels.Select(l => l.Key + "=" + l.Value));

    private static Cell[] PodRow(Resource r, MeshRuntime mesh)
    {
        var pod = (PodResource)r;
        var run = mesh.Pod(pod.Metadata.Namespace, pod.Metadata.Name);
        var phase = mesh.Phase(pod);
        var ip = run?.Address ?? pod.PodIP ?? mesh.Addresses.PodAddress(pod.Metadata.Namespace, pod.Metadata.Name)?.ToString() ?? "<none>";
        return
        [
            $"{run?.Running ?? 0}/{pod.Containers.Length}",
            new Cell(phase, phase switch { "Running" => Tone.Good, "Waiting" => Tone.Bad, "Pending" => Tone.Warn, _ => Tone.Plain }),
            (run?.Restarts ?? 0).ToString(CultureInfo.InvariantCulture),
            ip,
            pod.NodeName ?? "<none>",
            pod.ServiceAccountName,
            Labels(pod),
        ];
    }

    private static Cell[] ServiceRow(Resource r, MeshRuntime mesh)
    {
        var svc = (ServiceResource)r;
        var vip = svc.ClusterIP ?? mesh.Addresses.ServiceVip(svc.Metadata.Namespace, svc.Metadata.Name)?.ToString() ?? "<none>";
        return
        [
            svc.Type,
            vip,
            svc.Ports.IsEmpty ? "<none>" : string.Join(",", svc.Ports.Select(p => $"{p.Port.ToString(CultureInfo.InvariantCulture)}/{p.Protocol}")),
            svc.Selector.IsEmpty ? "<none>" : string.Join(",", svc.Selector.Select(l => l.Key + "=" + l.Value)),
            svc.Metadata.Label("istio.io/use-waypoint") ?? "-",
        ];
    }

    private static Cell[] GatewayRow(Resource r, MeshRuntime mesh)
    {
        var gw = (GatewayResource)r;
        return
        [
            gw.GatewayClassName,
            gw.Metadata.Label(WaypointLabels.For) ?? (gw.IsWaypoint ? WaypointLabels.DefaultFor + " (default)" : "-"),
            mesh.Condition(gw, "Programmed"),
            string.Join(",", gw.Listeners.Select(l => $"{l.Name}:{l.Port.ToString(CultureInfo.InvariantCulture)}/{l.Protocol}")),
        ];
    }

    private static Cell[] HttpRouteRow(Resource r, MeshRuntime mesh)
    {
        var route = (HttpRouteResource)r;
        var parents = route.Spec.ParentRefs.Select(p =>
            (p.Kind.Length == 0 ? "Gateway" : p.Kind) + "/" + p.Name + (p.Port != 0 ? ":" + p.Port.ToString(CultureInfo.InvariantCulture) : ""));
        return
        [
            route.Spec.Hostnames.Count == 0 ? "*" : string.Join(",", route.Spec.Hostnames),
            string.Join(",", parents),
            mesh.Condition(route, "Accepted"),
            mesh.Condition(route, "ResolvedRefs"),
            route.Spec.Rules.Count.ToString(CultureInfo.InvariantCulture),
        ];
    }

    /// <summary>
    /// A policy's action, where it is enforced and what the enforcement changes, as istiod-lite reports it. Without
    /// a mesh, where it is enforced is told from the spec alone (as istiod decides it) and the warnings are unknown.
    /// </summary>
    private static Cell[] PolicyRow(Resource r, MeshRuntime mesh)
    {
        var policy = (AuthorizationPolicyResource)r;
        var spec = policy.Spec;
        var status = mesh.Status.Status(policy);
        var enforcedBy = status?["enforcedBy"]?.GetValue<string>()
            ?? (spec.TargetRefs.Count > 0 ? "waypoint" : spec.Action == PolicyAction.Audit ? "none" : "ztunnel");
        var warnings = Warnings(status);
        return
        [
            spec.Action.ToString().ToUpperInvariant(),
            enforcedBy == "waypoint" ? Waypoints(policy, mesh) : new Cell(enforcedBy, enforcedBy == "none" ? Tone.Warn : Tone.Plain),
            warnings,
            status?["scope"]?.GetValue<string>() ?? (enforcedBy == "ztunnel" ? "-" : "<none>"),
            spec.DryRun ? "true" : "false",
            spec.Rules.Count.ToString(CultureInfo.InvariantCulture),
        ];
    }

    /// <summary>
    /// A PeerAuthentication's modes as written, and as istiod-lite reports it: what ztunnel enforces for it (the static
    /// STRICT policy, its converted port-level policy, or none), the warnings and its level (mesh, namespace, workload).
    /// Without a mesh those are unknown ("-").
    /// </summary>
    private static Cell[] PeerAuthenticationRow(Resource r, MeshRuntime mesh)
    {
        var spec = ((PeerAuthenticationResource)r).Spec;
        var status = mesh.Status.Status(r);
        var warnings = Warnings(status);
        var ports = spec.PortLevelMtls.Count == 0
            ? "<none>"
            : string.Join(",", spec.PortLevelMtls.OrderBy(static p => p.Key).Select(static p => p.Key.ToString(CultureInfo.InvariantCulture) + "=" + p.Value.ToString().ToUpperInvariant()));
        return
        [
            spec.Mode.ToString().ToUpperInvariant(),
            ports,
            status?["enforcedAs"]?.GetValue<string>() ?? "-",
            warnings,
            status?["level"]?.GetValue<string>() ?? "-",
            !spec.HasSelector ? "<none>" : spec.MatchLabels.Count == 0 ? "{}" : string.Join(",", spec.MatchLabels.OrderBy(static l => l.Key, StringComparer.Ordinal).Select(static l => l.Key + "=" + l.Value)),
        ];
    }

    /// <summary>istiod-lite's conversion warnings for a policy: "-" when unknown (no mesh), "&lt;none&gt;" when none.</summary>
    private static Cell Warnings(JsonObject? status) => status?["warnings"] is JsonArray list
        ? list.Count == 0 ? "<none>" : new Cell(string.Join("; ", list.Select(w => w?.GetValue<string>())), Tone.Warn)
        : "-";

    /// <summary>
    /// The waypoints a targetRefs policy is enforced by: a Gateway target is the waypoint itself; a Service target is
    /// enforced by the waypoint its traffic goes through (its use-waypoint label, else its namespace's), and by
    /// nothing when it has none.
    /// </summary>
    private static Cell Waypoints(AuthorizationPolicyResource policy, MeshRuntime mesh)
    {
        var names = new List<string>();
        var missing = false;
        foreach (var target in policy.Spec.TargetRefs)
        {
            var ns = target.Namespace.Length > 0 ? target.Namespace : policy.Metadata.Namespace;
            if (target.Kind == "Gateway")
            {
                names.Add("waypoint/" + target.Name);
                continue;
            }
            var waypoint = mesh.Find("Service", ns, target.Name)?.Metadata.Label(WaypointLabels.Use)
                ?? mesh.Find("Namespace", "", ns)?.Metadata.Label(WaypointLabels.Use);
            if (waypoint is null or "none")
            {
                names.Add($"none ({target.Kind.ToLowerInvariant()}/{target.Name} has no waypoint)");
                missing = true;
            }
            else
            {
                names.Add("waypoint/" + waypoint);
            }
        }
        return new Cell(string.Join(", ", names.Distinct(StringComparer.Ordinal)), missing ? Tone.Warn : Tone.Plain);
    }
}

/// <summary>The labels of Istio's waypoint API.</summary>
internal static class WaypointLabels
{
    /// <summary>On a Gateway: which traffic the waypoint takes (service, workload, all, none).</summary>
    public const string For = "istio.io/waypoint-for";

    /// <summary>On a Namespace, Service or Pod: the waypoint its traffic goes through.</summary>
    public const string Use = "istio.io/use-waypoint";

    /// <summary>Istio's default when the Gateway has no waypoint-for label.</summary>
    public const string DefaultFor = "service";
}

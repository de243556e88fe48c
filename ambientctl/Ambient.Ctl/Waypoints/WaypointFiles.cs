using Ambient.Config.Yaml;
using Ambient.Core.Config;
using Ambient.Ctl.Labels;

namespace Ambient.Ctl.Waypoints;

/// <summary>What `waypoint apply` writes: a Gateway as istioctl generates it.</summary>
internal sealed record WaypointSpec(string Namespace, string Name, string For)
{
    public const string ListenerName = "mesh";
    public const int HbonePort = 15008;
    public static readonly string[] ForValues = ["service", "workload", "all", "none"];

    public string Display => Namespace + "/" + Name;
}

/// <summary>
/// The waypoints `ambientctl waypoint` manages in a local mesh folder: one file per waypoint,
/// <c>waypoint-&lt;namespace&gt;-&lt;name&gt;.yaml</c> at the top of the folder, whose first line marks it as ours. A
/// file without the mark is the user's: it is never overwritten or deleted, and a Gateway the user declared elsewhere
/// under the same name is left alone (apply and delete say where it is).
/// </summary>
internal static class WaypointFiles
{
    public const string Marker = "# Written by `ambientctl waypoint apply`; `ambientctl waypoint delete` removes it.";

    public static string PathFor(string folder, string @namespace, string name) => Path.Combine(folder, $"waypoint-{@namespace}-{name}.yaml");

    /// <summary>Whether <paramref name="file"/> is one we wrote (its first line is the marker).</summary>
    public static bool IsOurs(string file)
    {
        try
        {
            using var reader = new StreamReader(file);
            return reader.ReadLine() == Marker;
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            return false;
        }
    }

    public static string Render(WaypointSpec spec) => $"""
        {Marker}
        apiVersion: gateway.networking.k8s.io/v1
        kind: Gateway
        metadata:
          name: {spec.Name}
          namespace: {spec.Namespace}
          labels:
            istio.io/waypoint-for: {spec.For}
        spec:
          gatewayClassName: {GatewayResource.WaypointClass}
          listeners:
          - name: {WaypointSpec.ListenerName}
            port: {WaypointSpec.HbonePort}
            protocol: HBONE

        """;

    /// <summary>
    /// Writes (or rewrites) the waypoint's file; returns its path, or null with why it must not: the name is invalid,
    /// our file name is taken by a user file, or a Gateway of that name is declared in another file.
    /// </summary>
    public static string? Write(string folder, IReadOnlyList<Resource> resources, WaypointSpec spec, out string? error)
    {
        if (Validation.Dns1123Label(spec.Name) is { } nameError)
        {
            error = $"waypoint name '{spec.Name}': {nameError}";
            return null;
        }
        var path = PathFor(folder, spec.Namespace, spec.Name);
        if (File.Exists(path) && !IsOurs(path))
        {
            error = $"{path} exists and was not written by ambientctl; not overwriting it";
            return null;
        }
        if (Find(resources, spec.Namespace, spec.Name) is { } declared && !SamePath(declared.Source.File, path))
        {
            error = $"a Gateway {spec.Display} is already declared at {declared.Source}; edit it there";
            return null;
        }
        var text = Render(spec);
        // Parsed before writing, as every edit this tool makes: what lands in the folder reads back as intended.
        var parsed = ManifestParser.Parse(path, text);
        if (!parsed.IsClean)
        {
            error = $"the waypoint does not read back: {string.Join("; ", parsed.Errors)}";
            return null;
        }
        error = null;
        if (!File.Exists(path) || File.ReadAllText(path) != text) NamespaceLabelEditor.WriteAtomically(path, text);
        return path;
    }

    /// <summary>Deletes the waypoint's file if it is ours; null with why not otherwise.</summary>
    public static string? Delete(IReadOnlyList<Resource> resources, string folder, string @namespace, string name, out string? error)
    {
        var declared = Find(resources, @namespace, name);
        var ours = PathFor(folder, @namespace, name);
        var file = declared?.Source.File ?? (File.Exists(ours) ? ours : null);
        if (file is null)
        {
            error = $"waypoint {@namespace}/{name} not found";
            return null;
        }
        if (!IsOurs(file))
        {
            error = $"waypoint {@namespace}/{name} is declared at {declared?.Source.ToString() ?? file}, which ambientctl did not write; remove it there";
            return null;
        }
        File.Delete(file);
        error = null;
        return file;
    }

    /// <summary>Gateways of class istio-waypoint (a Gateway the parser does not type yet counts if it is in one of our files).</summary>
    public static List<Resource> Waypoints(IReadOnlyList<Resource> resources, string? @namespace)
    {
        var result = new List<Resource>();
        foreach (var r in resources)
        {
            if (r.Kind != "Gateway" || (@namespace is not null && r.Metadata.Namespace != @namespace)) continue;
            if (r is GatewayResource g ? g.IsWaypoint : IsOurs(r.Source.File)) result.Add(r);
        }
        result.Sort(static (a, b) => string.CompareOrdinal(a.Metadata.Namespace + "/" + a.Metadata.Name, b.Metadata.Namespace + "/" + b.Metadata.Name));
        return result;
    }

    private static Resource? Find(IReadOnlyList<Resource> resources, string @namespace, string name)
    {
        foreach (var r in resources)
        {
            if (r.Kind == "Gateway" && r.Metadata.Namespace == @namespace && r.Metadata.Name == name) return r;
        }
        return null;
    }

    private static bool SamePath(string a, string b) => string.Equals(Path.GetFullPath(a), Path.GetFullPath(b), StringComparison.Ordinal);
}

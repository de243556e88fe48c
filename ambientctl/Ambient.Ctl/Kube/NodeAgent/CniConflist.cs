using System.Text.Json;
using System.Text.Json.Nodes;

namespace Ambient.Ctl.Kube.NodeAgent;

/// <summary>
/// The node's CNI network configuration and our entry in it, as istio-cni's install edits it (cni/pkg/install/
/// cniconfig.go): the primary config is the first <c>*.conf</c> / <c>*.conflist</c> by name that holds a usable network
/// (the one the runtime uses, libcni's order); our plugin goes last in its <c>plugins</c> list, replacing any entry of
/// ours already there; a single-plugin <c>.conf</c> becomes a <c>.conflist</c> of it and us. Pure text in, text out.
/// </summary>
internal static class CniConflist
{
    private static readonly JsonSerializerOptions Indented = new() { WriteIndented = true };

    /// <summary>The primary network config in <paramref name="folder"/>, or null while there is none (the node's CNI is not installed yet).</summary>
    public static string? FindPrimary(string folder)
    {
        if (!Directory.Exists(folder)) return null;
        var files = new List<string>();
        foreach (var path in Directory.EnumerateFiles(folder))
        {
            var extension = Path.GetExtension(path);
            if (extension is ".conf" or ".conflist") files.Add(path);
        }
        files.Sort(StringComparer.Ordinal);
        foreach (var path in files)
        {
            try
            {
                if (JsonNode.Parse(File.ReadAllText(path)) is not JsonObject config) continue;
                // As libcni: a .conf needs a type (a list put in a .conf file has none), a list needs a plugin.
                var usable = path.EndsWith(".conflist", StringComparison.Ordinal)
                    ? config["plugins"] is JsonArray { Count: > 0 }
                    : config["type"] is JsonValue;
                if (usable) return path;
            }
            catch (Exception e) when (e is JsonException or IOException or UnauthorizedAccessException)
            {
                // Unreadable or half-written: the runtime skips it too.
            }
        }
        return null;
    }

    /// <summary>
    /// The config with <paramref name="entry"/> as its last plugin (its <c>type</c> names ours); a <c>.conf</c>
    /// (an object with a <c>type</c>) is turned into a list of itself and the entry, keeping its name and version.
    /// </summary>
    public static string Insert(string existing, JsonObject entry)
    {
        var config = Parse(existing);
        var ours = (string)entry["type"]!;
        var plugin = (JsonObject)entry.DeepClone();
        plugin.Remove("cniVersion");
        JsonObject list;
        if (config["type"] is not null)
        {
            var version = config["cniVersion"]?.DeepClone() ?? "0.3.1";
            var name = config["name"]?.DeepClone() ?? "k8s-pod-network";
            config.Remove("cniVersion");
            list = new JsonObject { ["cniVersion"] = version, ["name"] = name, ["plugins"] = new JsonArray(config) };
        }
        else
        {
            list = config;
        }
        var plugins = list["plugins"] as JsonArray ?? throw new CniConfigException("the CNI config has neither a type nor a plugins list");
        RemoveOurs(plugins, ours);
        plugins.Add(plugin);
        return list.ToJsonString(Indented) + "\n";
    }

    /// <summary>The config without our entry; null when it has none (nothing to write).</summary>
    public static string? Remove(string existing, string type)
    {
        var config = Parse(existing);
        if (config["plugins"] is not JsonArray plugins || !RemoveOurs(plugins, type)) return null;
        return config.ToJsonString(Indented) + "\n";
    }

    /// <summary>Whether <paramref name="existing"/> ends with exactly <paramref name="entry"/> (nothing to do).</summary>
    public static bool HasLast(string existing, JsonObject entry)
    {
        try
        {
            return Parse(existing)["plugins"] is JsonArray { Count: > 0 } plugins
                && JsonNode.DeepEquals(plugins[^1], WithoutVersion(entry));
        }
        catch (CniConfigException)
        {
            return false;
        }
    }

    private static JsonObject WithoutVersion(JsonObject entry)
    {
        var copy = (JsonObject)entry.DeepClone();
        copy.Remove("cniVersion");
        return copy;
    }

    private static bool RemoveOurs(JsonArray plugins, string type)
    {
        var removed = false;
        for (var i = plugins.Count - 1; i >= 0; i--)
        {
            if (plugins[i] is JsonObject p && p["type"] is JsonValue t && t.TryGetValue<string>(out var name) && name == type)
            {
                plugins.RemoveAt(i);
                removed = true;
            }
        }
        return removed;
    }

    private static JsonObject Parse(string text)
    {
        try
        {
            return JsonNode.Parse(text) as JsonObject ?? throw new CniConfigException("the CNI config is not a JSON object");
        }
        catch (JsonException e)
        {
            throw new CniConfigException("the CNI config is not JSON: " + e.Message);
        }
    }
}

/// <summary>The node's CNI config cannot be read or edited.</summary>
internal sealed class CniConfigException(string message) : Exception(message);

using System.Text.Json.Nodes;

namespace Ambient.TestCommon.Kube;

/// <summary>
/// The patch types the apiserver takes: JSON merge patch (RFC 7386), strategic merge patch (merge patch plus the
/// directives kubectl sends: <c>$setElementOrder/field</c> makes a list merge by the key its entries name, an element
/// with <c>"$patch": "delete"</c> removes the element with its key, <c>$retainKeys</c> is honoured as "drop the
/// rest"), and JSON patch (RFC 6902: add, remove, replace, test, copy, move).
/// </summary>
internal static class KubePatch
{
    private const string SetElementOrder = "$setElementOrder/";
    private const string DeleteFromPrimitiveList = "$deleteFromPrimitiveList/";

    /// <summary>RFC 7386: objects merge recursively, null deletes, anything else replaces.</summary>
    public static JsonNode? Merge(JsonNode? target, JsonNode? patch, bool strategic)
    {
        if (patch is not JsonObject patchObject)
        {
            return patch?.DeepClone();
        }
        var result = target is JsonObject targetObject ? (JsonObject)targetObject.DeepClone() : [];
        if (strategic && patchObject["$retainKeys"] is JsonArray retain)
        {
            var keep = retain.Select(k => k?.GetValue<string>()).ToHashSet(StringComparer.Ordinal);
            foreach (var name in result.Select(p => p.Key).ToList())
            {
                if (!keep.Contains(name) && !patchObject.ContainsKey(name))
                {
                    result.Remove(name);
                }
            }
        }
        foreach (var (name, value) in patchObject)
        {
            if (strategic && name.StartsWith('$'))
            {
                if (name.StartsWith(DeleteFromPrimitiveList, StringComparison.Ordinal)
                    && result[name[DeleteFromPrimitiveList.Length..]] is JsonArray list && value is JsonArray removed)
                {
                    var gone = removed.Select(r => r?.ToJsonString()).ToHashSet(StringComparer.Ordinal);
                    for (var i = list.Count - 1; i >= 0; i--)
                    {
                        if (gone.Contains(list[i]?.ToJsonString()))
                        {
                            list.RemoveAt(i);
                        }
                    }
                }
                continue;
            }
            if (value is null)
            {
                result.Remove(name);
                continue;
            }
            if (strategic && value is JsonArray patchList && patchObject[SetElementOrder + name] is JsonArray order)
            {
                result[name] = MergeList(result[name] as JsonArray, patchList, order);
                continue;
            }
            result[name] = Merge(result[name], value, strategic);
        }
        return result;
    }

    // A strategic list merge: the order entries name the merge key ({"name": "c1"}) or, for lists of scalars, are
    // the values themselves; elements are matched on that key, merged, deleted on "$patch": "delete", and put in order.
    private static JsonArray MergeList(JsonArray? current, JsonArray patch, JsonArray order)
    {
        var mergeKey = order.Count > 0 && order[0] is JsonObject first && first.Count == 1 ? first.First().Key : null;
        string? KeyOf(JsonNode? element) => mergeKey is null ? element?.ToJsonString() : element?[mergeKey]?.ToJsonString();

        var byKey = new Dictionary<string, JsonNode?>(StringComparer.Ordinal);
        foreach (var element in current ?? [])
        {
            if (KeyOf(element) is { } key)
            {
                byKey[key] = element?.DeepClone();
            }
        }
        foreach (var element in patch)
        {
            if (KeyOf(element) is not { } key)
            {
                continue;
            }
            if (element is JsonObject o && o["$patch"]?.GetValue<string>() == "delete")
            {
                byKey.Remove(key);
                continue;
            }
            byKey[key] = mergeKey is null ? element?.DeepClone() : Merge(byKey.GetValueOrDefault(key), element, strategic: true);
        }
        var result = new JsonArray();
        foreach (var entry in order)
        {
            var key = mergeKey is null ? entry?.ToJsonString() : entry?[mergeKey]?.ToJsonString();
            if (key is not null && byKey.Remove(key, out var element))
            {
                result.Add(element);
            }
        }
        foreach (var rest in byKey.Values)
        {
            result.Add(rest);
        }
        return result;
    }

    /// <summary>RFC 6902 over a copy of <paramref name="target"/>.</summary>
    public static JsonNode ApplyJsonPatch(JsonNode target, JsonArray operations)
    {
        var root = target.DeepClone();
        foreach (var operation in operations)
        {
            var op = operation?["op"]?.GetValue<string>() ?? throw new FormatException("missing op");
            var path = operation["path"]?.GetValue<string>() ?? throw new FormatException("missing path");
            switch (op)
            {
                case "add":
                    Add(root, path, operation["value"]?.DeepClone());
                    break;
                case "remove":
                    Remove(root, path);
                    break;
                case "replace":
                    Remove(root, path);
                    Add(root, path, operation["value"]?.DeepClone());
                    break;
                case "test":
                    if (!JsonNode.DeepEquals(Resolve(root, path), operation["value"]))
                    {
                        throw new InvalidOperationException($"test failed at {path}");
                    }
                    break;
                case "copy":
                    Add(root, path, Resolve(root, operation["from"]!.GetValue<string>())?.DeepClone());
                    break;
                case "move":
                    var from = operation["from"]!.GetValue<string>();
                    var moved = Resolve(root, from)?.DeepClone();
                    Remove(root, from);
                    Add(root, path, moved);
                    break;
                default:
                    throw new FormatException($"unknown op {op}");
            }
        }
        return root;
    }

    private static string[] Pointer(string path) =>
        path.Length == 0 ? [] : path[1..].Split('/').Select(s => s.Replace("~1", "/", StringComparison.Ordinal).Replace("~0", "~", StringComparison.Ordinal)).ToArray();

    private static JsonNode? Resolve(JsonNode root, string path)
    {
        JsonNode? node = root;
        foreach (var segment in Pointer(path))
        {
            node = node switch
            {
                JsonObject o => o.TryGetPropertyValue(segment, out var child) ? child : throw new InvalidOperationException($"path {path} does not exist"),
                JsonArray a when int.TryParse(segment, out var i) && i < a.Count => a[i],
                _ => throw new InvalidOperationException($"path {path} does not exist"),
            };
        }
        return node;
    }

    private static (JsonNode Parent, string Last) Parent(JsonNode root, string path)
    {
        var segments = Pointer(path);
        if (segments.Length == 0)
        {
            throw new InvalidOperationException("cannot patch the root");
        }
        var parent = Resolve(root, "/" + string.Join('/', segments[..^1].Select(s => s.Replace("~", "~0", StringComparison.Ordinal).Replace("/", "~1", StringComparison.Ordinal))));
        return (parent ?? throw new InvalidOperationException($"path {path} does not exist"), segments[^1]);
    }

    private static void Add(JsonNode root, string path, JsonNode? value)
    {
        var (parent, last) = Parent(root, path);
        switch (parent)
        {
            case JsonObject o:
                o[last] = value;
                break;
            case JsonArray a when last == "-":
                a.Add(value);
                break;
            case JsonArray a when int.TryParse(last, out var i) && i <= a.Count:
                a.Insert(i, value);
                break;
            default:
                throw new InvalidOperationException($"path {path} does not exist");
        }
    }

    private static void Remove(JsonNode root, string path)
    {
        var (parent, last) = Parent(root, path);
        switch (parent)
        {
            case JsonObject o when o.ContainsKey(last):
                o.Remove(last);
                break;
            case JsonArray a when int.TryParse(last, out var i) && i < a.Count:
                a.RemoveAt(i);
                break;
            default:
                throw new InvalidOperationException($"path {path} does not exist");
        }
    }
}

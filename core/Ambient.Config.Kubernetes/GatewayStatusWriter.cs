using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;
using Ambient.Core.Model;
using k8s;
using k8s.Models;
using Microsoft.Extensions.Logging;

namespace Ambient.Config.Kubernetes;

/// <summary>
/// Writes the Gateway API status the mesh computes (the conditions <c>ambientctl get</c> shows in folder mode) to the
/// waypoint Gateways and the HTTPRoutes bound through them, through the status subresource. A write happens only when
/// the status differs from what the object holds (and from what was last written, until the watch shows it), so a push
/// that changes nothing for an object writes nothing. lastTransitionTime is kept while a condition's status stays.
/// HTTPRoute parents that are not ours (a Gateway of another class) are neither written nor removed.
/// </summary>
internal sealed partial class GatewayStatusWriter : LatestWinsWriter<MeshSnapshot>
{
    private readonly KubernetesConfigSource _source;
    private readonly IKubernetes _client;
    private readonly ILogger _logger;
    private readonly TimeProvider _time;
    private readonly Dictionary<string, string> _lastWritten = new(StringComparer.Ordinal);
    private bool _failed;
    private int _writes;

    public GatewayStatusWriter(KubernetesConfigSource source, ILogger logger, TimeProvider? time = null)
        : base(logger)
    {
        _source = source;
        _client = source.Client;
        _logger = logger;
        _time = time ?? TimeProvider.System;
    }

    /// <summary>How many status writes were sent (for tests).</summary>
    public int Writes => Volatile.Read(ref _writes);

    protected override async Task<bool> WriteAsync(MeshSnapshot snapshot, CancellationToken ct)
    {
        _failed = false;
        await WriteAllAsync(snapshot, ct).ConfigureAwait(false);
        return !_failed;
    }

    private async Task WriteAllAsync(MeshSnapshot snapshot, CancellationToken ct)
    {
        var routing = snapshot.Routing;
        foreach (var g in routing.Gateways)
        {
            if (!_source.TryGetStatus("Gateway", g.Namespace, g.Name, out var generation, out var observed)) continue;
            var conditions = Conditions(g.Conditions, generation, ObservedConditions(observed));
            var status = new JsonObject { ["conditions"] = conditions };
            await WriteIfChangedAsync("gateways", g.Namespace, g.Name, status, observed, ct).ConfigureAwait(false);
        }
        foreach (var r in routing.Routes)
        {
            if (!_source.TryGetStatus("HTTPRoute", r.Namespace, r.Name, out var generation, out var observed)) continue;
            var parents = new JsonArray();
            // Parents another controller wrote stay as they are.
            if (observed is { ValueKind: JsonValueKind.Object } o && o.TryGetProperty("parents", out var existing) && existing.ValueKind == JsonValueKind.Array)
            {
                foreach (var p in existing.EnumerateArray())
                {
                    if (!p.TryGetProperty("controllerName", out var c) || c.GetString() != ControllerName) parents.Add(JsonNode.Parse(p.GetRawText()));
                }
            }
            var ours = 0;
            foreach (var p in r.Parents)
            {
                var refNamespace = p.ParentRef.Namespace.Length > 0 ? p.ParentRef.Namespace : r.Namespace;
                if (p.ParentRef.Kind == "Gateway" && snapshot.FindWaypoint(refNamespace, p.ParentRef.Name) is null) continue;
                var parentRef = new JsonObject
                {
                    ["group"] = p.ParentRef.Group,
                    ["kind"] = p.ParentRef.Kind,
                    ["namespace"] = refNamespace,
                    ["name"] = p.ParentRef.Name,
                };
                if (p.ParentRef.Port != 0) parentRef["port"] = p.ParentRef.Port;
                if (p.ParentRef.SectionName.Length > 0) parentRef["sectionName"] = p.ParentRef.SectionName;
                parents.Add(new JsonObject
                {
                    ["parentRef"] = parentRef,
                    ["controllerName"] = ControllerName,
                    ["conditions"] = Conditions(p.Conditions, generation, ObservedParentConditions(observed, parentRef)),
                });
                ours++;
            }
            if (ours == 0) continue;
            await WriteIfChangedAsync("httproutes", r.Namespace, r.Name, new JsonObject { ["parents"] = parents }, observed, ct).ConfigureAwait(false);
        }
    }

    /// <summary>Istio's controller name for waypoints (GatewayClass istio-waypoint).</summary>
    public const string ControllerName = "istio.io/mesh-controller";

    private async Task WriteIfChangedAsync(string plural, string @namespace, string name, JsonObject status, JsonElement? observed, CancellationToken ct)
    {
        var key = plural + "/" + @namespace + "/" + name;
        var wanted = Canonical(status);
        if (observed is { } seen && Canonical(JsonNode.Parse(seen.GetRawText())) == wanted) return;
        if (_lastWritten.TryGetValue(key, out var written) && written == wanted) return;
        var patch = new JsonObject { ["status"] = status }.ToJsonString();
        try
        {
            using var _ = await _client.CustomObjects.PatchNamespacedCustomObjectStatusWithHttpMessagesAsync(
                new V1Patch(patch, V1Patch.PatchType.MergePatch), KubernetesConfigSource.GatewayGroup, "v1", @namespace, plural, name,
                cancellationToken: ct).ConfigureAwait(false);
            _lastWritten[key] = wanted;
            Interlocked.Increment(ref _writes);
            Log.Written(_logger, plural, @namespace, name);
        }
        catch (Exception e) when (e is k8s.Autorest.HttpOperationException or HttpRequestException or IOException)
        {
            // Not remembered as written: tried again after a delay, or with the next push.
            _lastWritten.Remove(key);
            _failed = true;
            Log.WriteFailed(_logger, plural, @namespace, name, e.Message);
        }
    }

    private JsonArray Conditions(IEnumerable<StatusCondition> conditions, long generation, Dictionary<string, (string Status, string? Since)> observed)
    {
        var now = _time.GetUtcNow().UtcDateTime.ToString("yyyy-MM-dd'T'HH:mm:ss'Z'", System.Globalization.CultureInfo.InvariantCulture);
        var array = new JsonArray();
        foreach (var c in conditions)
        {
            var status = c.Status ? "True" : "False";
            var since = observed.TryGetValue(c.Type, out var was) && was.Status == status && was.Since is not null ? was.Since : now;
            array.Add(new JsonObject
            {
                ["type"] = c.Type,
                ["status"] = status,
                ["reason"] = c.Reason,
                ["message"] = c.Message,
                ["observedGeneration"] = generation,
                ["lastTransitionTime"] = since,
            });
        }
        return array;
    }

    private static Dictionary<string, (string Status, string? Since)> ObservedConditions(JsonElement? status) =>
        status is { ValueKind: JsonValueKind.Object } s && s.TryGetProperty("conditions", out var c) ? ReadConditions(c) : [];

    private static Dictionary<string, (string Status, string? Since)> ObservedParentConditions(JsonElement? status, JsonObject parentRef)
    {
        if (status is not { ValueKind: JsonValueKind.Object } s || !s.TryGetProperty("parents", out var parents) || parents.ValueKind != JsonValueKind.Array) return [];
        var wanted = Canonical(parentRef);
        foreach (var p in parents.EnumerateArray())
        {
            if (p.TryGetProperty("parentRef", out var r) && Canonical(JsonNode.Parse(r.GetRawText())) == wanted && p.TryGetProperty("conditions", out var c))
            {
                return ReadConditions(c);
            }
        }
        return [];
    }

    private static Dictionary<string, (string Status, string? Since)> ReadConditions(JsonElement conditions)
    {
        var result = new Dictionary<string, (string, string?)>(StringComparer.Ordinal);
        if (conditions.ValueKind != JsonValueKind.Array) return result;
        foreach (var c in conditions.EnumerateArray())
        {
            if (c.ValueKind == JsonValueKind.Object && c.TryGetProperty("type", out var t) && t.GetString() is { } type)
            {
                result[type] = (c.TryGetProperty("status", out var st) ? st.GetString() ?? "" : "",
                    c.TryGetProperty("lastTransitionTime", out var since) ? since.GetString() : null);
            }
        }
        return result;
    }

    /// <summary>The JSON with object keys sorted and every lastTransitionTime left out: equal when only times differ.</summary>
    internal static string Canonical(JsonNode? node)
    {
        var sb = new StringBuilder();
        Write(sb, node);
        return sb.ToString();

        static void Write(StringBuilder sb, JsonNode? node)
        {
            switch (node)
            {
                case JsonObject o:
                    var keys = new List<string>(o.Count);
                    foreach (var (k, _) in o)
                    {
                        if (k != "lastTransitionTime") keys.Add(k);
                    }
                    keys.Sort(StringComparer.Ordinal);
                    sb.Append('{');
                    foreach (var k in keys)
                    {
                        sb.Append(JsonSerializer.Serialize(k)).Append(':');
                        Write(sb, o[k]);
                        sb.Append(',');
                    }
                    sb.Append('}');
                    break;
                case JsonArray a:
                    sb.Append('[');
                    foreach (var item in a)
                    {
                        Write(sb, item);
                        sb.Append(',');
                    }
                    sb.Append(']');
                    break;
                case null:
                    sb.Append("null");
                    break;
                default:
                    sb.Append(node.ToJsonString());
                    break;
            }
        }
    }

    private static partial class Log
    {
        [LoggerMessage(1, LogLevel.Information, "Wrote the status of {Plural} {Namespace}/{Name}")]
        public static partial void Written(ILogger logger, string plural, string @namespace, string name);

        [LoggerMessage(2, LogLevel.Warning, "Writing the status of {Plural} {Namespace}/{Name} failed; retrying: {Message}")]
        public static partial void WriteFailed(ILogger logger, string plural, string @namespace, string name, string message);
    }
}

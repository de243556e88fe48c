using System.Text.Json;
using System.Text.Json.Nodes;
using Ambient.Core;
using Ambient.Core.Config;
using Ambient.Ctl.Local;

namespace Ambient.Ctl.Inspect;

/// <summary>
/// Gateway and HTTPRoute status as the running local mesh's istiod-lite computes it, read once from its
/// <c>/debug/waypoints</c> (the <c>gateways</c> and <c>httpRoutes</c> lists, each with a kube-shaped <c>status</c>).
/// istiod-lite is the one that decides what is Accepted and resolved; this only shows it. No answer: every condition
/// is unknown ("-"), as without a mesh.
/// </summary>
internal sealed class IstiodResourceStatus : IResourceStatusSource
{
    private static readonly TimeSpan FetchTimeout = TimeSpan.FromSeconds(2);
    private readonly Dictionary<string, JsonObject> _status;

    private IstiodResourceStatus(Dictionary<string, JsonObject> status) => _status = status;

    public JsonObject? Status(Resource resource) =>
        _status.TryGetValue(Key(resource.Kind, resource.Metadata.Namespace, resource.Metadata.Name), out var s) ? s : null;

    /// <summary>The status of a running mesh, or no status when its istiod-lite does not answer in time.</summary>
    public static IResourceStatusSource FromMesh(LocalState running) =>
        Fetch($"http://{running.ControlAddress}:{MeshPorts.IstiodMonitoring}/debug/waypoints") is { } json && Parse(json) is { } status
            ? status
            : NoResourceStatus.Instance;

    /// <summary>The statuses in a /debug/waypoints answer; null when it is not one.</summary>
    internal static IstiodResourceStatus? Parse(string json)
    {
        JsonNode? root;
        try
        {
            root = JsonNode.Parse(json);
        }
        catch (JsonException)
        {
            return null;
        }
        if (root is not JsonObject doc) return null;
        var status = new Dictionary<string, JsonObject>(StringComparer.Ordinal);
        Add(status, doc["gateways"], "Gateway");
        Add(status, doc["httpRoutes"], "HTTPRoute");
        return new IstiodResourceStatus(status);
    }

    private static void Add(Dictionary<string, JsonObject> into, JsonNode? list, string kind)
    {
        if (list is not JsonArray items) return;
        foreach (var item in items)
        {
            if (item is JsonObject { } o && o["status"] is JsonObject s
                && o["namespace"]?.GetValue<string>() is { } ns && o["name"]?.GetValue<string>() is { } name)
            {
                into[Key(kind, ns, name)] = (JsonObject)s.DeepClone();
            }
        }
    }

    private static string Key(string kind, string @namespace, string name) => kind + "/" + @namespace + "/" + name;

    private static string? Fetch(string url)
    {
        using var http = new HttpClient(new SocketsHttpHandler { UseProxy = false }) { Timeout = FetchTimeout };
        try
        {
            return http.GetStringAsync(new Uri(url)).GetAwaiter().GetResult();
        }
        catch (Exception e) when (e is HttpRequestException or TaskCanceledException or InvalidOperationException)
        {
            return null;
        }
    }
}

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
/// is unknown ("-"), as without a mesh. AuthorizationPolicy status (where it is enforced, its scope, the conversion
/// warnings) and PeerAuthentication status (its level, what ztunnel enforces for it, the warnings) come from
/// <c>/debug/authorizationpolicies</c>, read on the first policy asked about.
/// </summary>
internal sealed class IstiodResourceStatus : IResourceStatusSource
{
    private const string PolicyKind = "AuthorizationPolicy";
    private const string PeerAuthenticationKind = "PeerAuthentication";
    private static readonly TimeSpan FetchTimeout = TimeSpan.FromSeconds(2);
    private readonly Dictionary<string, JsonObject> _status;
    private readonly Lazy<Dictionary<string, JsonObject>> _policies;

    private IstiodResourceStatus(Dictionary<string, JsonObject> status, Func<string?> fetchPolicies)
    {
        _status = status;
        _policies = new Lazy<Dictionary<string, JsonObject>>(() => fetchPolicies() is { } json ? ParsePolicies(json) : []);
    }

    public JsonObject? Status(Resource resource)
    {
        var key = Key(resource.Kind, resource.Metadata.Namespace, resource.Metadata.Name);
        var from = resource.Kind is PolicyKind or PeerAuthenticationKind ? _policies.Value : _status;
        return from.TryGetValue(key, out var s) ? s : null;
    }

    /// <summary>The status of a running mesh, or no status when its istiod-lite does not answer in time.</summary>
    public static IResourceStatusSource FromMesh(LocalState running)
    {
        var debug = $"http://{running.ControlAddress}:{MeshPorts.IstiodMonitoring}/debug/";
        return Fetch(debug + "waypoints") is { } json && Parse(json, () => Fetch(debug + "authorizationpolicies")) is { } status
            ? status
            : NoResourceStatus.Instance;
    }

    /// <summary>The statuses in a /debug/waypoints answer, and the policies' in a /debug/authorizationpolicies
    /// answer once <paramref name="fetchPolicies"/> gives it (null: unknown); null when the first is not one.</summary>
    internal static IstiodResourceStatus? Parse(string json, Func<string?>? fetchPolicies = null)
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
        return new IstiodResourceStatus(status, fetchPolicies ?? (() => null));
    }

    /// <summary>
    /// Each policy of a /debug/authorizationpolicies answer as its status: <c>enforcedBy</c> (ztunnel, waypoint or
    /// none), <c>scope</c> (as pushed to ztunnel) and <c>warnings</c> (how the enforced policy differs from the
    /// written one); and each PeerAuthentication of its <c>peerAuthentications</c> list: <c>level</c> (mesh, namespace,
    /// workload or ignored), <c>enforcedAs</c> (the Authorization ztunnel enforces for it, or none) and <c>warnings</c>.
    /// Anything else (not JSON, no list) gives no status.
    /// </summary>
    private static Dictionary<string, JsonObject> ParsePolicies(string json)
    {
        var into = new Dictionary<string, JsonObject>(StringComparer.Ordinal);
        JsonNode? root;
        try
        {
            root = JsonNode.Parse(json);
        }
        catch (JsonException)
        {
            return into;
        }
        AddPolicies(into, root?["policies"], PolicyKind, ["enforcedBy", "scope", "warnings"]);
        AddPolicies(into, root?["peerAuthentications"], PeerAuthenticationKind, ["level", "enforcedAs", "warnings"]);
        return into;
    }

    private static void AddPolicies(Dictionary<string, JsonObject> into, JsonNode? list, string kind, string[] fields)
    {
        if (list is not JsonArray items) return;
        foreach (var item in items)
        {
            if (item is not JsonObject o || o["namespace"]?.GetValue<string>() is not { } ns || o["name"]?.GetValue<string>() is not { } name) continue;
            var status = new JsonObject();
            foreach (var field in fields)
            {
                if (o[field] is { } value) status[field] = value.DeepClone();
            }
            into[Key(kind, ns, name)] = status;
        }
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

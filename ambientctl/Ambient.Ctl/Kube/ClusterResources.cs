using System.Text.Json;
using System.Text.Json.Nodes;
using Ambient.Config.Yaml;
using Ambient.Core.Config;
using Ambient.Ctl.Inspect;
using k8s;

namespace Ambient.Ctl.Kube;

/// <summary>Where the API serves a kind `ambientctl get` knows: group ("" = core), version and resource.</summary>
internal sealed record ClusterKind(string Kind, string Group, string Version, string Plural)
{
    public string ApiVersion => Group.Length == 0 ? Version : Group + "/" + Version;

    public static IReadOnlyList<ClusterKind> All { get; } =
    [
        new("Namespace", "", "v1", "namespaces"),
        new("Pod", "", "v1", "pods"),
        new("Service", "", "v1", "services"),
        new("ServiceAccount", "", "v1", "serviceaccounts"),
        new("Deployment", "apps", "v1", "deployments"),
        new("Gateway", "gateway.networking.k8s.io", "v1", "gateways"),
        new("HTTPRoute", "gateway.networking.k8s.io", "v1", "httproutes"),
        new("ReferenceGrant", "gateway.networking.k8s.io", "v1beta1", "referencegrants"),
        new("AuthorizationPolicy", "security.istio.io", "v1", "authorizationpolicies"),
        new("PeerAuthentication", "security.istio.io", "v1", "peerauthentications"),
    ];

    public static ClusterKind For(string kind) => All.First(k => k.Kind == kind);
}

/// <summary>
/// The objects of a cluster as the local commands see a mesh folder: the API's JSON, the same typed
/// <see cref="Resource"/>s (parsed by the parser istiod-lite uses, so tables are the local tables), and a
/// <see cref="MeshRuntime"/> whose conditions and pod state come from the objects' status.
/// </summary>
internal static class ClusterResources
{
    /// <summary>The objects of a kind in a namespace (null: every namespace), each with its apiVersion and kind.</summary>
    public static async Task<List<JsonObject>> ListAsync(IKubernetes client, ClusterKind kind, string? ns, CancellationToken ct)
    {
        object list = (kind.Kind, ns) switch
        {
            ("Namespace", _) => await client.CoreV1.ListNamespaceAsync(cancellationToken: ct).ConfigureAwait(false),
            ("Pod", null) => await client.CoreV1.ListPodForAllNamespacesAsync(cancellationToken: ct).ConfigureAwait(false),
            ("Pod", _) => await client.CoreV1.ListNamespacedPodAsync(ns, cancellationToken: ct).ConfigureAwait(false),
            ("Service", null) => await client.CoreV1.ListServiceForAllNamespacesAsync(cancellationToken: ct).ConfigureAwait(false),
            ("Service", _) => await client.CoreV1.ListNamespacedServiceAsync(ns, cancellationToken: ct).ConfigureAwait(false),
            ("ServiceAccount", null) => await client.CoreV1.ListServiceAccountForAllNamespacesAsync(cancellationToken: ct).ConfigureAwait(false),
            ("ServiceAccount", _) => await client.CoreV1.ListNamespacedServiceAccountAsync(ns, cancellationToken: ct).ConfigureAwait(false),
            ("Deployment", null) => await client.AppsV1.ListDeploymentForAllNamespacesAsync(cancellationToken: ct).ConfigureAwait(false),
            ("Deployment", _) => await client.AppsV1.ListNamespacedDeploymentAsync(ns, cancellationToken: ct).ConfigureAwait(false),
            (_, null) => await client.CustomObjects.ListClusterCustomObjectAsync(kind.Group, kind.Version, kind.Plural, cancellationToken: ct).ConfigureAwait(false),
            _ => await client.CustomObjects.ListNamespacedCustomObjectAsync(kind.Group, kind.Version, ns, kind.Plural, cancellationToken: ct).ConfigureAwait(false),
        };
        var root = list is JsonElement element ? JsonNode.Parse(element.GetRawText()) : JsonNode.Parse(KubernetesJson.Serialize(list));
        var items = new List<JsonObject>();
        foreach (var item in root?["items"] as JsonArray ?? [])
        {
            if (item is not JsonObject obj) continue;
            // Items of a typed list carry no apiVersion/kind on the wire; the parser needs them.
            var copy = (JsonObject)obj.DeepClone();
            copy["apiVersion"] = kind.ApiVersion;
            copy["kind"] = kind.Kind;
            items.Add(copy);
        }
        return items;
    }

    /// <summary>The typed resources of the objects (an object the parser rejects is left out, as istiod-lite would).</summary>
    public static IReadOnlyList<Resource> Parse(IReadOnlyList<JsonObject> objects)
    {
        if (objects.Count == 0) return [];
        var text = string.Join("---\n", objects.Select(o => ResourceDocument.ToYaml(o)));
        var parsed = ManifestParser.Parse("cluster", text);
        return parsed.Resources;
    }

    /// <summary>What `get` and `waypoint list` show beside the objects: their status and the pods' state, from the API.</summary>
    public static MeshRuntime Runtime(IReadOnlyList<Resource> resources, IReadOnlyList<JsonObject> objects)
    {
        var pods = new Dictionary<string, (PodRuntime, string)>(StringComparer.Ordinal);
        foreach (var obj in objects)
        {
            if (obj["kind"]?.GetValue<string>() != "Pod") continue;
            var status = obj["status"];
            var ready = 0;
            var restarts = 0;
            foreach (var c in status?["containerStatuses"] as JsonArray ?? [])
            {
                if (c?["ready"]?.GetValue<bool>() == true) ready++;
                restarts += c?["restartCount"]?.GetValue<int>() ?? 0;
            }
            var containers = (obj["spec"]?["containers"] as JsonArray)?.Count ?? 0;
            pods[Name(obj)] = (new PodRuntime(ready, containers, restarts, obj["spec"]?["nodeName"]?.GetValue<string>(), status?["podIP"]?.GetValue<string>()),
                status?["phase"]?.GetValue<string>() ?? "Unknown");
        }
        return new MeshRuntime(resources, state: null, new ObjectStatus(objects), pods);
    }

    private static string Name(JsonObject obj) =>
        (obj["metadata"]?["namespace"]?.GetValue<string>() ?? "") + "/" + obj["metadata"]?["name"]?.GetValue<string>();

    /// <summary>Conditions as the cluster's controllers wrote them into each object's status.</summary>
    private sealed class ObjectStatus(IReadOnlyList<JsonObject> objects) : IResourceStatusSource
    {
        private readonly Dictionary<string, JsonObject> _status = objects
            .Where(o => o["status"] is JsonObject)
            .ToDictionary(o => o["kind"]!.GetValue<string>() + ":" + Name(o), o => (JsonObject)o["status"]!, StringComparer.Ordinal);

        public JsonObject? Status(Resource resource) =>
            _status.GetValueOrDefault(resource.Kind + ":" + (resource is NamespaceResource ? "" : resource.Metadata.Namespace) + "/" + resource.Metadata.Name);
    }
}

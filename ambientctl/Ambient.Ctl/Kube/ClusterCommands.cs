using System.Net;
using System.Text.Json;
using System.Text.Json.Nodes;
using Ambient.Core.Config;
using Ambient.Ctl.Cli;
using Ambient.Ctl.Inspect;
using Ambient.Ctl.Labels;
using Ambient.Ctl.Local;
using Ambient.Ctl.Waypoints;
using k8s;
using k8s.Autorest;
using k8s.Models;

namespace Ambient.Ctl.Kube;

/// <summary>
/// Which mesh a command acts on. <c>--kubeconfig</c> or <c>--context</c> select the cluster; <c>-f PATH</c> selects
/// that local config; with neither, a running local mesh wins, else the kubeconfig's current context (or the
/// in-cluster service account); with none of those, the local-mode error says what to name.
/// </summary>
internal static class MeshTarget
{
    public static bool UseCluster(string? file, KubeConnection kube)
    {
        if (kube.Explicit) return true;
        if (file is not null) return false;
        if (LocalCommands.RunningMesh(out var state) is { } supervisor)
        {
            supervisor.Dispose();
            if (state is not null) return false;
        }
        return kube.Available;
    }
}

/// <summary>
/// `label`, `waypoint` and `get` on a cluster, through KubernetesClient: what the local commands do to the mesh
/// folder, done to the API objects (waypoints are the Gateway `istioctl waypoint apply` creates, applied server-side).
/// </summary>
internal static class ClusterCommands
{
    private const string FieldManager = "ambientctl";
    private const string GatewayGroup = "gateway.networking.k8s.io";
    private const string GatewayVersion = "v1";
    private const string Gateways = "gateways";

    /// <summary>Connects, runs, and turns API and connection failures into kubectl-like messages and exit codes.</summary>
    public static async Task<int> RunAsync(KubeConnection connection, string verb, TextWriter error, Func<IKubernetes, Task<int>> action)
    {
        try
        {
            using var client = connection.Connect();
            return await action(client).ConfigureAwait(false);
        }
        catch (KubeConnectionException e)
        {
            error.WriteLine($"{verb}: {e.Message}");
            return ExitCodes.InvalidInput;
        }
        catch (HttpOperationException e)
        {
            error.WriteLine($"{verb}: {Describe(e)}");
            return ExitCodes.Failed;
        }
        catch (HttpRequestException e)
        {
            error.WriteLine($"{verb}: cannot reach the cluster: {e.Message}");
            return ExitCodes.Failed;
        }
    }

    /// <summary>"Error from server (Reason): message", from the Status the API answered with.</summary>
    internal static string Describe(HttpOperationException e)
    {
        try
        {
            var status = JsonNode.Parse(e.Response.Content ?? "");
            if (status?["message"]?.GetValue<string>() is { } message)
            {
                return $"Error from server ({status["reason"]?.GetValue<string>() ?? e.Response.StatusCode.ToString()}): {message}";
            }
        }
        catch (JsonException)
        {
        }
        return $"Error from server ({(int)e.Response.StatusCode} {e.Response.StatusCode})";
    }

    private static bool IsNotFound(HttpOperationException e) => e.Response.StatusCode == HttpStatusCode.NotFound;

    private static async Task<V1Namespace?> ReadNamespaceAsync(IKubernetes client, string name, CancellationToken ct)
    {
        try
        {
            return await client.CoreV1.ReadNamespaceAsync(name, cancellationToken: ct).ConfigureAwait(false);
        }
        catch (HttpOperationException e) when (IsNotFound(e))
        {
            return null;
        }
    }

    private static Task LabelNamespaceAsync(IKubernetes client, string name, LabelChange change, CancellationToken ct)
    {
        var labels = new JsonObject { [change.Key] = change.Value };
        var patch = new JsonObject { ["metadata"] = new JsonObject { ["labels"] = labels } };
        return client.CoreV1.PatchNamespaceAsync(new V1Patch(patch.ToJsonString(), V1Patch.PatchType.MergePatch), name, fieldManager: FieldManager, cancellationToken: ct);
    }

    // ---- label ----

    public static async Task<int> LabelAsync(IKubernetes client, string name, LabelChange change, TextWriter output, TextWriter error, CancellationToken ct)
    {
        var ns = await ReadNamespaceAsync(client, name, ct).ConfigureAwait(false);
        if (ns is null)
        {
            error.WriteLine($"label: Error from server (NotFound): namespaces \"{name}\" not found");
            return ExitCodes.InvalidInput;
        }
        var what = change.Value is null ? $"{change.Key} removed from" : $"{change.Key}={change.Value} on";
        if ((ns.Metadata.Labels?.TryGetValue(change.Key, out var current) == true ? current : null) == change.Value)
        {
            output.WriteLine($"namespace/{name} unchanged ({what} it already)");
            return ExitCodes.Ok;
        }
        await LabelNamespaceAsync(client, name, change, ct).ConfigureAwait(false);
        output.WriteLine($"namespace/{name} labelled ({what} it)");
        return ExitCodes.Ok;
    }

    // ---- waypoint ----

    /// <summary>The Gateway `istioctl waypoint apply` creates, as the API takes it.</summary>
    internal static JsonObject WaypointGateway(WaypointSpec spec) => new()
    {
        ["apiVersion"] = GatewayGroup + "/" + GatewayVersion,
        ["kind"] = "Gateway",
        ["metadata"] = new JsonObject
        {
            ["name"] = spec.Name,
            ["namespace"] = spec.Namespace,
            ["labels"] = new JsonObject { [WaypointLabels.For] = spec.For },
        },
        ["spec"] = new JsonObject
        {
            ["gatewayClassName"] = GatewayResource.WaypointClass,
            ["listeners"] = new JsonArray(new JsonObject
            {
                ["name"] = WaypointSpec.ListenerName, ["port"] = WaypointSpec.HbonePort, ["protocol"] = "HBONE",
            }),
        },
    };

    public static async Task<int> WaypointApplyAsync(IKubernetes client, WaypointSpec spec, bool enrollNamespace, TextWriter output, TextWriter error, CancellationToken ct)
    {
        if (Ambient.Config.Yaml.Validation.Dns1123Label(spec.Name) is { } nameError)
        {
            error.WriteLine($"waypoint apply: waypoint name '{spec.Name}': {nameError}");
            return ExitCodes.InvalidInput;
        }
        if (await ReadNamespaceAsync(client, spec.Namespace, ct).ConfigureAwait(false) is null)
        {
            error.WriteLine($"waypoint apply: Error from server (NotFound): namespaces \"{spec.Namespace}\" not found");
            return ExitCodes.InvalidInput;
        }
        // Server-side apply, as istioctl does: creates the Gateway or brings ours back to this shape.
        var patch = new V1Patch(WaypointGateway(spec).ToJsonString(), V1Patch.PatchType.ApplyPatch);
        await client.CustomObjects.PatchNamespacedCustomObjectAsync(patch, GatewayGroup, GatewayVersion, spec.Namespace, Gateways, spec.Name,
            fieldManager: FieldManager, force: true, cancellationToken: ct).ConfigureAwait(false);
        output.WriteLine($"waypoint {spec.Display} applied");
        if (!enrollNamespace) return ExitCodes.Ok;
        await LabelNamespaceAsync(client, spec.Namespace, new LabelChange(WaypointLabels.Use, spec.Name), ct).ConfigureAwait(false);
        output.WriteLine($"namespace {spec.Namespace} labeled with \"{WaypointLabels.Use}: {spec.Name}\"");
        return ExitCodes.Ok;
    }

    /// <summary>The waypoints (Gateways of class istio-waypoint) of a namespace (null: all), typed, with their objects.</summary>
    private static async Task<(IReadOnlyList<Resource> Resources, List<JsonObject> Objects)> WaypointsAsync(IKubernetes client, string? ns, CancellationToken ct)
    {
        var objects = await ClusterResources.ListAsync(client, ClusterKind.For("Gateway"), ns, ct).ConfigureAwait(false);
        objects.RemoveAll(o => o["spec"]?["gatewayClassName"]?.GetValue<string>() != GatewayResource.WaypointClass);
        return (ClusterResources.Parse(objects), objects);
    }

    public static async Task<int> WaypointListAsync(IKubernetes client, string? ns, TextWriter output, OutputStyle style, CancellationToken ct)
    {
        var (resources, objects) = await WaypointsAsync(client, ns, ct).ConfigureAwait(false);
        return WaypointCommand.List(resources, ClusterResources.Runtime(resources, objects), ns, output, style);
    }

    public static async Task<int> WaypointStatusAsync(IKubernetes client, string ns, string? name, TextWriter output, TextWriter error, OutputStyle style, CancellationToken ct)
    {
        var (resources, _) = await WaypointsAsync(client, ns, ct).ConfigureAwait(false);
        return await WaypointCommand.StatusAsync(resources, new ClusterWaypointReadiness(client), ns, name, output, error, style, ct).ConfigureAwait(false);
    }

    public static async Task<int> WaypointDeleteAsync(IKubernetes client, string ns, string[] names, bool all, TextWriter output, TextWriter error, CancellationToken ct)
    {
        if (names.Length > 0 == all)
        {
            error.WriteLine("waypoint delete: name the waypoints to delete, or --all");
            return ExitCodes.InvalidInput;
        }
        var (resources, _) = await WaypointsAsync(client, ns, ct).ConfigureAwait(false);
        var waypoints = resources.Select(r => r.Metadata.Name).ToHashSet(StringComparer.Ordinal);
        var targets = all ? [.. waypoints.Order(StringComparer.Ordinal)] : names;
        if (all && targets.Length == 0) output.WriteLine($"No waypoints found in namespace {ns}.");
        var code = ExitCodes.Ok;
        foreach (var name in targets)
        {
            // Only a waypoint is deleted: a Gateway of another class under that name is not ours to remove.
            if (!waypoints.Contains(name))
            {
                error.WriteLine($"waypoint delete: waypoint {ns}/{name} not found");
                code = ExitCodes.Failed;
                continue;
            }
            await client.CustomObjects.DeleteNamespacedCustomObjectAsync(GatewayGroup, GatewayVersion, ns, Gateways, name, cancellationToken: ct).ConfigureAwait(false);
            output.WriteLine($"waypoint {ns}/{name} deleted");
        }
        return code;
    }

    // ---- get ----

    public static async Task<int> GetAsync(IKubernetes client, GetCommand.GetRequest request, TextWriter output, TextWriter error, OutputStyle style, CancellationToken ct)
    {
        if (ResourceKinds.Find(request.Kind) is not { } kind)
        {
            // The local command's message, listing the kinds it knows.
            return GetCommand.Run(request, [], new MeshRuntime([], null), output, error, style);
        }
        var objects = await ClusterResources.ListAsync(client, ClusterKind.For(kind.Kind), kind.Namespaced ? request.Namespace : null, ct).ConfigureAwait(false);
        if (request.Name is not null) objects.RemoveAll(o => o["metadata"]?["name"]?.GetValue<string>() != request.Name);
        if (request.Output is "json" or "yaml" && objects.Count > 0)
        {
            // The API's objects as they are, status and all, as kubectl prints them.
            var root = ResourceDocument.Wrap(objects, single: request.Name is not null);
            output.Write(request.Output == "json" ? ResourceDocument.ToJson(root) : ResourceDocument.ToYaml(root));
            return ExitCodes.Ok;
        }
        var resources = ClusterResources.Parse(objects);
        return GetCommand.Run(request, resources, ClusterResources.Runtime(resources, objects), output, error, style);
    }
}

/// <summary>A waypoint serves once its Gateway is Programmed, as the cluster's controller reports it.</summary>
internal sealed class ClusterWaypointReadiness(IKubernetes client) : IWaypointReadiness
{
    public async Task<(bool Serving, string Reason)> CheckAsync(string @namespace, string name, CancellationToken ct)
    {
        object gateway;
        try
        {
            gateway = await client.CustomObjects.GetNamespacedCustomObjectAsync("gateway.networking.k8s.io", "v1", @namespace, "gateways", name, ct).ConfigureAwait(false);
        }
        catch (HttpOperationException e) when (e.Response.StatusCode == HttpStatusCode.NotFound)
        {
            return (false, "the Gateway does not exist");
        }
        var root = gateway is JsonElement element ? JsonNode.Parse(element.GetRawText()) : null;
        foreach (var condition in root?["status"]?["conditions"] as JsonArray ?? [])
        {
            if (condition?["type"]?.GetValue<string>() != "Programmed") continue;
            var status = condition["status"]?.GetValue<string>();
            var reason = condition["reason"]?.GetValue<string>() ?? "";
            var message = condition["message"]?.GetValue<string>();
            return status == "True"
                ? (true, "Programmed")
                : (false, $"Programmed={status}" + (reason.Length > 0 ? "/" + reason : "") + (string.IsNullOrEmpty(message) ? "" : ": " + message));
        }
        return (false, "no Programmed condition yet (is istiod-lite running?)");
    }
}

using System.Text.Json.Nodes;
using Ambient.Core.Config;
using Ambient.Core.Model;
using Ambient.Ctl.Local;

namespace Ambient.Ctl.Inspect;

/// <summary>A pod as the local supervisor runs it: containers running, containers recorded, restarts.</summary>
internal sealed record PodRuntime(int Running, int Containers, int Restarts, string? Node, string? Address);

/// <summary>
/// The status of a resource as the control plane reports it, shaped as Kubernetes stores it: a Gateway's
/// <c>{conditions: [{type, status, reason, message}]}</c> (Accepted, Programmed), an HTTPRoute's
/// <c>{parents: [{parentRef, controllerName, conditions}]}</c> (Accepted, ResolvedRefs per parent). Null: unknown.
/// </summary>
internal interface IResourceStatusSource
{
    JsonObject? Status(Resource resource);
}

/// <summary>No control plane status: every condition is unknown.</summary>
internal sealed class NoResourceStatus : IResourceStatusSource
{
    public static NoResourceStatus Instance { get; } = new();
    public JsonObject? Status(Resource resource) => null;
}

/// <summary>
/// What `get` shows beside the config: pod processes from the local state file (null when no mesh runs), addresses
/// from the allocator istiod-lite uses, and status conditions from <see cref="IResourceStatusSource"/>.
/// </summary>
internal sealed class MeshRuntime
{
    private readonly Dictionary<string, PodRuntime> _pods = new(StringComparer.Ordinal);
    private readonly Dictionary<(string Kind, string Namespace, string Name), Resource> _resources = [];

    private readonly Dictionary<string, string> _podPhases = new(StringComparer.Ordinal);

    /// <param name="clusterPods">Pods as a cluster reports them ("namespace/name" to state and phase), for Kubernetes mode.</param>
    public MeshRuntime(IReadOnlyList<Resource> resources, LocalState? state, IResourceStatusSource? status = null,
        IReadOnlyDictionary<string, (PodRuntime Runtime, string Phase)>? clusterPods = null)
    {
        foreach (var (key, (runtime, phase)) in clusterPods ?? new Dictionary<string, (PodRuntime, string)>())
        {
            _pods[key] = runtime;
            _podPhases[key] = phase;
        }
        foreach (var r in resources) _resources.TryAdd((r.Kind, r is NamespaceResource ? "" : r.Metadata.Namespace, r.Metadata.Name), r);
        // The running mesh's address plan (netns mode's CIDRs), so `get` shows the addresses istiod-lite publishes.
        Addresses = LoopbackAddressAllocator.AssignAll(resources, state?.Addresses() ?? AddressRanges.Loopback);
        Status = status ?? NoResourceStatus.Instance;
        MeshRunning = state is not null;
        if (state is null) return;
        foreach (var c in state.Components)
        {
            if (c.Pod is not { } pod) continue;
            var key = pod.Namespace + "/" + pod.Name;
            var now = _pods.GetValueOrDefault(key) ?? new PodRuntime(0, 0, 0, c.Node, c.Address);
            _pods[key] = now with { Running = now.Running + (c.Pid > 0 ? 1 : 0), Containers = now.Containers + 1, Restarts = now.Restarts + c.Restarts };
        }
    }

    public LoopbackAssignment Addresses { get; }
    public IResourceStatusSource Status { get; }
    public bool MeshRunning { get; }

    /// <summary>A resource of the config by kind and name (a Namespace's namespace is ""), null when there is none.</summary>
    public Resource? Find(string kind, string @namespace, string name) => _resources.GetValueOrDefault((kind, @namespace, name));

    public PodRuntime? Pod(string @namespace, string name) => _pods.GetValueOrDefault(@namespace + "/" + name);

    /// <summary>Phase as kubectl shows it: a cluster's pod phase; locally Running, Waiting (recorded, not up), Pending (not started), "-" without a mesh.</summary>
    public string Phase(PodResource pod) => _podPhases.TryGetValue(pod.Metadata.Namespace + "/" + pod.Metadata.Name, out var phase) ? phase : Pod(pod.Metadata.Namespace, pod.Metadata.Name) switch
    {
        { Running: > 0 } r when r.Running == r.Containers => "Running",
        { } => "Waiting",
        null when MeshRunning => "Pending",
        _ => "-",
    };

    /// <summary>
    /// One condition for a table cell: "True", "False/Reason", "-" when unknown. For a route with several parents, the
    /// first parent where it is not True decides (kubectl users look for the one that is wrong).
    /// </summary>
    public string Condition(Resource resource, string type)
    {
        if (Status.Status(resource) is not { } status) return "-";
        string? shown = null;
        if (status["parents"] is JsonArray parents)
        {
            foreach (var parent in parents)
            {
                var one = Find(parent?["conditions"], type);
                if (one is null) continue;
                shown = one;
                if (one != "True") break;
            }
        }
        else
        {
            shown = Find(status["conditions"], type);
        }
        return shown ?? "-";
    }

    private static string? Find(JsonNode? conditions, string type)
    {
        if (conditions is not JsonArray list) return null;
        foreach (var c in list)
        {
            if (c?["type"]?.GetValue<string>() != type) continue;
            var value = c["status"]?.GetValue<string>() ?? "Unknown";
            return value == "True" || c["reason"]?.GetValue<string>() is not { Length: > 0 } reason ? value : value + "/" + reason;
        }
        return null;
    }
}

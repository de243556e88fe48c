using Ambient.Core.Config;
using Ambient.Core.Model;
using Ambient.Ctl.Local;

namespace Ambient.Ctl.Inspect;

/// <summary>A pod as the local supervisor runs it: containers running, containers recorded, restarts.</summary>
internal sealed record PodRuntime(int Running, int Containers, int Restarts, string? Node, string? Address);

/// <summary>
/// Status conditions of a resource as the control plane reports them (Gateway <c>Programmed</c>, HTTPRoute
/// <c>Accepted</c> and <c>ResolvedRefs</c>), by condition type -> "True"/"False". istiod-lite is to publish them on its
/// debug endpoint; until a source answers, commands show "-".
/// </summary>
internal interface IResourceStatusSource
{
    IReadOnlyDictionary<string, string>? Conditions(Resource resource);
}

/// <summary>No control plane status: every condition is unknown.</summary>
internal sealed class NoResourceStatus : IResourceStatusSource
{
    public static NoResourceStatus Instance { get; } = new();
    public IReadOnlyDictionary<string, string>? Conditions(Resource resource) => null;
}

/// <summary>
/// What `get` shows beside the config: pod processes from the local state file (null when no mesh runs), addresses
/// from the allocator istiod-lite uses, and status conditions from <see cref="IResourceStatusSource"/>.
/// </summary>
internal sealed class MeshRuntime
{
    private readonly Dictionary<string, PodRuntime> _pods = new(StringComparer.Ordinal);

    public MeshRuntime(IReadOnlyList<Resource> resources, LocalState? state, IResourceStatusSource? status = null)
    {
        Addresses = LoopbackAddressAllocator.AssignAll(resources);
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

    public PodRuntime? Pod(string @namespace, string name) => _pods.GetValueOrDefault(@namespace + "/" + name);

    /// <summary>Phase as kubectl shows it: Running, Waiting (recorded, not up), Pending (not started), "-" without a mesh.</summary>
    public string Phase(PodResource pod) => Pod(pod.Metadata.Namespace, pod.Metadata.Name) switch
    {
        { Running: > 0 } r when r.Running == r.Containers => "Running",
        { } => "Waiting",
        null when MeshRunning => "Pending",
        _ => "-",
    };

    public string Condition(Resource resource, string type) => Status.Conditions(resource)?.GetValueOrDefault(type) ?? "-";
}

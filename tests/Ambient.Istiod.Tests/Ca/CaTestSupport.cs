using Ambient.Core.Identity;
using Ambient.Istiod.Ca;

namespace Ambient.Istiod.Tests.Ca;

/// <summary>A clock the test moves by hand.</summary>
internal sealed class ManualTime(DateTimeOffset now) : TimeProvider
{
    public DateTimeOffset Now { get; set; } = now;

    public override DateTimeOffset GetUtcNow() => Now;
}

/// <summary>Pods by node, as the mesh snapshot would answer.</summary>
internal sealed class PodPlacement : IWorkloadDirectory
{
    private readonly HashSet<(string Node, SpiffeId Identity)> _pods = [];

    public PodPlacement Add(string node, string spiffeId)
    {
        _pods.Add((node, SpiffeId.Parse(spiffeId)));
        return this;
    }

    public bool HasPodOnNode(string node, SpiffeId identity) => _pods.Contains((node, identity));
}

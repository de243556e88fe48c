using System.Net;
using Ambient.Core.Config;

namespace Ambient.Core.Model;

/// <summary>
/// What one <see cref="MeshBuilder.Build(IReadOnlyList{Resource}, MeshOptions?, MeshBuildCache?)"/> can hand the next:
/// each pod's workload as converted and matched to its services (before a waypoint is attached), keyed by the pod record
/// itself. A config source keeps the record of an unchanged object across generations, so at 10,000 pods a one-pod change
/// converts and matches one pod, not all of them.
/// </summary>
/// <remarks>
/// A workload is reused only when everything it was derived from is unchanged: the same pod record (a changed pod is a
/// new record), the same address, the same options, and in its namespace an equal Namespace resource (enrollment) and
/// equal selecting Services (which services it serves, on which ports). Anything else converts the pod again. Entries
/// of pods absent from a build are dropped by that build. One build at a time: the owner serializes builds.
/// </remarks>
internal sealed class MeshBuildCache
{
    private MeshOptions? _options;
    private Dictionary<PodResource, Entry> _pods = new(ReferenceEqualityComparer.Instance);
    private Dictionary<string, NamespaceInputs> _namespaces = new(StringComparer.Ordinal);

    private Dictionary<PodResource, Entry> _nextPods = new(ReferenceEqualityComparer.Instance);
    private Dictionary<string, NamespaceInputs> _nextNamespaces = new(StringComparer.Ordinal);
    // Per build: whether a namespace's inputs equal the last build's (decided once per namespace).
    private readonly Dictionary<string, bool> _unchanged = new(StringComparer.Ordinal);

    // The last assignment and the objects it was computed from (Pods, Services, waypoint Gateways, in config order). The
    // caller may change its list in place between builds, so the objects are copied into arrays owned here, two of them
    // swapped per build so a steady mesh allocates nothing for this.
    private LoopbackAssignment? _assignment;
    private Resource[] _addressed = [];
    private int _addressedCount;
    private Resource[] _nextAddressed = [];

    /// <summary>Workloads reused by the last build (for tests and the generation probe).</summary>
    public int LastReused { get; private set; }

    /// <summary>Whether the last build reused the addresses of the one before (for tests and the generation probe).</summary>
    public bool LastAssignmentReused { get; private set; }

    /// <summary>Starts a build: a build with other options reuses nothing.</summary>
    internal void Begin(MeshOptions options)
    {
        if (_options is null || !_options.Equals(options))
        {
            _pods.Clear();
            _namespaces.Clear();
            _assignment = null;
        }
        _options = options;
        _nextPods.Clear();
        _nextNamespaces.Clear();
        _unchanged.Clear();
        LastReused = 0;
    }

    /// <summary>
    /// The workload built for <paramref name="pod"/> by the last build, if nothing it depends on changed since:
    /// <paramref name="nsResource"/> and <paramref name="selecting"/> (the namespace's Services with a selector, in build
    /// order) are what the pod's namespace holds in this build.
    /// </summary>
    internal bool TryReuse(PodResource pod, string ns, NamespaceResource? nsResource, List<ServiceResource>? selecting,
        IPAddress? address, out WorkloadInfo workload)
    {
        // The namespace first: this build records its inputs whether or not this pod is reused.
        if (NamespaceUnchanged(ns, nsResource, selecting) && _pods.TryGetValue(pod, out var entry) && Equals(entry.Address, address))
        {
            workload = entry.Workload;
            _nextPods[pod] = entry;
            LastReused++;
            return true;
        }
        workload = null!;
        return false;
    }

    /// <summary>
    /// The addresses of <paramref name="resources"/>: the last build's assignment when every object it depends on is
    /// unchanged for addressing (a pod whose readiness or labels changed keeps its address; one with another IP or node, or
    /// any object added, removed or renamed, assigns again), else a new <see cref="LoopbackAddressAllocator.AssignAll"/>.
    /// AssignAll is a pure function of these objects' addressing fields, so reusing it gives an equal result.
    /// </summary>
    internal LoopbackAssignment Assignment(IReadOnlyList<Resource> resources, AddressRanges ranges, bool waypointsDeployed)
    {
        if (_nextAddressed.Length < resources.Count)
        {
            _nextAddressed = new Resource[resources.Count];
        }
        var next = _nextAddressed;
        var n = 0;
        var same = _assignment is not null;
        for (var i = 0; i < resources.Count; i++)
        {
            var r = resources[i];
            if (r is PodResource or ServiceResource or GatewayResource { IsWaypoint: true })
            {
                same = same && n < _addressedCount && SameForAddressing(_addressed[n], r);
                next[n++] = r;
            }
        }
        // Records of objects gone from the config are not kept alive by the spare array.
        if (_addressedCount > n)
        {
            Array.Clear(_addressed, n, _addressedCount - n);
        }
        (_addressed, _nextAddressed) = (next, _addressed);
        same = same && n == _addressedCount;
        _addressedCount = n;
        LastAssignmentReused = same;
        if (!same)
        {
            _assignment = LoopbackAddressAllocator.AssignAll(resources, ranges, waypointsDeployed);
        }
        return _assignment!;
    }

    /// <summary>
    /// True when <paramref name="after"/> gets what <paramref name="before"/> got from AssignAll: same kind, namespace and
    /// name, and equal in every field but those listed as not read by it, so a field added to a record later counts as
    /// an addressing input until it is listed here.
    /// </summary>
    private static bool SameForAddressing(Resource before, Resource after)
    {
        if (ReferenceEquals(before, after))
        {
            return true;
        }
        if (!string.Equals(before.Metadata.Name, after.Metadata.Name, StringComparison.Ordinal)
            || !string.Equals(before.Metadata.Namespace, after.Metadata.Namespace, StringComparison.Ordinal))
        {
            return false;
        }
        return (before, after) switch
        {
            (PodResource a, PodResource b) => (a with
            {
                Metadata = b.Metadata, Ready = b.Ready, Uid = b.Uid, ServiceAccountName = b.ServiceAccountName, Containers = b.Containers,
            }).Equals(b),
            (ServiceResource a, ServiceResource b) => (a with { Metadata = b.Metadata, Selector = b.Selector, Ports = b.Ports }).Equals(b),
            // A waypoint's node comes from its annotations: its metadata counts whole.
            (GatewayResource a, GatewayResource b) => (a with { Listeners = b.Listeners }).Equals(b),
            _ => false,
        };
    }

    internal void Remember(PodResource pod, IPAddress? address, WorkloadInfo workload) => _nextPods[pod] = new Entry(workload, address);

    /// <summary>Ends a build: what it built becomes what the next one may reuse.</summary>
    internal void Complete()
    {
        (_pods, _nextPods) = (_nextPods, _pods);
        (_namespaces, _nextNamespaces) = (_nextNamespaces, _namespaces);
        _nextPods.Clear();
        _nextNamespaces.Clear();
    }

    private bool NamespaceUnchanged(string ns, NamespaceResource? nsResource, List<ServiceResource>? selecting)
    {
        if (_unchanged.TryGetValue(ns, out var unchanged))
        {
            return unchanged;
        }
        var now = new NamespaceInputs(nsResource, selecting);
        _nextNamespaces.Add(ns, now);
        unchanged = _namespaces.TryGetValue(ns, out var before) && before.SameAs(now);
        _unchanged.Add(ns, unchanged);
        return unchanged;
    }

    private readonly record struct Entry(WorkloadInfo Workload, IPAddress? Address);

    /// <param name="Selecting">The namespace's Services with a selector, in build order; null when it has none.</param>
    private readonly record struct NamespaceInputs(NamespaceResource? Namespace, List<ServiceResource>? Selecting)
    {
        // Records compare by value (reference first): an unchanged object costs a pointer comparison.
        public bool SameAs(NamespaceInputs other)
        {
            if (!Equals(Namespace, other.Namespace))
            {
                return false;
            }
            var a = Selecting;
            var b = other.Selecting;
            if (a is null || b is null)
            {
                return a is null && b is null;
            }
            if (a.Count != b.Count)
            {
                return false;
            }
            for (var i = 0; i < a.Count; i++)
            {
                if (!a[i].Equals(b[i]))
                {
                    return false;
                }
            }
            return true;
        }
    }
}

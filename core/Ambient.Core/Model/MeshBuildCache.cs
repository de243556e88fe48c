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

    /// <summary>Workloads reused by the last build (for tests and the generation probe).</summary>
    public int LastReused { get; private set; }

    /// <summary>Starts a build: a build with other options reuses nothing.</summary>
    internal void Begin(MeshOptions options)
    {
        if (_options is null || !_options.Equals(options))
        {
            _pods.Clear();
            _namespaces.Clear();
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

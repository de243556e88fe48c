using System.Collections.Immutable;
using System.Runtime.InteropServices;
using Ambient.Core.Model;
using Ambient.Core.Protos.Discovery;
using Ambient.Core.Protos.Workload;
using Google.Protobuf;
using Google.Protobuf.WellKnownTypes;

namespace Ambient.Core.Xds;

/// <summary>
/// Every resource of one type URL, ready to push: name -> envoy Resource {name, version, Any, aliases}.
/// Immutable after construction. Each resource is serialized exactly once, when the set is built; pushes to
/// any number of clients reuse the cached Resource messages (callers must not mutate them).
/// Version = FNV-1a-64 of the serialized resource, so an unchanged resource keeps its version across rebuilds
/// and istiod restarts, and a reconnecting ztunnel's initial_resource_versions still match.
/// </summary>
internal sealed class XdsResourceSet
{
    private static long s_lastId;

    private readonly Resource[] _ordered;
    // The model object each resource was serialized from, by position (to detect "unchanged" without serializing).
    private readonly object?[] _sources;
    // Name -> position. Built on first use when the set was built in place of its base (see ForAddresses): then no
    // lookup by name is needed to build it or to diff it against its base.
    private Dictionary<string, int>? _byName;
    // Which set this one was built from in place, and what changed since: Diff against that set is this delta.
    private readonly long _id = Interlocked.Increment(ref s_lastId);
    private readonly long _baseId;
    private readonly XdsDelta? _fromBase;

    private XdsResourceSet(string typeUrl, Resource[] ordered, object?[] sources, Dictionary<string, int>? byName,
        long baseId = 0, XdsDelta? fromBase = null)
    {
        TypeUrl = typeUrl;
        _ordered = ordered;
        _sources = sources;
        _byName = byName;
        _baseId = baseId;
        _fromBase = fromBase;
    }

    public string TypeUrl { get; }

    public int Count => _ordered.Length;

    /// <summary>All resources in build order (workloads by uid, then services by key, for addresses).</summary>
    public ImmutableArray<Resource> Resources => ImmutableCollectionsMarshal.AsImmutableArray(_ordered);

    public static XdsResourceSet Empty(string typeUrl) => new(typeUrl, [], [], new Dictionary<string, int>(StringComparer.Ordinal));

    public bool TryGet(string name, out Resource resource)
    {
        var found = ByName.TryGetValue(name, out var i);
        resource = found ? _ordered[i] : null!;
        return found;
    }

    public bool Contains(string name) => ByName.ContainsKey(name);

    public string? VersionOf(string name) => ByName.TryGetValue(name, out var i) ? _ordered[i].Version : null;

    private Dictionary<string, int> ByName => Volatile.Read(ref _byName) ?? IndexNames();

    private Dictionary<string, int> IndexNames()
    {
        // Names are unique: the set this one was built in place of had these names at these positions.
        var byName = new Dictionary<string, int>(_ordered.Length, StringComparer.Ordinal);
        for (var i = 0; i < _ordered.Length; i++)
        {
            byName.Add(_ordered[i].Name, i);
        }
        // Sessions may race to build it; either result is the same, one is kept.
        return Interlocked.CompareExchange(ref _byName, byName, null) ?? byName;
    }

    private bool TryGetEntry(string name, out Resource resource, out object? source)
    {
        if (ByName.TryGetValue(name, out var i))
        {
            resource = _ordered[i];
            source = _sources[i];
            return true;
        }
        resource = null!;
        source = null;
        return false;
    }

    /// <summary>
    /// istio.workload.Address resources for every workload (name = uid) and service (name = ns/hostname), each
    /// aliased by <c>network/ip</c> of its addresses. With <paramref name="previous"/> (the set built from the
    /// last snapshot), a workload or service whose wire fields are unchanged reuses the previous Resource object
    /// without being serialized again: a rebuild after a one-pod change serializes one workload, not 10,000.
    /// </summary>
    public static XdsResourceSet ForAddresses(MeshSnapshot snapshot, XdsResourceSet? previous = null)
    {
        if (previous is not null && previous.TypeUrl != XdsTypeUrls.Address)
        {
            throw new ArgumentException($"previous set is {previous.TypeUrl}, not {XdsTypeUrls.Address}", nameof(previous));
        }
        if (previous is not null && ForAddressesInPlace(snapshot, previous) is { } inPlace)
        {
            return inPlace;
        }
        var builder = new Builder(XdsTypeUrls.Address, snapshot.Workloads.Length + snapshot.Services.Length, previous);
        foreach (var w in snapshot.Workloads)
        {
            if (previous is not null && previous.TryGetEntry(w.Uid, out var old, out var oldSource)
                && oldSource is WorkloadInfo oldWorkload && oldWorkload.WireEquals(w))
            {
                builder.Reuse(old, w);
                continue;
            }
            builder.Add(w.Uid, new Address { Workload = w.ToProto() }, Aliases(w), w);
        }
        foreach (var s in snapshot.Services)
        {
            if (previous is not null && previous.TryGetEntry(s.Key, out var old, out var oldSource)
                && oldSource is ServiceInfo oldService && oldService.WireEquals(s))
            {
                builder.Reuse(old, s);
                continue;
            }
            builder.Add(s.Key, new Address { Service = s.ToProto() }, Aliases(s), s);
        }
        return builder.Build();
    }

    /// <summary>
    /// The usual generation: the same workloads and services as <paramref name="previous"/>'s (none added, removed or
    /// renamed), some of them changed. Each is compared with the one at its position, no lookup by name, and what
    /// changed is kept as the delta from <paramref name="previous"/>, so neither building nor diffing walks a name index.
    /// Null when the names do not line up.
    /// </summary>
    private static XdsResourceSet? ForAddressesInPlace(MeshSnapshot snapshot, XdsResourceSet previous)
    {
        var workloads = snapshot.Workloads;
        var services = snapshot.Services;
        if (previous.Count != workloads.Length + services.Length)
        {
            return null;
        }
        // Unchanged objects share their name strings with the previous resources: mostly a reference comparison.
        for (var i = 0; i < workloads.Length; i++)
        {
            if (!string.Equals(previous._ordered[i].Name, workloads[i].Uid, StringComparison.Ordinal))
            {
                return null;
            }
        }
        for (var i = 0; i < services.Length; i++)
        {
            if (!string.Equals(previous._ordered[workloads.Length + i].Name, services[i].Key, StringComparison.Ordinal))
            {
                return null;
            }
        }
        var ordered = new Resource[previous.Count];
        var sources = new object?[previous.Count];
        var changed = ImmutableArray.CreateBuilder<Resource>();
        for (var i = 0; i < workloads.Length; i++)
        {
            var w = workloads[i];
            var old = previous._ordered[i];
            sources[i] = w;
            ordered[i] = previous._sources[i] is WorkloadInfo oldWorkload && oldWorkload.WireEquals(w)
                ? old
                : Changed(changed, NewOrSame(XdsTypeUrls.Address, w.Uid, new Address { Workload = w.ToProto() }, Aliases(w), old), old);
        }
        for (var i = 0; i < services.Length; i++)
        {
            var s = services[i];
            var at = workloads.Length + i;
            var old = previous._ordered[at];
            sources[at] = s;
            ordered[at] = previous._sources[at] is ServiceInfo oldService && oldService.WireEquals(s)
                ? old
                : Changed(changed, NewOrSame(XdsTypeUrls.Address, s.Key, new Address { Service = s.ToProto() }, Aliases(s), old), old);
        }
        return new XdsResourceSet(XdsTypeUrls.Address, ordered, sources, byName: null, previous._id,
            new XdsDelta(XdsTypeUrls.Address, changed.DrainToImmutable(), []));

        static Resource Changed(ImmutableArray<Resource>.Builder changed, Resource resource, Resource old)
        {
            if (!ReferenceEquals(resource, old))
            {
                changed.Add(resource);
            }
            return resource;
        }
    }

    private static string[] Aliases(WorkloadInfo w)
    {
        var aliases = new string[w.Addresses.Length];
        for (var i = 0; i < aliases.Length; i++)
        {
            aliases[i] = ProtoAddresses.Alias(w.Network, w.Addresses[i]);
        }
        return aliases;
    }

    private static string[] Aliases(ServiceInfo s)
    {
        var aliases = new string[s.Vips.Length];
        for (var i = 0; i < aliases.Length; i++)
        {
            aliases[i] = ProtoAddresses.Alias(s.Network, s.Vips[i]);
        }
        return aliases;
    }

    /// <summary>
    /// istio.security.Authorization resources, each named <c>namespace/name</c> as ztunnel keys them (and as
    /// Workload.authorization_policies refers to them). A policy whose bytes did not change keeps its previous Resource
    /// and version, so only changed policies are pushed.
    /// </summary>
    public static XdsResourceSet ForAuthorizations(IReadOnlyCollection<Ambient.Core.Protos.Security.Authorization> policies, XdsResourceSet? previous = null)
    {
        if (previous is not null && previous.TypeUrl != XdsTypeUrls.Authorization)
        {
            throw new ArgumentException($"previous set is {previous.TypeUrl}, not {XdsTypeUrls.Authorization}", nameof(previous));
        }
        var builder = new Builder(XdsTypeUrls.Authorization, policies.Count, previous);
        foreach (var p in policies)
        {
            builder.Add(p.Namespace + "/" + p.Name, p, [], source: null);
        }
        return builder.Build();
    }

    /// <summary>A set from arbitrary messages of <paramref name="typeUrl"/> (names must be unique).</summary>
    public static XdsResourceSet Create(string typeUrl, IEnumerable<(string Name, IMessage Message, string[] Aliases)> resources, XdsResourceSet? previous = null)
    {
        var builder = new Builder(typeUrl, resources.TryGetNonEnumeratedCount(out var n) ? n : 16, previous);
        foreach (var (name, message, aliases) in resources)
        {
            builder.Add(name, message, aliases, source: null);
        }
        return builder.Build();
    }

    /// <summary>
    /// What changed from <paramref name="previous"/> to <paramref name="next"/>: resources that are new or whose
    /// version differs, and names that disappeared. A null previous means "nothing sent yet".
    /// </summary>
    public static XdsDelta Diff(XdsResourceSet? previous, XdsResourceSet next)
    {
        if (previous is null)
        {
            return new XdsDelta(next.TypeUrl, next.Resources, []);
        }
        if (previous.TypeUrl != next.TypeUrl)
        {
            throw new ArgumentException($"cannot diff {previous.TypeUrl} against {next.TypeUrl}");
        }
        if (next._fromBase is { } fromBase && next._baseId == previous._id)
        {
            return fromBase;
        }
        var changed = ImmutableArray.CreateBuilder<Resource>();
        foreach (var r in next._ordered)
        {
            if (!previous.TryGet(r.Name, out var old)
                || (!ReferenceEquals(old, r) && !string.Equals(old.Version, r.Version, StringComparison.Ordinal)))
            {
                changed.Add(r);
            }
        }
        var removed = ImmutableArray.CreateBuilder<string>();
        foreach (var old in previous._ordered)
        {
            if (!next.Contains(old.Name))
            {
                removed.Add(old.Name);
            }
        }
        return new XdsDelta(next.TypeUrl, changed.DrainToImmutable(), removed.DrainToImmutable());
    }

    /// <summary>
    /// The first response to a (re)connecting client that sent initial_resource_versions: resources it lacks
    /// or holds at another version, and removal of names it knows that no longer exist.
    /// </summary>
    public static XdsDelta ForClient(XdsResourceSet current, IReadOnlyDictionary<string, string> clientKnownVersions)
    {
        var changed = ImmutableArray.CreateBuilder<Resource>();
        foreach (var r in current._ordered)
        {
            if (!clientKnownVersions.TryGetValue(r.Name, out var known) || !string.Equals(known, r.Version, StringComparison.Ordinal))
            {
                changed.Add(r);
            }
        }
        var removed = ImmutableArray.CreateBuilder<string>();
        foreach (var (name, _) in clientKnownVersions)
        {
            if (!current.Contains(name))
            {
                removed.Add(name);
            }
        }
        // The client's map has no defined order; sort so responses are reproducible.
        removed.Sort(StringComparer.Ordinal);
        return new XdsDelta(current.TypeUrl, changed.DrainToImmutable(), removed.DrainToImmutable());
    }

    /// <summary>A new Resource for <paramref name="message"/>, or <paramref name="old"/> when it has the same bytes and aliases.</summary>
    private static Resource NewOrSame(string typeUrl, string name, IMessage message, string[] aliases, Resource? old)
    {
        var bytes = message.ToByteArray();
        var version = StableHash.ToHex(StableHash.Fnv1a64(bytes));
        if (old is not null && old.Version == version && SameAliases(old, aliases))
        {
            return old;
        }
        var resource = new Resource
        {
            Name = name,
            Version = version,
            // The array is ours and never written again: wrap it instead of copying.
            Resource_ = new Any { TypeUrl = typeUrl, Value = UnsafeByteOperations.UnsafeWrap(bytes) },
        };
        resource.Aliases.AddRange(aliases);
        return resource;
    }

    private static bool SameAliases(Resource old, string[] aliases)
    {
        if (old.Aliases.Count != aliases.Length)
        {
            return false;
        }
        for (var i = 0; i < aliases.Length; i++)
        {
            if (!string.Equals(old.Aliases[i], aliases[i], StringComparison.Ordinal))
            {
                return false;
            }
        }
        return true;
    }

    private sealed class Builder(string typeUrl, int capacity, XdsResourceSet? previous)
    {
        private readonly List<Resource> _ordered = new(capacity);
        private readonly List<object?> _sources = new(capacity);
        private readonly Dictionary<string, int> _byName = new(capacity, StringComparer.Ordinal);

        /// <summary>Keeps the previous Resource but remembers the new source, so the old snapshot can be collected.</summary>
        public void Reuse(Resource resource, object source) => Put(resource.Name, resource, source);

        public void Add(string name, IMessage message, string[] aliases, object? source)
        {
            Resource? old = null;
            previous?.TryGet(name, out old);
            Put(name, NewOrSame(typeUrl, name, message, aliases, old), source);
        }

        private void Put(string name, Resource resource, object? source)
        {
            if (!_byName.TryAdd(name, _ordered.Count))
            {
                throw new ArgumentException($"duplicate {typeUrl} resource name '{name}'");
            }
            _ordered.Add(resource);
            _sources.Add(source);
        }

        public XdsResourceSet Build() => new(typeUrl, [.. _ordered], [.. _sources], _byName);
    }
}

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
    private readonly Dictionary<string, Entry> _byName;
    private readonly Resource[] _ordered;

    private XdsResourceSet(string typeUrl, Resource[] ordered, Dictionary<string, Entry> byName)
    {
        TypeUrl = typeUrl;
        _ordered = ordered;
        _byName = byName;
    }

    public string TypeUrl { get; }

    public int Count => _ordered.Length;

    /// <summary>All resources in build order (workloads by uid, then services by key, for addresses).</summary>
    public ImmutableArray<Resource> Resources => ImmutableCollectionsMarshal.AsImmutableArray(_ordered);

    public static XdsResourceSet Empty(string typeUrl) => new(typeUrl, [], new Dictionary<string, Entry>(StringComparer.Ordinal));

    public bool TryGet(string name, out Resource resource)
    {
        var found = _byName.TryGetValue(name, out var entry);
        resource = entry.Resource;
        return found;
    }

    public bool Contains(string name) => _byName.ContainsKey(name);

    public string? VersionOf(string name) => _byName.TryGetValue(name, out var e) ? e.Resource.Version : null;

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
        var builder = new Builder(XdsTypeUrls.Address, snapshot.Workloads.Length + snapshot.Services.Length, previous);
        foreach (var w in snapshot.Workloads)
        {
            if (previous is not null && previous._byName.TryGetValue(w.Uid, out var old)
                && old.Source is WorkloadInfo oldWorkload && oldWorkload.WireEquals(w))
            {
                builder.Reuse(old.Resource, w);
                continue;
            }
            var aliases = new string[w.Addresses.Length];
            for (var i = 0; i < aliases.Length; i++)
            {
                aliases[i] = ProtoAddresses.Alias(w.Network, w.Addresses[i]);
            }
            builder.Add(w.Uid, new Address { Workload = w.ToProto() }, aliases, w);
        }
        foreach (var s in snapshot.Services)
        {
            if (previous is not null && previous._byName.TryGetValue(s.Key, out var old)
                && old.Source is ServiceInfo oldService && oldService.WireEquals(s))
            {
                builder.Reuse(old.Resource, s);
                continue;
            }
            var aliases = new string[s.Vips.Length];
            for (var i = 0; i < aliases.Length; i++)
            {
                aliases[i] = ProtoAddresses.Alias(s.Network, s.Vips[i]);
            }
            builder.Add(s.Key, new Address { Service = s.ToProto() }, aliases, s);
        }
        return builder.Build();
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
        var changed = ImmutableArray.CreateBuilder<Resource>();
        foreach (var r in next._ordered)
        {
            if (!previous._byName.TryGetValue(r.Name, out var old)
                || (!ReferenceEquals(old.Resource, r) && !string.Equals(old.Resource.Version, r.Version, StringComparison.Ordinal)))
            {
                changed.Add(r);
            }
        }
        var removed = ImmutableArray.CreateBuilder<string>();
        foreach (var old in previous._ordered)
        {
            if (!next._byName.ContainsKey(old.Name))
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
            if (!current._byName.ContainsKey(name))
            {
                removed.Add(name);
            }
        }
        // The client's map has no defined order; sort so responses are reproducible.
        removed.Sort(StringComparer.Ordinal);
        return new XdsDelta(current.TypeUrl, changed.DrainToImmutable(), removed.DrainToImmutable());
    }

    /// <summary>A resource and the model object it was serialized from (to detect "unchanged" without serializing).</summary>
    private readonly record struct Entry(Resource Resource, object? Source);

    private sealed class Builder(string typeUrl, int capacity, XdsResourceSet? previous)
    {
        private readonly List<Resource> _ordered = new(capacity);
        private readonly Dictionary<string, Entry> _byName = new(capacity, StringComparer.Ordinal);

        /// <summary>Keeps the previous Resource but remembers the new source, so the old snapshot can be collected.</summary>
        public void Reuse(Resource resource, object source) => Put(resource.Name, resource, source);

        public void Add(string name, IMessage message, string[] aliases, object? source)
        {
            var bytes = message.ToByteArray();
            var version = StableHash.ToHex(StableHash.Fnv1a64(bytes));
            Resource resource;
            if (previous is not null && previous._byName.TryGetValue(name, out var old)
                && old.Resource.Version == version && SameAliases(old.Resource, aliases))
            {
                resource = old.Resource;
            }
            else
            {
                resource = new Resource
                {
                    Name = name,
                    Version = version,
                    // The array is ours and never written again: wrap it instead of copying.
                    Resource_ = new Any { TypeUrl = typeUrl, Value = UnsafeByteOperations.UnsafeWrap(bytes) },
                };
                resource.Aliases.AddRange(aliases);
            }
            Put(name, resource, source);
        }

        private void Put(string name, Resource resource, object? source)
        {
            if (!_byName.TryAdd(name, new Entry(resource, source)))
            {
                throw new ArgumentException($"duplicate {typeUrl} resource name '{name}'");
            }
            _ordered.Add(resource);
        }

        public XdsResourceSet Build() => new(typeUrl, [.. _ordered], _byName);

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
    }
}

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
    private readonly Dictionary<string, Resource> _byName;
    private readonly Resource[] _ordered;

    private XdsResourceSet(string typeUrl, Resource[] ordered, Dictionary<string, Resource> byName)
    {
        TypeUrl = typeUrl;
        _ordered = ordered;
        _byName = byName;
    }

    public string TypeUrl { get; }

    public int Count => _ordered.Length;

    /// <summary>All resources in build order (workloads by uid, then services by key, for addresses).</summary>
    public ImmutableArray<Resource> Resources => ImmutableCollectionsMarshal.AsImmutableArray(_ordered);

    public static XdsResourceSet Empty(string typeUrl) => new(typeUrl, [], new Dictionary<string, Resource>(StringComparer.Ordinal));

    public bool TryGet(string name, out Resource resource) => _byName.TryGetValue(name, out resource!);

    public bool Contains(string name) => _byName.ContainsKey(name);

    public string? VersionOf(string name) => _byName.TryGetValue(name, out var r) ? r.Version : null;

    /// <summary>
    /// istio.workload.Address resources for every workload (name = uid) and service (name = ns/hostname), each
    /// aliased by <c>network/ip</c> of its addresses. Resources whose bytes are unchanged from
    /// <paramref name="previous"/> reuse its Resource object, so unchanged entries keep their identity and the
    /// freshly serialized duplicate is garbage at once.
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
            var aliases = new string[w.Addresses.Length];
            for (var i = 0; i < aliases.Length; i++)
            {
                aliases[i] = ProtoAddresses.Alias(w.Network, w.Addresses[i]);
            }
            builder.Add(w.Uid, new Address { Workload = w.ToProto() }, aliases);
        }
        foreach (var s in snapshot.Services)
        {
            var aliases = new string[s.Vips.Length];
            for (var i = 0; i < aliases.Length; i++)
            {
                aliases[i] = ProtoAddresses.Alias(s.Network, s.Vips[i]);
            }
            builder.Add(s.Key, new Address { Service = s.ToProto() }, aliases);
        }
        return builder.Build();
    }

    /// <summary>istio.security.Authorization resources. Policies are not modelled yet, so the set is empty.</summary>
    public static XdsResourceSet ForAuthorizations(MeshSnapshot snapshot, XdsResourceSet? previous = null)
    {
        _ = snapshot;
        _ = previous;
        return Empty(XdsTypeUrls.Authorization);
    }

    /// <summary>A set from arbitrary messages of <paramref name="typeUrl"/> (names must be unique).</summary>
    public static XdsResourceSet Create(string typeUrl, IEnumerable<(string Name, IMessage Message, string[] Aliases)> resources, XdsResourceSet? previous = null)
    {
        var builder = new Builder(typeUrl, resources.TryGetNonEnumeratedCount(out var n) ? n : 16, previous);
        foreach (var (name, message, aliases) in resources)
        {
            builder.Add(name, message, aliases);
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
                || (!ReferenceEquals(old, r) && !string.Equals(old.Version, r.Version, StringComparison.Ordinal)))
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

    private sealed class Builder(string typeUrl, int capacity, XdsResourceSet? previous)
    {
        private readonly List<Resource> _ordered = new(capacity);
        private readonly Dictionary<string, Resource> _byName = new(capacity, StringComparer.Ordinal);

        public void Add(string name, IMessage message, string[] aliases)
        {
            var bytes = message.ToByteArray();
            var version = StableHash.ToHex(StableHash.Fnv1a64(bytes));
            Resource resource;
            if (previous is not null && previous._byName.TryGetValue(name, out var old) && old.Version == version && SameAliases(old, aliases))
            {
                resource = old;
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
            if (!_byName.TryAdd(name, resource))
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

using System.Collections.Immutable;
using Ambient.Core.Model;
using Ambient.Core.Protos.Discovery;
using Authorization = Ambient.Core.Protos.Security.Authorization;
using Address = Ambient.Core.Protos.Workload.Address;
using Google.Protobuf;
using Envoy = Ambient.Core.Protos.Discovery;

namespace Ambient.Core.Xds;

/// <summary>What applying one response produced: the request to send back, and the new view when it was accepted.</summary>
internal sealed record XdsApplyResult(
    DeltaDiscoveryRequest Reply,
    bool Accepted,
    string? Error,
    MeshSnapshot? Snapshot,
    ImmutableArray<Authorization> Authorizations)
{
    /// <summary>Parts of resources left out of the accepted view that were not already left out before (to log once).</summary>
    public ImmutableArray<string> Skipped { get; init; } = [];
}

/// <summary>
/// The client's copy of everything istiod sent: per type URL, name -> (version, decoded resource). Applies one
/// DeltaDiscoveryResponse at a time, all or nothing: a response that does not decode, or whose result does not
/// build a <see cref="MeshSnapshot"/>, is rolled back and NACKed, so the last good view stays in effect.
/// Not thread-safe: the stream's read loop is its only user.
/// </summary>
internal sealed class DeltaXdsClientCache
{
    // google.rpc.Code INVALID_ARGUMENT: what Envoy and ztunnel put in a NACK's error_detail.
    public const int NackCode = 3;

    private readonly MeshOptions _mesh;
    private readonly Dictionary<string, Entry> _addresses = new(StringComparer.Ordinal);
    private readonly Dictionary<string, Entry> _authorizations = new(StringComparer.Ordinal);

    private readonly record struct Entry(string Version, IMessage Message);

    // What the current snapshot left out; a rebuild reports only what is new, so a push does not repeat old warnings.
    private HashSet<string> _skipped = new(StringComparer.Ordinal);

    public DeltaXdsClientCache(MeshOptions? mesh = null)
    {
        _mesh = mesh ?? MeshOptions.Default;
        Snapshot = MeshSnapshot.FromProtos([], _mesh);
    }

    /// <summary>The last snapshot built from accepted responses.</summary>
    public MeshSnapshot Snapshot { get; private set; }

    public ImmutableArray<Authorization> Authorizations { get; private set; } = [];

    public int Count(string typeUrl) => MapFor(typeUrl)?.Count ?? 0;

    /// <summary>name -> version of what we hold, for initial_resource_versions on reconnect.</summary>
    public void CopyVersions(string typeUrl, IDictionary<string, string> into)
    {
        if (MapFor(typeUrl) is { } map)
        {
            foreach (var (name, entry) in map)
            {
                into[name] = entry.Version;
            }
        }
    }

    public XdsApplyResult Apply(DeltaDiscoveryResponse response)
    {
        ArgumentNullException.ThrowIfNull(response);
        var map = MapFor(response.TypeUrl);
        if (map is null)
        {
            return Nack(response, $"type '{response.TypeUrl}' was not subscribed to");
        }
        // Decode everything before touching the map, so a bad resource leaves no trace.
        var decoded = new List<(string Name, Entry Entry)>(response.Resources.Count);
        foreach (var resource in response.Resources)
        {
            if (!TryDecode(response.TypeUrl, resource, out var message, out var error))
            {
                return Nack(response, error);
            }
            decoded.Add((resource.Name, new Entry(resource.Version, message)));
        }

        // Apply with an undo log: copying a 10,000-entry map per response would cost more than the rare rollback.
        var undo = new List<(string Name, Entry? Previous)>(decoded.Count + response.RemovedResources.Count);
        foreach (var name in response.RemovedResources)
        {
            if (map.Remove(name, out var old))
            {
                undo.Add((name, old));
            }
        }
        foreach (var (name, entry) in decoded)
        {
            undo.Add((name, map.TryGetValue(name, out var old) ? old : null));
            map[name] = entry;
        }

        if (map == _authorizations)
        {
            var policies = ImmutableArray.CreateBuilder<Authorization>(map.Count);
            foreach (var entry in map.Values)
            {
                policies.Add((Authorization)entry.Message);
            }
            Authorizations = policies.MoveToImmutable();
            return Ack(response, null);
        }

        MeshSnapshot snapshot;
        var skipped = new HashSet<string>(StringComparer.Ordinal);
        try
        {
            snapshot = MeshSnapshot.FromProtos(EnumerateAddresses(), _mesh, skipped);
        }
        catch (InvalidDataException ex)
        {
            for (var i = undo.Count - 1; i >= 0; i--)
            {
                var (name, previous) = undo[i];
                if (previous is { } p)
                {
                    map[name] = p;
                }
                else
                {
                    map.Remove(name);
                }
            }
            return Nack(response, ex.Message);
        }
        Snapshot = snapshot;
        var fresh = ImmutableArray.CreateBuilder<string>();
        foreach (var line in skipped)
        {
            if (!_skipped.Contains(line))
            {
                fresh.Add(line);
            }
        }
        _skipped = skipped;
        fresh.Sort(StringComparer.Ordinal);
        return Ack(response, snapshot) with { Skipped = fresh.ToImmutable() };
    }

    private IEnumerable<Address> EnumerateAddresses()
    {
        foreach (var entry in _addresses.Values)
        {
            yield return (Address)entry.Message;
        }
    }

    private Dictionary<string, Entry>? MapFor(string typeUrl) => typeUrl switch
    {
        XdsTypeUrls.Address => _addresses,
        XdsTypeUrls.Authorization => _authorizations,
        _ => null,
    };

    private static bool TryDecode(string typeUrl, Envoy.Resource resource, out IMessage message, out string error)
    {
        message = null!;
        if (string.IsNullOrEmpty(resource.Name))
        {
            error = "a resource has no name";
            return false;
        }
        if (resource.Resource_ is not { } any)
        {
            error = $"resource '{resource.Name}' carries no body";
            return false;
        }
        if (!string.Equals(any.TypeUrl, typeUrl, StringComparison.Ordinal))
        {
            error = $"resource '{resource.Name}' is a '{any.TypeUrl}' in a '{typeUrl}' response";
            return false;
        }
        try
        {
            if (typeUrl == XdsTypeUrls.Address)
            {
                var address = Address.Parser.ParseFrom(any.Value);
                // Field-level problems (bad address bytes, ports) surface when the snapshot is built, naming the
                // workload or service; an empty oneof would not say which resource, so it is caught here.
                if (address.TypeCase == Address.TypeOneofCase.None)
                {
                    error = $"resource '{resource.Name}' carries neither a workload nor a service";
                    return false;
                }
                message = address;
            }
            else
            {
                message = Authorization.Parser.ParseFrom(any.Value);
            }
        }
        catch (Exception ex) when (ex is InvalidProtocolBufferException or InvalidDataException)
        {
            error = $"resource '{resource.Name}': {ex.Message}";
            return false;
        }
        error = "";
        return true;
    }

    private XdsApplyResult Ack(DeltaDiscoveryResponse response, MeshSnapshot? snapshot)
    {
        var reply = new DeltaDiscoveryRequest { TypeUrl = response.TypeUrl, ResponseNonce = response.Nonce };
        return new XdsApplyResult(reply, true, null, snapshot, Authorizations);
    }

    private XdsApplyResult Nack(DeltaDiscoveryResponse response, string error)
    {
        var reply = new DeltaDiscoveryRequest
        {
            TypeUrl = response.TypeUrl,
            ResponseNonce = response.Nonce,
            ErrorDetail = new Protos.Rpc.Status { Code = NackCode, Message = error },
        };
        return new XdsApplyResult(reply, false, error, null, Authorizations);
    }
}

using System.Globalization;
using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;
using System.Threading.Channels;

namespace Ambient.TestCommon.Kube;

/// <summary>An apiserver error: becomes a Status object with this code and reason.</summary>
public sealed class KubeApiException(int code, string reason, string message) : Exception(message)
{
    public int Code { get; } = code;

    public string Reason { get; } = reason;
}

/// <summary>One version of an object: the parsed tree (touched only under the store's lock) and its JSON bytes.</summary>
internal sealed class StoredObject
{
    public StoredObject(JsonObject node, long resourceVersion)
    {
        Node = node;
        ResourceVersion = resourceVersion;
        Json = JsonSerializer.SerializeToUtf8Bytes(node);
    }

    public JsonObject Node { get; }

    public byte[] Json { get; }

    public long ResourceVersion { get; }

    public string Name => Node["metadata"]?["name"]?.GetValue<string>() ?? "";

    public string? Namespace => Node["metadata"]?["namespace"]?.GetValue<string>();
}

/// <summary>A change recorded in the history a watch resumes from.</summary>
internal sealed record StoreEvent(string Type, KubeResourceType ResourceType, StoredObject Object, StoredObject? Previous, long ResourceVersion);

/// <summary>What a watch stream writes next: an event, a bookmark at a resourceVersion, or a 410 then the end.</summary>
internal readonly record struct WatchItem(string Type, byte[]? Json, long ResourceVersion);

/// <summary>One open watch: its filters (evaluated under the store's lock) and its queue.</summary>
internal sealed class StoreWatcher
{
    public required KubeResourceType ResourceType { get; init; }

    public string? Namespace { get; init; }

    public KubeSelector? Labels { get; init; }

    public KubeSelector? Fields { get; init; }

    public bool Bookmarks { get; init; }

    public Channel<WatchItem> Queue { get; } = Channel.CreateUnbounded<WatchItem>(new UnboundedChannelOptions { SingleReader = true });

    public CancellationTokenSource Dropped { get; } = new();

    public bool Matches(StoredObject obj) =>
        (Namespace is null || obj.Namespace == Namespace)
        && (Labels?.Matches(obj.Node) ?? true)
        && (Fields?.Matches(obj.Node) ?? true);

    /// <summary>The event this watcher sees for a change, as the apiserver's watch cache filters: an object that
    /// stops matching is DELETED for it, one that starts matching is ADDED.</summary>
    public WatchItem? Filter(StoreEvent change)
    {
        if (change.ResourceType.Key != ResourceType.Key)
        {
            return null;
        }
        var now = Matches(change.Object);
        var before = change.Previous is not null && Matches(change.Previous);
        var type = change.Type switch
        {
            "MODIFIED" when now && !before => "ADDED",
            "MODIFIED" when !now && before => "DELETED",
            _ => change.Type,
        };
        if (!now && !before)
        {
            return null;
        }
        if (change.Type == "DELETED" && !now)
        {
            return null;
        }
        var json = type == "DELETED" && !now && change.Previous is not null ? change.Previous.Json : change.Object.Json;
        return new WatchItem(type, json, change.ResourceVersion);
    }
}

/// <summary>
/// The fake apiserver's state: objects by resource type and namespace/name, one global monotonically increasing
/// resourceVersion (as etcd's revision), the history of changes a watch resumes from (compactable, as etcd's), and the
/// open watches. Every operation holds one lock; JSON trees are never touched outside it.
/// </summary>
internal sealed class KubeStore
{
    private readonly Lock _gate = new();
    private readonly Dictionary<string, SortedDictionary<string, StoredObject>> _objects = new(StringComparer.Ordinal);
    private readonly List<StoreEvent> _history = [];
    private readonly List<StoreWatcher> _watchers = [];
    private long _resourceVersion = 1000;
    private long _compactedThrough;

    /// <param name="onChange">Called under the lock after each stored change (old, new; null = none), so the server can
    /// follow CRDs and namespace deletion.</param>
    public KubeStore(Action<KubeResourceType, StoredObject?, StoredObject?>? onChange = null)
    {
        OnChange = onChange;
    }

    public Action<KubeResourceType, StoredObject?, StoredObject?>? OnChange { get; }

    public long ResourceVersion
    {
        get
        {
            lock (_gate)
            {
                return _resourceVersion;
            }
        }
    }

    public int HistoryCount
    {
        get
        {
            lock (_gate)
            {
                return _history.Count;
            }
        }
    }

    public int WatchCount
    {
        get
        {
            lock (_gate)
            {
                return _watchers.Count;
            }
        }
    }

    private static string KeyOf(string? ns, string name) => ns is null ? name : ns + "/" + name;

    private SortedDictionary<string, StoredObject> Bucket(KubeResourceType type)
    {
        if (!_objects.TryGetValue(type.Key, out var bucket))
        {
            _objects[type.Key] = bucket = new SortedDictionary<string, StoredObject>(StringComparer.Ordinal);
        }
        return bucket;
    }

    public StoredObject? Get(KubeResourceType type, string? ns, string name)
    {
        lock (_gate)
        {
            return Bucket(type).GetValueOrDefault(KeyOf(ns, name));
        }
    }

    /// <summary>The current objects of a type (in a namespace, or all), in key order, plus the list resourceVersion.</summary>
    public (List<StoredObject> Items, long ResourceVersion, string? Continue) List(
        KubeResourceType type, string? ns, KubeSelector? labels, KubeSelector? fields, int limit, string? continueToken)
    {
        lock (_gate)
        {
            var listVersion = _resourceVersion;
            string? after = null;
            if (!string.IsNullOrEmpty(continueToken))
            {
                (listVersion, after) = DecodeContinue(continueToken);
                if (listVersion <= _compactedThrough)
                {
                    throw new KubeApiException(410, "Expired",
                        "The provided continue parameter is too old to display a consistent list result. You can start a new list without the continue parameter, or use the continue token in this response to retrieve the remainder of the results. Continuing with the provided token results in an inconsistent list - objects that were created, modified, or deleted between the time the first chunk was returned and now may show up in the list.");
                }
            }
            var items = new List<StoredObject>();
            string? next = null;
            foreach (var (key, obj) in Bucket(type))
            {
                if (after is not null && string.CompareOrdinal(key, after) <= 0)
                {
                    continue;
                }
                if ((ns is not null && obj.Namespace != ns) || !(labels?.Matches(obj.Node) ?? true) || !(fields?.Matches(obj.Node) ?? true))
                {
                    continue;
                }
                if (limit > 0 && items.Count == limit)
                {
                    next = EncodeContinue(listVersion, KeyOf(items[^1].Namespace, items[^1].Name));
                    break;
                }
                items.Add(obj);
            }
            return (items, listVersion, next);
        }
    }

    private static string EncodeContinue(long resourceVersion, string key) =>
        Convert.ToBase64String(Encoding.UTF8.GetBytes(resourceVersion.ToString(CultureInfo.InvariantCulture) + "|" + key));

    private static (long, string) DecodeContinue(string token)
    {
        try
        {
            var text = Encoding.UTF8.GetString(Convert.FromBase64String(token));
            var bar = text.IndexOf('|');
            return (long.Parse(text.AsSpan(0, bar), CultureInfo.InvariantCulture), text[(bar + 1)..]);
        }
        catch (Exception e) when (e is FormatException or ArgumentOutOfRangeException)
        {
            throw new KubeApiException(400, "BadRequest", "continue key is not valid: " + e.Message);
        }
    }

    /// <summary>
    /// Runs <paramref name="mutation"/> under the lock with the current object (or null) and stores what it returns
    /// (null = delete) under a new resourceVersion, recording the change. The mutation throws
    /// <see cref="KubeApiException"/> to refuse. With <paramref name="dryRun"/> nothing is stored.
    /// </summary>
    public StoredObject? Mutate(KubeResourceType type, string? ns, string name, bool dryRun, Func<JsonObject?, long, JsonObject?> mutation)
    {
        lock (_gate)
        {
            var bucket = Bucket(type);
            var key = KeyOf(ns, name);
            var current = bucket.GetValueOrDefault(key);
            var next = mutation(current?.Node, _resourceVersion + 1);
            if (next is null)
            {
                if (current is null)
                {
                    return null;
                }
                if (dryRun)
                {
                    return current;
                }
                var version = ++_resourceVersion;
                bucket.Remove(key);
                // The DELETED event carries the object at the deletion's resourceVersion, as the apiserver's does.
                var deleted = Restamp(current.Node, version);
                Publish(new StoreEvent("DELETED", type, deleted, current, version));
                OnChange?.Invoke(type, current, null);
                return deleted;
            }
            if (dryRun)
            {
                return new StoredObject(next, current?.ResourceVersion ?? 0);
            }
            var rv = ++_resourceVersion;
            next["metadata"]!["resourceVersion"] = rv.ToString(CultureInfo.InvariantCulture);
            var stored = new StoredObject(next, rv);
            bucket[key] = stored;
            Publish(new StoreEvent(current is null ? "ADDED" : "MODIFIED", type, stored, current, rv));
            OnChange?.Invoke(type, current, stored);
            return stored;
        }
    }

    private static StoredObject Restamp(JsonObject node, long version)
    {
        var copy = (JsonObject)node.DeepClone();
        copy["metadata"]!["resourceVersion"] = version.ToString(CultureInfo.InvariantCulture);
        return new StoredObject(copy, version);
    }

    /// <summary>Removes every object of a type (a deleted CRD takes its objects with it), recording DELETED events.</summary>
    public void DeleteAll(KubeResourceType type, string? ns = null)
    {
        lock (_gate)
        {
            foreach (var obj in Bucket(type).Values.ToList())
            {
                if (ns is null || obj.Namespace == ns)
                {
                    Mutate(type, obj.Namespace, obj.Name, dryRun: false, (_, _) => null);
                }
            }
        }
    }

    private void Publish(StoreEvent change)
    {
        _history.Add(change);
        foreach (var watcher in _watchers)
        {
            if (watcher.Filter(change) is { } item)
            {
                watcher.Queue.Writer.TryWrite(item);
            }
        }
    }

    /// <summary>
    /// Opens a watch from <paramref name="fromVersion"/> (null or 0: synthetic ADDED for what exists, then changes).
    /// A version older than the compacted history gets a single 410 item, as the apiserver's "too old resource version".
    /// </summary>
    public StoreWatcher Watch(StoreWatcher watcher, long? fromVersion)
    {
        lock (_gate)
        {
            if (fromVersion is null or 0)
            {
                foreach (var obj in Bucket(watcher.ResourceType).Values)
                {
                    if (watcher.Matches(obj))
                    {
                        watcher.Queue.Writer.TryWrite(new WatchItem("ADDED", obj.Json, obj.ResourceVersion));
                    }
                }
            }
            else if (fromVersion < _compactedThrough)
            {
                watcher.Queue.Writer.TryWrite(new WatchItem("ERROR", null, fromVersion.Value));
                watcher.Queue.Writer.TryComplete();
                return watcher;
            }
            else
            {
                foreach (var change in _history)
                {
                    if (change.ResourceVersion > fromVersion && watcher.Filter(change) is { } item)
                    {
                        watcher.Queue.Writer.TryWrite(item);
                    }
                }
            }
            _watchers.Add(watcher);
            return watcher;
        }
    }

    public void Unwatch(StoreWatcher watcher)
    {
        lock (_gate)
        {
            _watchers.Remove(watcher);
        }
    }

    /// <summary>Queues a BOOKMARK at the current resourceVersion on every watch that asked for bookmarks.</summary>
    public void Bookmark()
    {
        lock (_gate)
        {
            foreach (var watcher in _watchers)
            {
                if (watcher.Bookmarks)
                {
                    watcher.Queue.Writer.TryWrite(new WatchItem("BOOKMARK", null, _resourceVersion));
                }
            }
        }
    }

    /// <summary>Forgets history up to now, as etcd compaction: watches and continue tokens from before get 410.</summary>
    public void Compact()
    {
        lock (_gate)
        {
            _compactedThrough = _resourceVersion;
            _history.Clear();
        }
    }

    /// <summary>Ends every open watch with an ERROR event carrying a 410 Status (as a watch that fell behind).</summary>
    public void ExpireWatches()
    {
        lock (_gate)
        {
            foreach (var watcher in _watchers)
            {
                watcher.Queue.Writer.TryWrite(new WatchItem("ERROR", null, _resourceVersion));
                watcher.Queue.Writer.TryComplete();
            }
            _watchers.Clear();
        }
    }

    /// <summary>Cuts every open watch connection without a word, as a network failure or apiserver restart.</summary>
    public int DropWatches()
    {
        List<StoreWatcher> dropped;
        lock (_gate)
        {
            dropped = [.. _watchers];
            _watchers.Clear();
        }
        foreach (var watcher in dropped)
        {
            try
            {
                watcher.Dropped.Cancel();
            }
            catch (ObjectDisposedException)
            {
                // The watch ended on its own (its request finished and disposed the source) after the list was taken.
            }
        }
        return dropped.Count;
    }
}

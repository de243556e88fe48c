using System.Collections.Immutable;
using System.Text.Json;
using Ambient.Core.Config;
using k8s;
using k8s.Autorest;
using k8s.Models;
using Microsoft.Extensions.Logging;

namespace Ambient.Config.Kubernetes;

/// <summary>
/// The mesh config read from the Kubernetes API: each modelled kind is listed and watched (<see cref="KindWatch{T, TList}"/>),
/// every event updates that kind's map of converted objects, and a snapshot of the whole is published after a short
/// quiet period, so a burst of events (a rollout, a relist) becomes one generation. Nothing is re-listed or
/// re-converted per event; the consumer sees the same <see cref="ConfigSnapshot"/> records the YAML folder yields.
/// </summary>
/// <remarks>
/// An object that turns invalid keeps contributing its last valid form, with its errors reported, as a file does in
/// folder mode. A kind that cannot be read (CRD missing, RBAC) is an error in the snapshot, and the rest of the mesh
/// is served.
/// </remarks>
internal sealed partial class KubernetesConfigSource : IConfigSource, IObjectSink
{
    public const string GatewayGroup = "gateway.networking.k8s.io";
    public const string SecurityGroup = "security.istio.io";

    private static readonly TimeSpan DefaultDebounce = TimeSpan.FromMilliseconds(10);

    private readonly IKubernetes _client;
    private readonly ILogger _logger;
    private readonly TimeSpan _debounce;
    private readonly List<IKindWatch> _watches = [];

    // Guards the maps below; events of all kinds and the publisher meet here.
    private readonly Lock _lock = new();
    private readonly Dictionary<string, Dictionary<string, ObjectEntry>> _objects = new(StringComparer.Ordinal);
    // Every resource by Resource.Key (ordinal), kept sorted so a snapshot is one pass, not a sort of the whole mesh.
    private readonly SortedDictionary<string, Resource> _resources = new(StringComparer.Ordinal);
    private readonly SortedDictionary<string, ImmutableArray<ConfigError>> _errors = new(StringComparer.Ordinal);
    private readonly SortedDictionary<string, string> _problems = new(StringComparer.Ordinal);
    private bool _dirty;
    private long _lastEventTimestamp;

    private readonly SemaphoreSlim _signal = new(0, int.MaxValue);
    private readonly SnapshotPublication _published = new(nameof(KubernetesConfigSource));
    private readonly CancellationTokenSource _stop = new();
    private readonly List<Task> _tasks = [];
    private int _started;
    private int _disposed;

    public KubernetesConfigSource(IKubernetes client, ILogger logger, TimeSpan? debounce = null)
    {
        _client = client;
        _logger = logger;
        _debounce = debounce ?? DefaultDebounce;
        AddCoreKinds();
        AddCustom("Gateway", GatewayGroup, "v1", "gateways", withStatus: true);
        AddCustom("HTTPRoute", GatewayGroup, "v1", "httproutes", withStatus: true);
        AddCustom("ReferenceGrant", GatewayGroup, "v1beta1", "referencegrants", withStatus: false);
        AddCustom("AuthorizationPolicy", SecurityGroup, "v1", "authorizationpolicies", withStatus: false);
        AddCustom("PeerAuthentication", SecurityGroup, "v1", "peerauthentications", withStatus: false);
    }

    public IKubernetes Client => _client;

    public ConfigSnapshot Current => _published.Current;

    public event Action<ConfigSnapshot>? Changed;

    /// <summary>The kinds watched, in the order they are listed.</summary>
    public IReadOnlyList<string> Kinds => _watches.ConvertAll(static w => w.Kind);

    /// <summary>The resourceVersion each kind's watch resumes from (null while it relists); for tests and debugging.</summary>
    public string? ResourceVersionOf(string kind) => _watches.Find(w => w.Kind == kind)?.ResourceVersion;

    /// <summary>Starts every list and watch and completes once each kind has listed (generation 1).</summary>
    public async Task StartAsync(CancellationToken cancellationToken)
    {
        ObjectDisposedException.ThrowIf(Volatile.Read(ref _disposed) != 0, this);
        if (Interlocked.Exchange(ref _started, 1) != 0) throw new InvalidOperationException("KubernetesConfigSource was already started");
        foreach (var w in _watches)
        {
            _tasks.Add(Task.Run(() => w.RunAsync(_stop.Token)));
        }
        var synced = new Task[_watches.Count];
        for (var i = 0; i < synced.Length; i++) synced[i] = _watches[i].Synced;
        await Task.WhenAll(synced).WaitAsync(cancellationToken).ConfigureAwait(false);
        Publish(force: true);
        _tasks.Add(Task.Run(() => PublishLoopAsync(_stop.Token)));
    }

    public Task<ConfigSnapshot> WaitForGenerationAsync(long generation, CancellationToken ct) => _published.WaitAsync(generation, ct);

    /// <summary>The metadata.generation and the status the API server holds for an object we write status for.</summary>
    public bool TryGetStatus(string kind, string @namespace, string name, out long generation, out JsonElement? status)
    {
        lock (_lock)
        {
            if (_objects.TryGetValue(kind, out var map) && map.TryGetValue(@namespace + "/" + name, out var entry))
            {
                generation = entry.Generation;
                status = entry.Status;
                return true;
            }
        }
        generation = 0;
        status = null;
        return false;
    }

    /// <summary>metadata.uid of an object we write status for (Gateway, HTTPRoute); null when not known.</summary>
    public string? UidOf(string kind, string @namespace, string name)
    {
        lock (_lock)
        {
            return _objects.TryGetValue(kind, out var map) && map.TryGetValue(@namespace + "/" + name, out var entry) ? entry.Uid : null;
        }
    }

    void IObjectSink.Replace(string kind, Dictionary<string, ObjectEntry> objects)
    {
        lock (_lock)
        {
            var map = _objects[kind];
            List<string>? gone = null;
            foreach (var key in map.Keys)
            {
                if (!objects.ContainsKey(key)) (gone ??= []).Add(key);
            }
            if (gone is not null)
            {
                foreach (var key in gone) Set(kind, map, key, null);
            }
            foreach (var (key, entry) in objects)
            {
                Set(kind, map, key, entry);
            }
        }
        Wake();
    }

    void IObjectSink.Apply(string kind, string key, ObjectEntry? entry)
    {
        lock (_lock)
        {
            Set(kind, _objects[kind], key, entry);
        }
        Wake();
    }

    void IObjectSink.SetProblem(string kind, string? problem)
    {
        lock (_lock)
        {
            if (problem is null ? _problems.Remove(kind) : !_problems.TryGetValue(kind, out var was) || was != problem)
            {
                if (problem is not null) _problems[kind] = problem;
                _dirty = true;
            }
        }
        Wake();
    }

    // Under _lock. Updates one object in its kind's map and in the merged resources and errors.
    private void Set(string kind, Dictionary<string, ObjectEntry> map, string key, ObjectEntry? entry)
    {
        map.TryGetValue(key, out var old);
        if (entry is not null && old is not null && entry.Conversion.Resource is null && !entry.Conversion.Errors.IsEmpty
            && old.Conversion.Resource is { } lastGood)
        {
            // Turned invalid: keep serving the last valid form (as a file that stops parsing does), and say why.
            entry = entry with { Conversion = new ObjectConversion(lastGood, entry.Conversion.Errors) };
        }
        if (entry is null)
        {
            if (old is null) return;
            map.Remove(key);
        }
        else
        {
            map[key] = entry;
            // Status-only updates (our own writes, the kubelet's heartbeats) convert to the same records: nothing to publish.
            if (old is not null && old.Conversion.Equals(entry.Conversion)) return;
        }
        if (old?.Conversion.Resource is { } previous)
        {
            _resources.Remove(previous.Key);
        }
        if (entry?.Conversion.Resource is { } next)
        {
            _resources[next.Key] = next;
        }
        var errorKey = kind + "/" + key;
        if (entry is null || entry.Conversion.Errors.IsEmpty) _errors.Remove(errorKey);
        else _errors[errorKey] = entry.Conversion.Errors;
        _dirty = true;
        Volatile.Write(ref _lastEventTimestamp, System.Diagnostics.Stopwatch.GetTimestamp());
    }

    private void Wake()
    {
        try { _signal.Release(); }
        catch (SemaphoreFullException) { }
    }

    private async Task PublishLoopAsync(CancellationToken ct)
    {
        while (!ct.IsCancellationRequested)
        {
            try
            {
                await _signal.WaitAsync(ct).ConfigureAwait(false);
                await DebounceAsync(ct).ConfigureAwait(false);
                while (_signal.Wait(0)) { }
                Publish(force: false);
            }
            catch (OperationCanceledException) when (ct.IsCancellationRequested)
            {
                break;
            }
            catch (Exception e)
            {
                Log.PublishFailed(_logger, e);
            }
        }
    }

    // Events must be quiet for the debounce period, but no longer than 10x it, so a steady stream still publishes.
    private async Task DebounceAsync(CancellationToken ct)
    {
        if (_debounce <= TimeSpan.Zero) return;
        var started = System.Diagnostics.Stopwatch.GetTimestamp();
        var longest = 10 * _debounce;
        while (true)
        {
            var now = System.Diagnostics.Stopwatch.GetTimestamp();
            var quietFor = System.Diagnostics.Stopwatch.GetElapsedTime(Volatile.Read(ref _lastEventTimestamp), now);
            var waited = System.Diagnostics.Stopwatch.GetElapsedTime(started, now);
            if (quietFor >= _debounce || waited >= longest) return;
            var rest = _debounce - quietFor;
            await Task.Delay(rest < longest - waited ? rest : longest - waited, ct).ConfigureAwait(false);
        }
    }

    private void Publish(bool force)
    {
        ConfigSnapshot next;
        lock (_lock)
        {
            if (!_dirty && !force) return;
            _dirty = false;
            var resources = ImmutableArray.CreateBuilder<Resource>(_resources.Count);
            foreach (var r in _resources.Values) resources.Add(r);
            var errors = ImmutableArray.CreateBuilder<ConfigError>();
            foreach (var (kind, problem) in _problems)
            {
                errors.Add(new ConfigError(new SourceLocation(kind, 0), "", problem));
            }
            foreach (var list in _errors.Values) errors.AddRange(list);
            next = new ConfigSnapshot(0, resources.MoveToImmutable(), errors.ToImmutable(), []);
        }
        var previous = _published.Current;
        if (previous.Generation > 0 && next.SameContent(previous)) return;
        next = next with { Generation = previous.Generation + 1 };
        Log.Generation(_logger, next.Generation, next.Resources.Length, next.Errors.Length);
        _published.Publish(next);
        SnapshotPublication.Raise(Changed, next, (s, e) => Log.HandlerFailed(_logger, s.Generation, e));
    }

    public void Dispose()
    {
        if (Interlocked.Exchange(ref _disposed, 1) != 0) return;
        _stop.Cancel();
        try { Task.WaitAll([.. _tasks], TimeSpan.FromSeconds(5)); }
        catch (AggregateException) { }
        _published.Close();
    }

    private void AddCoreKinds()
    {
        Add<V1Namespace, V1NamespaceList>("Namespace", (c, rv, w, t, ct) => _client.CoreV1.ListNamespaceWithHttpMessagesAsync(
            allowWatchBookmarks: w ? true : null, continueParameter: c, limit: w ? null : PageSize, resourceVersion: rv, timeoutSeconds: t, watch: w ? true : null, cancellationToken: ct),
            static o => new ObjectEntry(KubernetesObjects.Namespace(o)));
        Add<V1ServiceAccount, V1ServiceAccountList>("ServiceAccount", (c, rv, w, t, ct) => _client.CoreV1.ListServiceAccountForAllNamespacesWithHttpMessagesAsync(
            allowWatchBookmarks: w ? true : null, continueParameter: c, limit: w ? null : PageSize, resourceVersion: rv, timeoutSeconds: t, watch: w ? true : null, cancellationToken: ct),
            static o => new ObjectEntry(KubernetesObjects.ServiceAccount(o)));
        Add<V1Pod, V1PodList>("Pod", (c, rv, w, t, ct) => _client.CoreV1.ListPodForAllNamespacesWithHttpMessagesAsync(
            allowWatchBookmarks: w ? true : null, continueParameter: c, limit: w ? null : PageSize, resourceVersion: rv, timeoutSeconds: t, watch: w ? true : null, cancellationToken: ct),
            static o => new ObjectEntry(KubernetesObjects.Pod(o)));
        Add<V1Service, V1ServiceList>("Service", (c, rv, w, t, ct) => _client.CoreV1.ListServiceForAllNamespacesWithHttpMessagesAsync(
            allowWatchBookmarks: w ? true : null, continueParameter: c, limit: w ? null : PageSize, resourceVersion: rv, timeoutSeconds: t, watch: w ? true : null, cancellationToken: ct),
            static o => new ObjectEntry(KubernetesObjects.Service(o)));
        Add<V1EndpointSlice, V1EndpointSliceList>("EndpointSlice", (c, rv, w, t, ct) => _client.DiscoveryV1.ListEndpointSliceForAllNamespacesWithHttpMessagesAsync(
            allowWatchBookmarks: w ? true : null, continueParameter: c, limit: w ? null : PageSize, resourceVersion: rv, timeoutSeconds: t, watch: w ? true : null, cancellationToken: ct),
            static o => new ObjectEntry(KubernetesObjects.EndpointSlice(o)));
    }

    private const int PageSize = 500;

    private void AddCustom(string kind, string group, string version, string plural, bool withStatus)
    {
        Add<CustomResource, CustomResourceList>(kind, (c, rv, w, t, ct) => _client.CustomObjects.ListClusterCustomObjectWithHttpMessagesAsync<CustomResourceList>(
            group, version, plural, allowWatchBookmarks: w ? true : null, continueParameter: c, limit: w ? null : PageSize, resourceVersion: rv,
            timeoutSeconds: t, watch: w ? true : null, cancellationToken: ct),
            o => new ObjectEntry(KubernetesObjects.Custom(o, kind), withStatus ? o.Metadata?.Generation ?? 0 : 0, withStatus ? o.Status : null)
            {
                Uid = withStatus ? o.Metadata?.Uid : null,
            });
    }

    private void Add<T, TList>(string kind, KindWatch<T, TList>.ListCall list, Func<T, ObjectEntry> convert)
        where T : class, IKubernetesObject<V1ObjectMeta>
        where TList : class, IItems<T>, IKubernetesObject<V1ListMeta>
    {
        _objects.Add(kind, new Dictionary<string, ObjectEntry>(StringComparer.Ordinal));
        _watches.Add(new KindWatch<T, TList>(kind, list, convert, this, _logger));
    }

    private static partial class Log
    {
        [LoggerMessage(1, LogLevel.Information, "Config generation {Generation} from the Kubernetes API: {Resources} resources, {Errors} errors")]
        public static partial void Generation(ILogger logger, long generation, int resources, int errors);

        [LoggerMessage(2, LogLevel.Error, "Config change handler failed for generation {Generation}")]
        public static partial void HandlerFailed(ILogger logger, long generation, Exception exception);

        [LoggerMessage(3, LogLevel.Error, "Publishing a config snapshot failed")]
        public static partial void PublishFailed(ILogger logger, Exception exception);
    }
}

/// <summary>The kind-independent face of a <see cref="KindWatch{T, TList}"/>.</summary>
internal interface IKindWatch
{
    string Kind { get; }
    string? ResourceVersion { get; }
    Task Synced { get; }
    Task RunAsync(CancellationToken ct);
}

using System.Net;
using k8s;
using k8s.Autorest;
using k8s.Models;
using Microsoft.Extensions.Logging;

namespace Ambient.Config.Kubernetes;

/// <summary>Where a <see cref="KindWatch{T, TList}"/> delivers what it learns; called from one task per kind.</summary>
internal interface IObjectSink
{
    /// <summary>The whole current set of a kind, from a (re)list: objects missing from it were deleted meanwhile.</summary>
    void Replace(string kind, Dictionary<string, ObjectEntry> objects);

    /// <summary>An object added or modified (<paramref name="entry"/>), or deleted (null).</summary>
    void Apply(string kind, string key, ObjectEntry? entry);

    /// <summary>The kind cannot be read (not served, forbidden, unreachable); null once it can again.</summary>
    void SetProblem(string kind, string? problem);
}

/// <summary>One object as the source keeps it: its conversion, and for objects whose status we write, what it holds.</summary>
internal sealed record ObjectEntry(ObjectConversion Conversion, long Generation = 0, System.Text.Json.JsonElement? Status = null)
{
    /// <summary>metadata.uid of the objects whose status we write (a Gateway's owns its waypoint's objects).</summary>
    public string? Uid { get; init; }
}

/// <summary>
/// A reflector for one kind, as client-go's: list (in pages) to learn the objects and a resourceVersion, then watch
/// from that version with bookmarks, applying each event. A watch that ends (server timeout, dropped connection)
/// resumes from the last version seen, so no event is lost or repeated; <c>410 Gone</c> (the version was compacted)
/// relists, and the relist is applied as a diff. Failures back off (doubling from 100 ms to 30 s, with jitter, so
/// replicas do not retry in step).
/// </summary>
internal sealed partial class KindWatch<T, TList> : IKindWatch
    where T : class, IKubernetesObject<V1ObjectMeta>
    where TList : class, IItems<T>, IKubernetesObject<V1ListMeta>
{
    public delegate Task<HttpOperationResponse<TList>> ListCall(string? continueToken, string? resourceVersion, bool watch, int? timeoutSeconds, CancellationToken ct);

    private static readonly TimeSpan FirstBackoff = TimeSpan.FromMilliseconds(100);
    private static readonly TimeSpan MaxBackoff = TimeSpan.FromSeconds(30);

    private readonly string _kind;
    private readonly ListCall _list;
    private readonly Func<T, ObjectEntry> _convert;
    private readonly IObjectSink _sink;
    private readonly ILogger _logger;
    private TimeSpan _backoff = FirstBackoff;

    public KindWatch(string kind, ListCall list, Func<T, ObjectEntry> convert, IObjectSink sink, ILogger logger)
    {
        _kind = kind;
        _list = list;
        _convert = convert;
        _sink = sink;
        _logger = logger;
    }

    public string Kind => _kind;

    /// <summary>The version the next watch starts from; null when the next step is a (re)list.</summary>
    public string? ResourceVersion { get; private set; }

    /// <summary>Completed after the first successful list (or the first time the kind proves unavailable).</summary>
    public Task Synced => _synced.Task;

    private readonly TaskCompletionSource _synced = new(TaskCreationOptions.RunContinuationsAsynchronously);

    /// <summary>Lists and watches until cancelled.</summary>
    public async Task RunAsync(CancellationToken ct)
    {
        while (!ct.IsCancellationRequested)
        {
            try
            {
                if (ResourceVersion is null)
                {
                    await ListAsync(ct).ConfigureAwait(false);
                }
                var started = System.Diagnostics.Stopwatch.GetTimestamp();
                var (gone, events) = await WatchAsync(ResourceVersion!, ct).ConfigureAwait(false);
                if (gone)
                {
                    Log.Gone(_logger, _kind);
                    ResourceVersion = null;
                    continue;
                }
                if (events == 0 && System.Diagnostics.Stopwatch.GetElapsedTime(started) < TimeSpan.FromSeconds(1))
                {
                    // Closed at once with nothing said: a proxy or server in trouble; do not reconnect in a tight loop.
                    await DelayAsync(ct).ConfigureAwait(false);
                    continue;
                }
                _backoff = FirstBackoff;
            }
            catch (OperationCanceledException) when (ct.IsCancellationRequested)
            {
                break;
            }
            catch (HttpOperationException e) when (e.Response?.StatusCode == HttpStatusCode.Gone)
            {
                Log.Gone(_logger, _kind);
                ResourceVersion = null;
            }
            catch (HttpOperationException e) when (e.Response?.StatusCode is HttpStatusCode.NotFound)
            {
                // The kind is not served (its CRD is not installed): the mesh runs without it, and picks it up once it is.
                _sink.SetProblem(_kind, $"the API server does not serve {_kind} (is its CustomResourceDefinition installed?)");
                _synced.TrySetResult();
                await DelayAsync(ct).ConfigureAwait(false);
            }
            catch (Exception e) when (e is HttpOperationException or HttpRequestException or IOException or KubernetesException or System.Text.Json.JsonException or TimeoutException or TaskCanceledException)
            {
                var status = (e as HttpOperationException)?.Response?.StatusCode;
                if (status is HttpStatusCode.Forbidden or HttpStatusCode.Unauthorized)
                {
                    _sink.SetProblem(_kind, $"cannot list and watch {_kind}: {(int)status} {status} (RBAC?)");
                    _synced.TrySetResult();
                }
                Log.Retrying(_logger, _kind, _backoff.TotalMilliseconds, e.Message);
                await DelayAsync(ct).ConfigureAwait(false);
            }
        }
    }

    private async Task ListAsync(CancellationToken ct)
    {
        var objects = new Dictionary<string, ObjectEntry>(StringComparer.Ordinal);
        string? continueToken = null;
        string? version = null;
        do
        {
            using var response = await _list(continueToken, null, watch: false, timeoutSeconds: null, ct).ConfigureAwait(false);
            var page = response.Body;
            foreach (var item in page.Items)
            {
                objects[KeyOf(item.Metadata)] = _convert(item);
            }
            continueToken = page.Metadata?.ContinueProperty;
            // The version of the list is that of its first page; later pages are consistent with it.
            version ??= page.Metadata?.ResourceVersion;
        }
        while (!string.IsNullOrEmpty(continueToken));
        _sink.Replace(_kind, objects);
        _sink.SetProblem(_kind, null);
        ResourceVersion = version ?? "";
        Log.Listed(_logger, _kind, objects.Count, ResourceVersion);
        _synced.TrySetResult();
    }

    /// <summary>Watches from <paramref name="version"/> until the stream ends: whether the server answered 410 Gone, and how
    /// many events came.</summary>
    private async Task<(bool Gone, int Events)> WatchAsync(string version, CancellationToken ct)
    {
        var events = 0;
        // client-go's spread (5-10 minutes) so watches of many clients do not all expire together.
        var timeout = 300 + Random.Shared.Next(300);
        Exception? failure = null;
        var responseTask = _list(null, version, watch: true, timeoutSeconds: timeout, ct);
        // The list call's watch reader: marked obsolete in favour of per-kind WatchList methods, which have no form for
        // custom resources; one reader for every kind is worth the warning.
#pragma warning disable CS0618
        var stream = responseTask.WatchAsync<T, TList>(e => failure ??= e, ct);
#pragma warning restore CS0618
        await foreach (var (type, item) in stream.ConfigureAwait(false))
        {
            switch (type)
            {
                case WatchEventType.Added or WatchEventType.Modified:
                    _sink.Apply(_kind, KeyOf(item.Metadata), _convert(item));
                    break;
                case WatchEventType.Deleted:
                    _sink.Apply(_kind, KeyOf(item.Metadata), null);
                    break;
                case WatchEventType.Bookmark:
                    break;
                default:
                    continue;
            }
            events++;
            if (item.Metadata?.ResourceVersion is { Length: > 0 } seen)
            {
                ResourceVersion = seen;
            }
            if (failure is not null)
            {
                break;
            }
        }
        return failure switch
        {
            null => (false, events),
            KubernetesException { Status.Code: 410 } => (true, events),
            _ => throw failure,
        };
    }

    private async Task DelayAsync(CancellationToken ct)
    {
        // Full jitter over the upper half: between backoff/2 and backoff.
        var delay = _backoff / 2 + TimeSpan.FromMilliseconds(Random.Shared.NextDouble() * _backoff.TotalMilliseconds / 2);
        _backoff = _backoff * 2 > MaxBackoff ? MaxBackoff : _backoff * 2;
        await Task.Delay(delay, ct).ConfigureAwait(false);
    }

    internal static string KeyOf(V1ObjectMeta? meta) =>
        string.IsNullOrEmpty(meta?.NamespaceProperty) ? meta?.Name ?? "" : meta.NamespaceProperty + "/" + meta.Name;

    private static partial class Log
    {
        [LoggerMessage(1, LogLevel.Information, "Listed {Count} {Kind} objects at resourceVersion {Version}")]
        public static partial void Listed(ILogger logger, string kind, int count, string version);

        [LoggerMessage(2, LogLevel.Information, "Watch of {Kind} expired (410 Gone); relisting")]
        public static partial void Gone(ILogger logger, string kind);

        [LoggerMessage(3, LogLevel.Warning, "List/watch of {Kind} failed; retrying in about {Milliseconds} ms: {Message}")]
        public static partial void Retrying(ILogger logger, string kind, double milliseconds, string message);
    }
}

using System.Collections.Immutable;
using Ambient.Core.Model;
using Ambient.Core.Protos.Discovery;
using Ambient.Core.Protos.Security;
using Ambient.Core.Xds;
using Google.Protobuf.WellKnownTypes;
using Grpc.Core;
using Grpc.Net.Client;

namespace Ambient.Dataplane.Xds;

/// <summary>Counters for config_dump and tests; a copy, never updated after it is returned.</summary>
/// <param name="FirstResponseResources">Per type URL, how many resources the first response after the latest
/// (re)connect carried: after a reconnect with initial_resource_versions it is only the difference.</param>
internal sealed record DeltaXdsClientStats(
    long Connects,
    long Responses,
    long Nacks,
    bool Connected,
    string? LastError,
    ImmutableDictionary<string, int> FirstResponseResources,
    ImmutableDictionary<string, int> FirstResponseRemoved);

/// <summary>
/// ztunnel's workload discovery: one DeltaAggregatedResources stream to istiod subscribing <c>*</c> to Address and
/// Authorization. Each response is applied all-or-nothing into a new <see cref="MeshSnapshot"/>, published, then
/// ACKed; a bad one is NACKed and the last good snapshot stays. On any stream failure it reconnects with jittered
/// exponential backoff and declares what it holds (initial_resource_versions), so istiod sends only the
/// difference; while disconnected the last snapshot stays in effect.
/// </summary>
internal sealed partial class DeltaXdsClient : IAsyncDisposable
{
    // Sync waits for these; the trust bundle is subscribed too but optional (a real istiod never sends it).
    private static readonly string[] RequiredTypes = [XdsTypeUrls.Address, XdsTypeUrls.Authorization];
    private static readonly string[] BuiltInTypes = [.. RequiredTypes, XdsTypeUrls.TrustBundle];

    private readonly DeltaXdsClientOptions _options;
    private readonly ILogger _logger;
    private readonly GrpcChannel _channel;
    private readonly AggregatedDiscoveryService.AggregatedDiscoveryServiceClient _ads;
    private readonly DeltaXdsClientCache _cache;
    private readonly TaskCompletionSource _synced = new(TaskCreationOptions.RunContinuationsAsynchronously);
    private readonly HashSet<string> _syncedTypes = new(StringComparer.Ordinal);
    private readonly Lock _statsLock = new();
    private readonly CancellationTokenSource _stop = new();
    private MeshSnapshot _current;
    private ImmutableArray<Authorization> _authorizations = [];
    private DeltaXdsClientStats _stats = new(0, 0, 0, false, null, ImmutableDictionary<string, int>.Empty, ImmutableDictionary<string, int>.Empty);
    private Task? _run;

    /// <param name="handler">Optional handler shared with the CA client (the caller disposes it); by default an
    /// HTTP/2 handler of our own that trusts only the mesh root.</param>
    public DeltaXdsClient(DeltaXdsClientOptions options, ILogger logger, HttpMessageHandler? handler = null)
    {
        ArgumentNullException.ThrowIfNull(options);
        ArgumentNullException.ThrowIfNull(logger);
        _options = options;
        _logger = logger;
        _channel = IstiodGrpc.Create(options.Address,
            handler ?? IstiodChannel.CreateHandler(options.Roots, options.Address, options.ServerName),
            ownsHandler: handler is null, IstiodGrpc.MaxXdsMessageSize, cancelledAsOperationCanceled: false);
        _ads = new AggregatedDiscoveryService.AggregatedDiscoveryServiceClient(_channel);
        _cache = new DeltaXdsClientCache(options.Mesh);
        _current = _cache.Snapshot;
    }

    /// <summary>The last snapshot built from an accepted response (empty until the first one).</summary>
    public MeshSnapshot Current => Volatile.Read(ref _current);

    /// <summary>Authorization policies as received (ProxyState compiles them on <see cref="AuthorizationsChanged"/>).</summary>
    // An ImmutableArray is one array reference, so a plain read is atomic.
    public ImmutableArray<Authorization> Authorizations => _authorizations;

    /// <summary>Raised on the stream's read loop after each accepted Address response, before it is ACKed.</summary>
    public event Action<MeshSnapshot>? SnapshotChanged;

    /// <summary>Raised on the stream's read loop after each accepted Authorization response, before it is ACKed.</summary>
    public event Action<ImmutableArray<Authorization>>? AuthorizationsChanged;

    public DeltaXdsClientStats Stats
    {
        get
        {
            lock (_statsLock)
            {
                return _stats;
            }
        }
    }

    /// <summary>Starts the connect/reconnect loop in the background. Call once.</summary>
    public void Start()
    {
        if (_run is not null)
        {
            throw new InvalidOperationException("the xDS client is already started");
        }
        _run = Task.Run(() => RunAsync(_stop.Token));
    }

    /// <summary>Completes once the first response of every subscribed type has been applied.</summary>
    public Task WaitForSyncAsync(CancellationToken cancellationToken = default) => _synced.Task.WaitAsync(cancellationToken);

    private async Task RunAsync(CancellationToken cancellationToken)
    {
        var failures = 0;
        while (!cancellationToken.IsCancellationRequested)
        {
            var receivedAny = false;
            try
            {
                receivedAny = await RunStreamAsync(cancellationToken).ConfigureAwait(false);
                Log.StreamEnded(_logger, _options.Address);
                SetDisconnected("istiod ended the stream");
            }
            catch (OperationCanceledException) when (cancellationToken.IsCancellationRequested)
            {
                break;
            }
            catch (RpcException ex) when (cancellationToken.IsCancellationRequested && ex.StatusCode == StatusCode.Cancelled)
            {
                break;
            }
            catch (StreamAttempt ex)
            {
                receivedAny = ex.ReceivedAny;
                var inner = ex.InnerException!;
                var error = IstiodGrpc.Describe(inner);
                SetDisconnected(error);
                if (inner is RpcException { StatusCode: StatusCode.Unauthenticated or StatusCode.PermissionDenied } denied)
                {
                    Log.Rejected(_logger, _options.Address, _options.NodeName, denied.Status.Detail);
                }
                else
                {
                    Log.StreamFailed(_logger, _options.Address, error);
                }
            }
            // A stream that delivered config proves istiod healthy: start the backoff over.
            failures = receivedAny ? 0 : failures + 1;
            var delay = Backoff(failures);
            Log.Reconnecting(_logger, delay.TotalMilliseconds);
            try
            {
                await Task.Delay(delay, cancellationToken).ConfigureAwait(false);
            }
            catch (OperationCanceledException)
            {
                break;
            }
        }
    }

    /// <summary>Jittered exponential backoff: base * 2^(n-1), capped, times a random factor in [0.5, 1.0].</summary>
    internal TimeSpan Backoff(int failures)
    {
        var baseMs = _options.InitialBackoff.TotalMilliseconds * Math.Pow(2, Math.Max(0, failures - 1));
        var capped = Math.Min(baseMs, _options.MaxBackoff.TotalMilliseconds);
        return TimeSpan.FromMilliseconds(capped * (0.5 + (Random.Shared.NextDouble() / 2)));
    }

    // Returns whether any response arrived (normal end); failures come wrapped in StreamAttempt with the same fact.
    private async Task<bool> RunStreamAsync(CancellationToken cancellationToken)
    {
        var receivedAny = false;
        var firstOfType = new HashSet<string>(StringComparer.Ordinal);
        try
        {
            var metadata = new Metadata
            {
                { "authorization", "Bearer " + _options.Token().Trim() },
                { "clusterid", _options.ClusterId },
            };
            // Disposing the call (any way out of here) cancels it: istiod sees the stream reset and ends the session.
            using var call = _ads.DeltaAggregatedResources(metadata, cancellationToken: cancellationToken);
            lock (_statsLock)
            {
                _stats = _stats with { Connects = _stats.Connects + 1 };
            }
            var node = BuildNode();
            foreach (var typeUrl in SubscribedTypes())
            {
                var request = new DeltaDiscoveryRequest { Node = node, TypeUrl = typeUrl };
                request.ResourceNamesSubscribe.Add("*");
                _cache.CopyVersions(typeUrl, request.InitialResourceVersions);
                try
                {
                    await call.RequestStream.WriteAsync(request, cancellationToken).ConfigureAwait(false);
                }
                catch (Exception writeFailed) when (writeFailed is RpcException or InvalidOperationException or IOException)
                {
                    // istiod refuses a bad token by ending the call, which can break this write before the reader
                    // has seen why: the answer's status (e.g. Unauthenticated) is the reason to report.
                    throw await FinalStatusAsync(call, writeFailed, cancellationToken).ConfigureAwait(false);
                }
                Log.Subscribed(_logger, typeUrl, request.InitialResourceVersions.Count);
            }

            await foreach (var response in call.ResponseStream.ReadAllAsync(cancellationToken).ConfigureAwait(false))
            {
                if (!receivedAny)
                {
                    receivedAny = true;
                    Log.Connected(_logger, _options.Address, _options.NodeId);
                    lock (_statsLock)
                    {
                        _stats = _stats with { Connected = true, LastError = null };
                    }
                }
                var isFirst = firstOfType.Add(response.TypeUrl);
                var reply = Apply(response, isFirst);
                await call.RequestStream.WriteAsync(reply, cancellationToken).ConfigureAwait(false);
            }
            return receivedAny;
        }
        catch (Exception ex) when (!cancellationToken.IsCancellationRequested && ex is not OperationCanceledException)
        {
            throw new StreamAttempt(receivedAny, ex);
        }
    }

    // Reads what is left of a call whose request side failed, for the status the server ended it with.
    private static async Task<Exception> FinalStatusAsync(
        AsyncDuplexStreamingCall<DeltaDiscoveryRequest, DeltaDiscoveryResponse> call, Exception writeFailed, CancellationToken cancellationToken)
    {
        using var timeout = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
        timeout.CancelAfter(TimeSpan.FromSeconds(2));
        try
        {
            await foreach (var unused in call.ResponseStream.ReadAllAsync(timeout.Token).ConfigureAwait(false))
            {
            }
        }
        catch (RpcException final) when (final.StatusCode != StatusCode.Cancelled)
        {
            return final;
        }
        catch (Exception ex) when (ex is RpcException or OperationCanceledException or InvalidOperationException or IOException)
        {
            // No better reason than the write's own.
        }

        return writeFailed;
    }

    /// <summary>Applies one response, publishes the result, and returns the ACK or NACK to send.</summary>
    internal DeltaDiscoveryRequest Apply(DeltaDiscoveryResponse response, bool firstAfterConnect)
    {
        if (response.TypeUrl == XdsTypeUrls.TrustBundle)
        {
            return ApplyTrustBundle(response);
        }
        if (OptionalTypes.TryGetValue(response.TypeUrl, out var optional))
        {
            return ApplyOptional(response, optional);
        }
        var result = _cache.Apply(response);
        lock (_statsLock)
        {
            var s = _stats with { Responses = _stats.Responses + 1, Nacks = _stats.Nacks + (result.Accepted ? 0 : 1) };
            if (firstAfterConnect)
            {
                s = s with
                {
                    FirstResponseResources = s.FirstResponseResources.SetItem(response.TypeUrl, response.Resources.Count),
                    FirstResponseRemoved = s.FirstResponseRemoved.SetItem(response.TypeUrl, response.RemovedResources.Count),
                };
            }
            _stats = s;
        }
        if (!result.Accepted)
        {
            Log.Nack(_logger, response.TypeUrl, response.Nonce, result.Error!);
            return result.Reply;
        }
        foreach (var line in result.Skipped)
        {
            Log.Skipped(_logger, response.TypeUrl, line);
        }
        Log.Applied(_logger, response.TypeUrl, response.Resources.Count, response.RemovedResources.Count, response.Nonce, _cache.Count(response.TypeUrl));
        ImmutableInterlocked.InterlockedExchange(ref _authorizations, result.Authorizations);
        if (response.TypeUrl == XdsTypeUrls.Authorization)
        {
            try
            {
                AuthorizationsChanged?.Invoke(result.Authorizations);
            }
            catch (Exception ex)
            {
                Log.SubscriberFailed(_logger, ex);
            }
        }
        if (result.Snapshot is { } snapshot)
        {
            Volatile.Write(ref _current, snapshot);
            try
            {
                SnapshotChanged?.Invoke(snapshot);
            }
            catch (Exception ex)
            {
                // A subscriber's bug must not tear down discovery for the whole node.
                Log.SubscriberFailed(_logger, ex);
            }
        }
        if (_syncedTypes.Add(response.TypeUrl) && _syncedTypes.Count == RequiredTypes.Length)
        {
            Log.Synced(_logger, _cache.Count(XdsTypeUrls.Address));
            _synced.TrySetResult();
        }
        return result.Reply;
    }

    private Node BuildNode()
    {
        var metadata = new Struct();
        metadata.Fields["NAME"] = Value.ForString(_options.PodName);
        metadata.Fields["NAMESPACE"] = Value.ForString(_options.PodNamespace);
        metadata.Fields["NODE_NAME"] = Value.ForString(_options.NodeName);
        metadata.Fields["CLUSTER_ID"] = Value.ForString(_options.ClusterId);
        metadata.Fields["INSTANCE_IPS"] = Value.ForString(_options.InstanceIp);
        return new Node { Id = _options.NodeId, Cluster = _options.ClusterId, Metadata = metadata };
    }

    private void SetDisconnected(string error)
    {
        lock (_statsLock)
        {
            _stats = _stats with { Connected = false, LastError = error };
        }
    }

    public async ValueTask DisposeAsync()
    {
        await _stop.CancelAsync().ConfigureAwait(false);
        if (_run is not null)
        {
            try
            {
                await _run.ConfigureAwait(false);
            }
            catch (Exception ex) when (ex is OperationCanceledException or RpcException)
            {
                // Stopping.
            }
        }
        _synced.TrySetCanceled();
        _stop.Dispose();
        _channel.Dispose(); // and our own handler with it; a shared one stays with its owner

    }

    private sealed class StreamAttempt(bool receivedAny, Exception inner) : Exception(inner.Message, inner)
    {
        public bool ReceivedAny { get; } = receivedAny;
    }

    private static partial class Log
    {
        [LoggerMessage(1, LogLevel.Information, "xDS connected to {Address} as {NodeId}")]
        public static partial void Connected(ILogger logger, Uri address, string nodeId);

        [LoggerMessage(2, LogLevel.Debug, "xDS subscribed to {TypeUrl} declaring {Known} known resources")]
        public static partial void Subscribed(ILogger logger, string typeUrl, int known);

        [LoggerMessage(3, LogLevel.Information, "xDS applied {TypeUrl}: {Count} resources, {Removed} removed (nonce {Nonce}); holding {Total}")]
        public static partial void Applied(ILogger logger, string typeUrl, int count, int removed, string nonce, int total);

        [LoggerMessage(4, LogLevel.Warning, "xDS NACK {TypeUrl} nonce {Nonce}, keeping the last good config: {Error}")]
        public static partial void Nack(ILogger logger, string typeUrl, string nonce, string error);

        [LoggerMessage(5, LogLevel.Warning, "xDS stream to {Address} failed, keeping the last config: {Error}")]
        public static partial void StreamFailed(ILogger logger, Uri address, string error);

        [LoggerMessage(6, LogLevel.Error, "istiod at {Address} refused node '{Node}' credentials (check the node token): {Error}")]
        public static partial void Rejected(ILogger logger, Uri address, string node, string error);

        [LoggerMessage(7, LogLevel.Information, "xDS stream to {Address} ended by istiod")]
        public static partial void StreamEnded(ILogger logger, Uri address);

        [LoggerMessage(8, LogLevel.Debug, "xDS reconnecting in {DelayMs:F0} ms")]
        public static partial void Reconnecting(ILogger logger, double delayMs);

        [LoggerMessage(9, LogLevel.Information, "xDS synced: {Count} addresses")]
        public static partial void Synced(ILogger logger, int count);

        [LoggerMessage(10, LogLevel.Error, "a snapshot subscriber threw; discovery continues")]
        public static partial void SubscriberFailed(ILogger logger, Exception exception);

        [LoggerMessage(11, LogLevel.Warning, "xDS {TypeUrl} accepted without a part it cannot use: {What}")]
        public static partial void Skipped(ILogger logger, string typeUrl, string what);
    }
}

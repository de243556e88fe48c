using Ambient.Hbone.Telemetry;
using System.Collections.Immutable;
using System.Globalization;
using System.Threading.Channels;
using Ambient.Core.Protos.Discovery;
using Ambient.Core.Telemetry;
using Ambient.Core.Xds;
using Grpc.Core;
using Envoy = Ambient.Core.Protos.Discovery;

namespace Ambient.Istiod.Discovery;

/// <summary>
/// One DeltaAggregatedResources stream. Per type URL it remembers what the client holds (the resource set
/// last sent, or the versions the client declared on reconnect) and pushes only the difference when the
/// mesh changes. Requests are read on one task and pushes written from one loop, so writes never interleave.
/// </summary>
/// <remarks>
/// Delta xDS rules kept here (envoy xds protocol): the first request of a type subscribes (no names or "*" =
/// wildcard); initial_resource_versions lets a reconnecting client skip what it has; an ACK echoes a nonce;
/// a NACK echoes it with error_detail: we log it, take the client back to what it held before that push (it
/// rolls a rejected response back whole) and, at the next change, re-send what it lacks.
/// </remarks>
internal sealed partial class DeltaXdsSession
{
    private readonly DiscoveryState _state;
    private readonly ILogger _logger;
    private readonly string _node;
    private readonly string _peer;
    private readonly Dictionary<string, TypeSubscription> _subscriptions = new(StringComparer.Ordinal);
    private readonly Channel<bool> _wake = Channel.CreateBounded<bool>(new BoundedChannelOptions(1)
    {
        FullMode = BoundedChannelFullMode.DropWrite,
    });
    private readonly Lock _lock = new();
    private long _nonceCounter;
    // Set from the first request's node id when the subscriber is a waypoint: ns/name of its Gateway.
    private bool _identified;
    private string? _waypoint;

    public DeltaXdsSession(DiscoveryState state, ILogger logger, string node, string peer)
    {
        _state = state;
        _logger = logger;
        _node = node;
        _peer = peer;
    }

    public async Task RunAsync(IAsyncEnumerable<DeltaDiscoveryRequest> requests, IAsyncStreamWriter<DeltaDiscoveryResponse> writer, CancellationToken cancellationToken)
    {
        using var stop = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
        var reader = ReadRequestsAsync(requests, stop.Token);
        var pusher = PushLoopAsync(writer, stop.Token);
        var first = await Task.WhenAny(reader, pusher).ConfigureAwait(false);
        await stop.CancelAsync().ConfigureAwait(false);
        try
        {
            await Task.WhenAll(reader, pusher).ConfigureAwait(false);
        }
        catch (OperationCanceledException) when (stop.IsCancellationRequested)
        {
            // The other half ended the session.
        }
        finally
        {
            _state.TrustBundleAcks.Closed(this);
        }
        // Surface a protocol error (RpcException) from whichever half failed first.
        await first.ConfigureAwait(false);
    }

    private async Task ReadRequestsAsync(IAsyncEnumerable<DeltaDiscoveryRequest> requests, CancellationToken cancellationToken)
    {
        await foreach (var request in requests.WithCancellation(cancellationToken).ConfigureAwait(false))
        {
            HandleRequest(request);
        }
        // Client half-closed: the stream ends; nothing more to push to a client that stopped listening for changes.
        Log.ClientClosed(_logger, _node, _peer);
    }

    internal void HandleRequest(DeltaDiscoveryRequest request)
    {
        var typeUrl = request.TypeUrl;
        if (typeUrl.Length == 0)
        {
            throw new RpcException(new Status(StatusCode.InvalidArgument, "DeltaDiscoveryRequest.type_url is empty"));
        }
        // The node is sent on the first request only (delta xDS): who the subscriber is, before anything is served.
        if (!_identified && request.Node is { Id.Length: > 0 } node)
        {
            var waypoint = IdentifyWaypoint(node.Id);
            lock (_lock)
            {
                _identified = true;
                _waypoint = waypoint;
            }
        }
        if (!_state.Current.ResourcesByType.ContainsKey(typeUrl))
        {
            // Istio answers unknown types with nothing; a NACK-free silence lets newer clients ask for types we lack.
            Log.UnknownType(_logger, _node, typeUrl);
            return;
        }
        var wake = false;
        lock (_lock)
        {
            if (!_subscriptions.TryGetValue(typeUrl, out var sub))
            {
                sub = new TypeSubscription(request.InitialResourceVersions);
                _subscriptions.Add(typeUrl, sub);
                wake = true;
                if (typeUrl == XdsTypeUrls.TrustBundle)
                {
                    _state.TrustBundleAcks.Subscribed(this, _node);
                }
            }
            if (request.ResponseNonce.Length > 0)
            {
                if (request.ErrorDetail is { } error && (error.Code != 0 || error.Message.Length > 0))
                {
                    Log.Nack(_logger, _node, typeUrl, request.ResponseNonce, LogText.Clip(error.Message, 256));
                    sub.Nacked(request.ResponseNonce);
                }
                else
                {
                    Log.Ack(_logger, _node, typeUrl, request.ResponseNonce);
                    var generation = sub.Acked(request.ResponseNonce);
                    if (generation > 0 && typeUrl == XdsTypeUrls.TrustBundle)
                    {
                        _state.TrustBundleAcks.Acked(this, generation);
                    }
                }
            }
            wake |= sub.ApplySubscriptionChanges(request.ResourceNamesSubscribe, request.ResourceNamesUnsubscribe, isFirst: wake);
        }
        if (wake)
        {
            _wake.Writer.TryWrite(true);
        }
    }

    private async Task PushLoopAsync(IAsyncStreamWriter<DeltaDiscoveryResponse> writer, CancellationToken cancellationToken)
    {
        long seen = 0;
        var responses = new List<DeltaDiscoveryResponse>(2);
        while (!cancellationToken.IsCancellationRequested)
        {
            var generation = _state.Current;
            seen = generation.Number;
            responses.Clear();
            lock (_lock)
            {
                var waypoint = CurrentWaypoint(generation);
                foreach (var (typeUrl, sub) in _subscriptions)
                {
                    var set = generation.ResourcesFor(typeUrl, waypoint)!;
                    if (sub.TakeDelta(set) is { } delta)
                    {
                        var nonce = Interlocked.Increment(ref _nonceCounter).ToString(CultureInfo.InvariantCulture);
                        sub.Sent(nonce, generation.Number);
                        responses.Add(delta.ToResponse(nonce, generation.Number.ToString(CultureInfo.InvariantCulture)));
                    }
                }
            }
            foreach (var response in responses)
            {
                await writer.WriteAsync(response, cancellationToken).ConfigureAwait(false);
                Log.Pushed(_logger, _node, response.TypeUrl, response.Resources.Count, response.RemovedResources.Count, response.Nonce);
            }
            var changed = _state.WaitForChangeAsync(seen, cancellationToken);
            var woken = _wake.Reader.WaitToReadAsync(cancellationToken).AsTask();
            await Task.WhenAny(changed, woken).ConfigureAwait(false);
            cancellationToken.ThrowIfCancellationRequested();
            _wake.Reader.TryRead(out _);
        }
    }

    /// <summary>
    /// A waypoint says who it is in its node id (<c>waypoint~&lt;ip&gt;~&lt;pod&gt;.&lt;ns&gt;~&lt;ns&gt;.svc.cluster.local</c>, the
    /// form Istio's proxies send); it is served as that waypoint only when the pod is a waypoint's and runs on the
    /// node whose token opened the stream (the rule the CA applies to its identity). Any other proxy type is a
    /// ztunnel and gets the waypoint types empty.
    /// </summary>
    private string? IdentifyWaypoint(string nodeId)
    {
        if (!XdsNodeId.TryParse(nodeId, out var id) || id.Type is not (XdsNodeId.WaypointType or XdsNodeId.RouterType))
        {
            return null;
        }
        var waypoint = _state.Current.Snapshot.FindWaypointByPod(id.Namespace, id.PodName)
            ?? throw new RpcException(new Status(StatusCode.PermissionDenied,
                $"node id '{nodeId}' names pod {id.Namespace}/{id.PodName}, which is no waypoint of the mesh"));
        if (waypoint.Node != _node)
        {
            throw new RpcException(new Status(StatusCode.PermissionDenied,
                $"waypoint {waypoint.Key} runs on node '{waypoint.Node}'; the token of node '{_node}' may not subscribe as it"));
        }
        Log.WaypointIdentified(_logger, _node, waypoint.Key, _peer);
        return waypoint.Key;
    }

    /// <summary>The session's waypoint if it still exists on this node in <paramref name="generation"/>; else null (empty sets).</summary>
    private string? CurrentWaypoint(DiscoveryGeneration generation)
    {
        if (_waypoint is null)
        {
            return null;
        }
        var slash = _waypoint.IndexOf('/', StringComparison.Ordinal);
        var w = generation.Snapshot.FindWaypoint(_waypoint[..slash], _waypoint[(slash + 1)..]);
        return w is not null && w.Node == _node ? _waypoint : null;
    }

    /// <summary>What one client asked for of one type, and what it already holds.</summary>
    private sealed class TypeSubscription
    {
        private bool _wildcard;
        private readonly HashSet<string> _names = new(StringComparer.Ordinal);
        // Exactly one of these says what the client holds: the set we last sent it, or (before our first
        // response) the versions it declared in initial_resource_versions.
        private XdsResourceSet? _sent;
        private IReadOnlyDictionary<string, string>? _declared;
        private bool _mustRespond = true;
        private readonly HashSet<string> _newlySubscribed = new(StringComparer.Ordinal);

        // Pushes neither ACKed nor NACKed yet, oldest first, each with what the client held before it. A NACKed
        // response is rolled back whole by the client (envoy and ztunnel alike), so on a NACK the client's view
        // goes back to the base of that push; a client that never answers cannot grow this past the cap.
        private const int MaxPending = 32;
        private readonly List<PendingPush> _pending = [];
        private ClientView _lastBase;
        // After a NACK: the set that was rejected, so it is not pushed again until the mesh changes.
        private XdsResourceSet? _rejected;

        private readonly record struct ClientView(XdsResourceSet? Sent, IReadOnlyDictionary<string, string>? Declared);

        private readonly record struct PendingPush(string Nonce, ClientView Base, long Generation);

        public TypeSubscription(IDictionary<string, string> initialVersions)
        {
            _declared = initialVersions.Count > 0 ? new Dictionary<string, string>(initialVersions, StringComparer.Ordinal) : null;
        }

        public bool ApplySubscriptionChanges(IList<string> subscribe, IList<string> unsubscribe, bool isFirst)
        {
            var changed = false;
            // First request with no names is a legacy wildcard subscription (envoy delta xDS rule).
            if (isFirst && subscribe.Count == 0)
            {
                _wildcard = true;
            }
            foreach (var name in subscribe)
            {
                if (name == "*")
                {
                    changed |= !_wildcard;
                    _wildcard = true;
                }
                else if (_names.Add(name))
                {
                    _newlySubscribed.Add(name);
                    changed = true;
                }
            }
            foreach (var name in unsubscribe)
            {
                if (name == "*")
                {
                    _wildcard = false;
                }
                else
                {
                    _names.Remove(name);
                    _newlySubscribed.Remove(name);
                }
            }
            return changed;
        }

        /// <summary>The response this client needs now for <paramref name="current"/>, or null if nothing.</summary>
        public XdsDelta? TakeDelta(XdsResourceSet current)
        {
            if (_rejected is not null && ReferenceEquals(_rejected, current) && _newlySubscribed.Count == 0)
            {
                return null;
            }
            _rejected = null;
            _lastBase = new ClientView(_sent, _declared);
            XdsDelta delta;
            if (_sent is null)
            {
                delta = XdsResourceSet.ForClient(current, _declared ?? EmptyVersions);
                _declared = null;
            }
            else if (ReferenceEquals(_sent, current) && _newlySubscribed.Count == 0)
            {
                return null;
            }
            else
            {
                delta = XdsResourceSet.Diff(_sent, current);
            }
            if (!_wildcard)
            {
                delta = FilterToNames(delta, current);
            }
            _newlySubscribed.Clear();
            _sent = current;
            var respond = _mustRespond || !delta.IsEmpty;
            _mustRespond = false;
            return respond ? delta : null;
        }

        /// <summary>The delta last returned by <see cref="TakeDelta"/> went out with <paramref name="nonce"/>.</summary>
        public void Sent(string nonce, long generation)
        {
            if (_pending.Count == MaxPending)
            {
                _pending.RemoveAt(0);
            }
            _pending.Add(new PendingPush(nonce, _lastBase, generation));
        }

        /// <summary>Returns the discovery generation the ACKed push was built from (0 for an unknown nonce).</summary>
        public long Acked(string nonce)
        {
            var i = IndexOfPending(nonce);
            if (i < 0)
            {
                return 0;
            }
            var generation = _pending[i].Generation;
            _pending.RemoveAt(i);
            return generation;
        }

        /// <summary>
        /// The client rejected the push <paramref name="nonce"/> and kept what it held before it. From then on it
        /// is treated like a reconnecting client that declared that older state: the next push re-sends every
        /// resource it may lack and removes every name it may still hold. Names pushed since that base are declared
        /// with an unknown version, so they are re-sent (or removed) too.
        /// </summary>
        public void Nacked(string nonce)
        {
            var i = IndexOfPending(nonce);
            if (i < 0)
            {
                return; // a stale or unknown nonce: nothing we can roll back
            }
            var held = _pending[i].Base;
            var versions = new Dictionary<string, string>(StringComparer.Ordinal);
            if (held.Sent is { } baseSet)
            {
                foreach (var r in baseSet.Resources)
                {
                    versions[r.Name] = r.Version;
                }
            }
            else if (held.Declared is { } declared)
            {
                foreach (var (name, version) in declared)
                {
                    versions[name] = version;
                }
            }
            if (_sent is { } latest)
            {
                foreach (var r in latest.Resources)
                {
                    versions.TryAdd(r.Name, string.Empty);
                }
            }
            _rejected = _sent;
            _sent = null;
            _declared = versions;
            // Later pushes were built on what we thought the client held; the conservative view above covers them.
            _pending.Clear();
        }

        private int IndexOfPending(string nonce)
        {
            for (var i = 0; i < _pending.Count; i++)
            {
                if (string.Equals(_pending[i].Nonce, nonce, StringComparison.Ordinal))
                {
                    return i;
                }
            }
            return -1;
        }

        private XdsDelta FilterToNames(XdsDelta delta, XdsResourceSet current)
        {
            var resources = ImmutableArray.CreateBuilder<Envoy.Resource>();
            foreach (var r in delta.Resources)
            {
                if (_names.Contains(r.Name))
                {
                    resources.Add(r);
                }
            }
            var removed = ImmutableArray.CreateBuilder<string>();
            foreach (var n in delta.RemovedResources)
            {
                if (_names.Contains(n))
                {
                    removed.Add(n);
                }
            }
            // A name subscribed since the last push gets its resource even if it did not change, or an explicit
            // removal when it does not exist, so an on-demand lookup always hears back.
            foreach (var name in _newlySubscribed)
            {
                if (current.TryGet(name, out var r))
                {
                    if (!resources.Contains(r))
                    {
                        resources.Add(r);
                    }
                }
                else if (!removed.Contains(name))
                {
                    removed.Add(name);
                }
            }
            return new XdsDelta(delta.TypeUrl, resources.DrainToImmutable(), removed.DrainToImmutable());
        }

        private static readonly IReadOnlyDictionary<string, string> EmptyVersions = new Dictionary<string, string>();
    }

    private static partial class Log
    {
        [LoggerMessage(1, LogLevel.Information, "xDS push to {Node}: {TypeUrl} {Count} resources, {Removed} removed (nonce {Nonce})")]
        public static partial void Pushed(ILogger logger, string node, string typeUrl, int count, int removed, string nonce);

        [LoggerMessage(2, LogLevel.Debug, "xDS ACK from {Node}: {TypeUrl} nonce {Nonce}")]
        public static partial void Ack(ILogger logger, string node, string typeUrl, string nonce);

        [LoggerMessage(3, LogLevel.Warning, "xDS NACK from {Node}: {TypeUrl} nonce {Nonce}: {Error}")]
        public static partial void Nack(ILogger logger, string node, string typeUrl, string nonce, string error);

        [LoggerMessage(4, LogLevel.Information, "xDS request from {Node} for unknown type {TypeUrl} ignored")]
        public static partial void UnknownType(ILogger logger, string node, string typeUrl);

        [LoggerMessage(5, LogLevel.Information, "xDS stream from {Node} ({Peer}) closed by the client")]
        public static partial void ClientClosed(ILogger logger, string node, string peer);

        [LoggerMessage(6, LogLevel.Information, "xDS stream from {Node} ({Peer}) is waypoint {Waypoint}")]
        public static partial void WaypointIdentified(ILogger logger, string node, string waypoint, string peer);
    }
}

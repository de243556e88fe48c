using System.Collections.Immutable;
using Ambient.Core.Model;
using Ambient.Core.Xds;
using Ambient.Core.Protos.AuthorizationPolicies;
using Authorization = Ambient.Core.Protos.Security.Authorization;

namespace Ambient.Istiod.Discovery;

/// <summary>One published state of the mesh: the snapshot and its xDS resource sets, replaced whole.</summary>
internal sealed record DiscoveryGeneration(
    long Number,
    MeshSnapshot Snapshot,
    ImmutableDictionary<string, XdsResourceSet> ResourcesByType)
{
    /// <summary>Per waypoint (<c>ns/name</c>): its HTTPRoute, ServiceProtocols and AuthorizationPolicy sets. Only that waypoint is sent them.</summary>
    public ImmutableDictionary<string, WaypointResourceSets> Waypoints { get; init; } = ImmutableDictionary<string, WaypointResourceSets>.Empty;

    public XdsResourceSet? ResourcesFor(string typeUrl) => ResourcesByType.TryGetValue(typeUrl, out var set) ? set : null;

    /// <summary>
    /// What a subscriber gets of <paramref name="typeUrl"/>: the shared set, except for the waypoint types, which are
    /// per waypoint (<paramref name="waypoint"/> null, or a waypoint that no longer exists: the empty set).
    /// </summary>
    public XdsResourceSet? ResourcesFor(string typeUrl, string? waypoint)
    {
        if (typeUrl is XdsTypeUrls.HttpRoute or XdsTypeUrls.ServiceProtocols or XdsTypeUrls.AuthorizationPolicy
            && waypoint is not null && Waypoints.TryGetValue(waypoint, out var sets))
        {
            return typeUrl switch
            {
                XdsTypeUrls.HttpRoute => sets.Routes,
                XdsTypeUrls.ServiceProtocols => sets.Protocols,
                _ => sets.Policies,
            };
        }
        return ResourcesFor(typeUrl);
    }
}

/// <summary>One waypoint's resources: HTTPRoutes named <c>ns/name</c>, ServiceProtocols named <c>ns/hostname</c>,
/// AuthorizationPolicies (those targeting it) named <c>ns/name</c>.</summary>
internal sealed record WaypointResourceSets(XdsResourceSet Routes, XdsResourceSet Protocols, XdsResourceSet Policies);

/// <summary>
/// The current generation plus a change signal. Sessions read <see cref="Current"/> lock-free and wait on
/// <see cref="WaitForChangeAsync"/>; publishing builds resource sets from the previous ones so unchanged
/// resources keep their packed bytes (and versions) across generations.
/// </summary>
internal sealed class DiscoveryState
{
    private DiscoveryGeneration _current;
    private TaskCompletionSource _changed = NewSignal();
    private readonly Lock _publishLock = new();

    /// <param name="authorizations">The policies ztunnel receives (converted by istiod-lite's Authz), in a stable order.</param>
    /// <param name="waypointPolicies">Per waypoint key, the AuthorizationPolicies it enforces (none when null).</param>
    public DiscoveryState(MeshSnapshot initial, ImmutableArray<Authorization> authorizations = default,
        IReadOnlyDictionary<string, ImmutableArray<AuthorizationPolicySpec>>? waypointPolicies = null)
    {
        _current = Build(1, initial, authorizations, waypointPolicies, previous: null);
    }

    public DiscoveryGeneration Current => Volatile.Read(ref _current);

    private int _openSessions;

    /// <summary>xDS streams being served now: one per connected proxy; a stream the proxy reset is no longer counted.</summary>
    public int OpenSessions => Volatile.Read(ref _openSessions);

    internal void SessionOpened() => Interlocked.Increment(ref _openSessions);

    internal void SessionClosed() => Interlocked.Decrement(ref _openSessions);

    /// <summary>Which connected proxies hold which trust bundle push (root rotation waits on it).</summary>
    public TrustBundleAcks TrustBundleAcks { get; } = new();

    public static IReadOnlyList<string> SupportedTypes { get; } =
        [XdsTypeUrls.Address, XdsTypeUrls.Authorization, XdsTypeUrls.HttpRoute, XdsTypeUrls.ServiceProtocols, XdsTypeUrls.AuthorizationPolicy];

    /// <summary>Publishes a snapshot and the policies that go with it (none when default / null).</summary>
    public DiscoveryGeneration Publish(MeshSnapshot snapshot, ImmutableArray<Authorization> authorizations = default,
        IReadOnlyDictionary<string, ImmutableArray<AuthorizationPolicySpec>>? waypointPolicies = null) =>
        Publish(previous => Build(previous.Number + 1, snapshot, authorizations, waypointPolicies, previous));

    /// <summary>
    /// Makes <paramref name="bundle"/> the one TrustBundle resource (from then on the type is served); returns the
    /// generation that carries it, which <see cref="TrustBundleAcks"/> reports proxies acknowledging.
    /// </summary>
    public DiscoveryGeneration PublishTrustBundle(Ambient.Core.Protos.Security.TrustBundle bundle)
    {
        ArgumentNullException.ThrowIfNull(bundle);
        var set = XdsResourceSet.Create(XdsTypeUrls.TrustBundle, [(XdsTypeUrls.TrustBundleName, bundle, [])]);
        return Publish(previous => previous with
        {
            Number = previous.Number + 1,
            ResourcesByType = previous.ResourcesByType.SetItem(XdsTypeUrls.TrustBundle, set),
        });
    }

    private DiscoveryGeneration Publish(Func<DiscoveryGeneration, DiscoveryGeneration> build)
    {
        TaskCompletionSource fired;
        DiscoveryGeneration next;
        lock (_publishLock)
        {
            next = build(_current);
            Volatile.Write(ref _current, next);
            fired = _changed;
            _changed = NewSignal();
        }
        fired.TrySetResult();
        return next;
    }

    /// <summary>Completes once a generation newer than <paramref name="seen"/> is current.</summary>
    public Task WaitForChangeAsync(long seen, CancellationToken cancellationToken)
    {
        Task signal;
        lock (_publishLock)
        {
            if (_current.Number > seen)
            {
                return Task.CompletedTask;
            }
            signal = _changed.Task;
        }
        return signal.WaitAsync(cancellationToken);
    }

    private static DiscoveryGeneration Build(long number, MeshSnapshot snapshot, ImmutableArray<Authorization> policies,
        IReadOnlyDictionary<string, ImmutableArray<AuthorizationPolicySpec>>? waypointPolicies, DiscoveryGeneration? previous)
    {
        policies = policies.IsDefault ? [] : policies;
        var addresses = XdsResourceSet.ForAddresses(snapshot, previous?.ResourcesFor(XdsTypeUrls.Address));
        var authorizations = XdsResourceSet.ForAuthorizations(policies, previous?.ResourcesFor(XdsTypeUrls.Authorization));
        var byType = ImmutableDictionary.CreateRange(StringComparer.Ordinal, [
            KeyValuePair.Create(XdsTypeUrls.Address, addresses),
            KeyValuePair.Create(XdsTypeUrls.Authorization, authorizations),
            // Served to waypoints from their own sets; everyone else (a ztunnel) gets these empty ones.
            KeyValuePair.Create(XdsTypeUrls.HttpRoute, EmptyRoutes),
            KeyValuePair.Create(XdsTypeUrls.ServiceProtocols, EmptyProtocols),
            KeyValuePair.Create(XdsTypeUrls.AuthorizationPolicy, EmptyPolicies),
        ]);
        // Carried over unchanged: only PublishTrustBundle replaces it.
        if (previous?.ResourcesFor(XdsTypeUrls.TrustBundle) is { } trustBundle)
        {
            byType = byType.SetItem(XdsTypeUrls.TrustBundle, trustBundle);
        }
        return new DiscoveryGeneration(number, snapshot, byType) { Waypoints = BuildWaypoints(snapshot, waypointPolicies, previous) };
    }

    private static readonly XdsResourceSet EmptyRoutes = XdsResourceSet.Empty(XdsTypeUrls.HttpRoute);
    private static readonly XdsResourceSet EmptyProtocols = XdsResourceSet.Empty(XdsTypeUrls.ServiceProtocols);
    private static readonly XdsResourceSet EmptyPolicies = XdsResourceSet.Empty(XdsTypeUrls.AuthorizationPolicy);

    private static ImmutableDictionary<string, WaypointResourceSets> BuildWaypoints(MeshSnapshot snapshot,
        IReadOnlyDictionary<string, ImmutableArray<AuthorizationPolicySpec>>? waypointPolicies, DiscoveryGeneration? previous)
    {
        if (snapshot.Waypoints.IsEmpty)
        {
            return ImmutableDictionary<string, WaypointResourceSets>.Empty;
        }
        var builder = ImmutableDictionary.CreateBuilder<string, WaypointResourceSets>(StringComparer.Ordinal);
        foreach (var w in snapshot.Waypoints)
        {
            var config = snapshot.Routing.For(w.Key);
            var old = previous?.Waypoints.GetValueOrDefault(w.Key);
            // The previous sets let an unchanged route keep its Resource object (same bytes, same version).
            var routes = XdsResourceSet.Create(XdsTypeUrls.HttpRoute,
                config.Routes.Select(r => (r.Namespace + "/" + r.Name, (Google.Protobuf.IMessage)r, Array.Empty<string>())), old?.Routes);
            var protocols = XdsResourceSet.Create(XdsTypeUrls.ServiceProtocols,
                config.Protocols.Select(p => (p.Namespace + "/" + p.Hostname, (Google.Protobuf.IMessage)p, Array.Empty<string>())), old?.Protocols);
            var forWaypoint = waypointPolicies is not null && waypointPolicies.TryGetValue(w.Key, out var attached) ? attached : [];
            var policies = XdsResourceSet.Create(XdsTypeUrls.AuthorizationPolicy,
                forWaypoint.Select(p => (p.Namespace + "/" + p.Name, (Google.Protobuf.IMessage)p, Array.Empty<string>())),
                old?.Policies);
            builder[w.Key] = new WaypointResourceSets(routes, protocols, policies);
        }
        return builder.ToImmutable();
    }

    private static TaskCompletionSource NewSignal() => new(TaskCreationOptions.RunContinuationsAsynchronously);
}

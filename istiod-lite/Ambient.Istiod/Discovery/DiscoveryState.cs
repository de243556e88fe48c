using System.Collections.Immutable;
using Ambient.Core.Model;
using Ambient.Core.Xds;

namespace Ambient.Istiod.Discovery;

/// <summary>One published state of the mesh: the snapshot and its xDS resource sets, replaced whole.</summary>
internal sealed record DiscoveryGeneration(
    long Number,
    MeshSnapshot Snapshot,
    ImmutableDictionary<string, XdsResourceSet> ResourcesByType)
{
    public XdsResourceSet? ResourcesFor(string typeUrl) => ResourcesByType.TryGetValue(typeUrl, out var set) ? set : null;
}

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

    public DiscoveryState(MeshSnapshot initial)
    {
        _current = Build(1, initial, previous: null);
    }

    public DiscoveryGeneration Current => Volatile.Read(ref _current);

    private int _openSessions;

    /// <summary>xDS streams being served now: one per connected proxy; a stream the proxy reset is no longer counted.</summary>
    public int OpenSessions => Volatile.Read(ref _openSessions);

    internal void SessionOpened() => Interlocked.Increment(ref _openSessions);

    internal void SessionClosed() => Interlocked.Decrement(ref _openSessions);

    public static IReadOnlyList<string> SupportedTypes { get; } = [XdsTypeUrls.Address, XdsTypeUrls.Authorization];

    public DiscoveryGeneration Publish(MeshSnapshot snapshot)
    {
        TaskCompletionSource fired;
        DiscoveryGeneration next;
        lock (_publishLock)
        {
            next = Build(_current.Number + 1, snapshot, _current);
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

    private static DiscoveryGeneration Build(long number, MeshSnapshot snapshot, DiscoveryGeneration? previous)
    {
        var addresses = XdsResourceSet.ForAddresses(snapshot, previous?.ResourcesFor(XdsTypeUrls.Address));
        var authorizations = XdsResourceSet.ForAuthorizations(snapshot, previous?.ResourcesFor(XdsTypeUrls.Authorization));
        var byType = ImmutableDictionary.CreateRange(StringComparer.Ordinal, [
            KeyValuePair.Create(XdsTypeUrls.Address, addresses),
            KeyValuePair.Create(XdsTypeUrls.Authorization, authorizations),
        ]);
        return new DiscoveryGeneration(number, snapshot, byType);
    }

    private static TaskCompletionSource NewSignal() => new(TaskCreationOptions.RunContinuationsAsynchronously);
}

using System.Collections.Concurrent;
using Ambient.Core.Identity;

namespace Ambient.Istiod.Ca;

/// <summary>Where a root rotation stands.</summary>
internal enum RotationPhase
{
    /// <summary>No rotation running.</summary>
    Idle,

    /// <summary>Phase 1: the bundle holds old + new roots; waiting for every proxy to hold it.</summary>
    DistributingBundle,

    /// <summary>Phase 2: the CA signs under the new root; waiting for every proxy's leaves to be re-issued.</summary>
    Reissuing,

    /// <summary>Phase 3: the bundle holds the new root only; waiting for every proxy to hold it.</summary>
    DroppingOldRoot,
}

/// <summary>A rotation that cannot start; the old root keeps serving. The message says why.</summary>
internal sealed class RotationRefusedException(string message, Exception? inner = null) : Exception(message, inner);

/// <summary>The proxies a rotation waits on (implemented over the xDS sessions; faked in tests).</summary>
internal interface IRotationProxies
{
    /// <summary>Pushes <paramref name="bundle"/> with <paramref name="reissueEpoch"/> to every proxy; returns the version to wait for.</summary>
    long PublishTrustBundle(TrustBundle bundle, ulong reissueEpoch);

    /// <summary>Nodes whose proxy has not acknowledged <paramref name="version"/> yet (empty when all have).</summary>
    IReadOnlyList<string> NotAcknowledged(long version);

    /// <summary>Every (node, identity) whose leaf a connected proxy holds and must have re-issued.</summary>
    IReadOnlyList<(string Node, SpiffeId Identity)> LeavesInUse();
}

/// <summary>How long a rotation waits; each phase moves on after <see cref="PhaseTimeout"/> whatever the stragglers.</summary>
internal sealed record RotationOptions
{
    public TimeSpan PhaseTimeout { get; init; } = TimeSpan.FromSeconds(30);
    public TimeSpan PollInterval { get; init; } = TimeSpan.FromMilliseconds(100);

    /// <summary>
    /// After every leaf is re-issued, how long before the old root leaves the bundle. "Re-issued" means signed: the
    /// proxy puts the leaf to use only once the answer reaches it, and a peer that has already dropped the old root
    /// would refuse the old leaf still presented in between (seen once under load: one new connection failed).
    /// </summary>
    public TimeSpan LeafInstallGrace { get; init; } = TimeSpan.FromSeconds(1);

    public TimeProvider Time { get; init; } = TimeProvider.System;
}

/// <summary>
/// Moves the CA to a new root without breaking a single handshake, in Istio's order: (1) every proxy gets old + new
/// roots, (2) the CA signs under the new root and every proxy re-requests its leaves - an old-leaf peer and a
/// new-leaf peer still accept each other because both trust both roots - (3) the old root leaves the bundle. Each
/// phase waits until the proxies confirm (ACKs, re-issued leaves) or <see cref="RotationOptions.PhaseTimeout"/>
/// passes, and every transition is logged. One rotation at a time.
/// </summary>
internal sealed partial class RootRotation
{
    private readonly CertificateAuthority _ca;
    private readonly IRotationProxies _proxies;
    private readonly RotationOptions _options;
    private readonly ILogger _logger;
    private readonly SemaphoreSlim _running = new(1, 1);
    // (node, identity) -> the newest signer generation that issued it a leaf.
    private readonly ConcurrentDictionary<(string Node, string Identity), long> _issued = new();
    private ulong _epoch;
    private int _phase;

    public RootRotation(CertificateAuthority ca, IRotationProxies proxies, RotationOptions options, ILogger logger)
    {
        _ca = ca;
        _proxies = proxies;
        _options = options;
        _logger = logger;
    }

    public RotationPhase Phase => (RotationPhase)Volatile.Read(ref _phase);

    /// <summary>The epoch proxies last saw; it grows by one each time the signer changes.</summary>
    public ulong ReissueEpoch => Volatile.Read(ref _epoch);

    /// <summary>Called by the CA service for every leaf it hands out, so phase 2 knows whose leaves are renewed.</summary>
    public void LeafIssued(string node, SpiffeId identity, long signerGeneration) =>
        _issued.AddOrUpdate((node, identity.ToString()), signerGeneration, (_, old) => Math.Max(old, signerGeneration));

    /// <summary>Pushes the CA's current bundle (at start, so proxies hold what the CA hands out).</summary>
    public void PublishCurrent() => _proxies.PublishTrustBundle(_ca.Material.Bundle, ReissueEpoch);

    /// <summary>
    /// Checks <paramref name="next"/> (refused with <see cref="RotationRefusedException"/>, the old root serving on),
    /// then runs the three phases. The caller owns <paramref name="next"/> until this returns, the CA after.
    /// </summary>
    public async Task RotateAsync(CaSigner next, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(next);
        if (!await _running.WaitAsync(0, cancellationToken).ConfigureAwait(false))
        {
            throw new RotationRefusedException("a root rotation is already running");
        }
        try
        {
            var old = _ca.Material;
            var newRoots = Check(old, next);
            var started = _options.Time.GetTimestamp();

            // Phase 1: proxies learn the new root before anything is signed with it.
            var both = old.Bundle.Union(newRoots);
            SetPhase(RotationPhase.DistributingBundle, both);
            _ca.SetTrustBundle(both);
            var version = _proxies.PublishTrustBundle(both, ReissueEpoch);
            await WaitAsync(RotationPhase.DistributingBundle, () => _proxies.NotAcknowledged(version), cancellationToken).ConfigureAwait(false);

            // Phase 2: sign under the new root; the epoch tells every proxy to re-request its leaves now.
            var epoch = Interlocked.Increment(ref _epoch);
            var generation = _ca.SwitchSigner(next);
            SetPhase(RotationPhase.Reissuing, both);
            version = _proxies.PublishTrustBundle(both, epoch);
            await WaitAsync(RotationPhase.Reissuing, () => NotReissued(version, generation), cancellationToken).ConfigureAwait(false);
            if (_options.LeafInstallGrace > TimeSpan.Zero)
            {
                await Task.Delay(_options.LeafInstallGrace, _options.Time, cancellationToken).ConfigureAwait(false);
            }

            // Phase 3: nothing in use chains to the old root any more.
            SetPhase(RotationPhase.DroppingOldRoot, newRoots);
            _ca.SetTrustBundle(newRoots);
            version = _proxies.PublishTrustBundle(newRoots, epoch);
            await WaitAsync(RotationPhase.DroppingOldRoot, () => _proxies.NotAcknowledged(version), cancellationToken).ConfigureAwait(false);

            Log.Completed(_logger, _options.Time.GetElapsedTime(started).TotalSeconds, newRoots.Describe());
        }
        finally
        {
            Volatile.Write(ref _phase, (int)RotationPhase.Idle);
            _running.Release();
        }
    }

    private TrustBundle Check(CaMaterial current, CaSigner next)
    {
        if (!string.Equals(next.TrustDomain, current.Signer.TrustDomain, StringComparison.Ordinal))
        {
            throw new RotationRefusedException($"the new CA is for trust domain '{next.TrustDomain}', the mesh is '{current.Signer.TrustDomain}'");
        }
        TrustBundle roots;
        try
        {
            roots = TrustBundle.FromRootPems([next.RootCertificatePem], next.TrustDomain, _options.Time);
        }
        catch (System.Security.Cryptography.CryptographicException ex)
        {
            throw new RotationRefusedException("the new root cannot be trusted: " + ex.Message, ex);
        }
        if (roots.SameRootsAs(current.Bundle))
        {
            throw new RotationRefusedException("the new root is the root already in use");
        }
        foreach (var root in roots.Roots)
        {
            if (current.Bundle.Contains(root) && current.Signer.CreateTrustBundle().Contains(root))
            {
                throw new RotationRefusedException($"root '{root.Subject}' is already the signing root");
            }
        }
        return roots;
    }

    private List<string> NotReissued(long version, long generation)
    {
        var pending = new List<string>(_proxies.NotAcknowledged(version));
        foreach (var (node, identity) in _proxies.LeavesInUse())
        {
            if (!_issued.TryGetValue((node, identity.ToString()), out var issuedBy) || issuedBy < generation)
            {
                pending.Add($"{node}:{identity}");
            }
        }
        return pending;
    }

    private async Task WaitAsync(RotationPhase phase, Func<IReadOnlyList<string>> pending, CancellationToken cancellationToken)
    {
        var started = _options.Time.GetTimestamp();
        while (true)
        {
            var left = pending();
            if (left.Count == 0)
            {
                Log.PhaseDone(_logger, (int)phase, phase, _options.Time.GetElapsedTime(started).TotalMilliseconds);
                return;
            }
            if (_options.Time.GetElapsedTime(started) >= _options.PhaseTimeout)
            {
                Log.PhaseTimedOut(_logger, (int)phase, phase, _options.PhaseTimeout.TotalSeconds, left.Count, string.Join(", ", left.Take(10)));
                return;
            }
            await Task.Delay(_options.PollInterval, _options.Time, cancellationToken).ConfigureAwait(false);
        }
    }

    private void SetPhase(RotationPhase phase, TrustBundle bundle)
    {
        Volatile.Write(ref _phase, (int)phase);
        Log.PhaseStarted(_logger, (int)phase, phase, bundle.Describe(), ReissueEpoch);
    }

    private static partial class Log
    {
        [LoggerMessage(1, LogLevel.Information, "root rotation phase {Number}/3 {Phase}: bundle {Roots}, re-issue epoch {Epoch}")]
        public static partial void PhaseStarted(ILogger logger, int number, RotationPhase phase, string roots, ulong epoch);

        [LoggerMessage(2, LogLevel.Information, "root rotation phase {Number}/3 {Phase} confirmed by every proxy in {Milliseconds:F0} ms")]
        public static partial void PhaseDone(ILogger logger, int number, RotationPhase phase, double milliseconds);

        [LoggerMessage(3, LogLevel.Warning, "root rotation phase {Number}/3 {Phase}: moving on after {Seconds:F0} s without {Count} confirmation(s): {Pending}")]
        public static partial void PhaseTimedOut(ILogger logger, int number, RotationPhase phase, double seconds, int count, string pending);

        [LoggerMessage(4, LogLevel.Information, "root rotation done in {Seconds:F1} s: the mesh trusts {Roots} only")]
        public static partial void Completed(ILogger logger, double seconds, string roots);
    }
}

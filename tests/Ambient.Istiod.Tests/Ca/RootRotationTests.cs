using System.Security.Cryptography.X509Certificates;
using Ambient.Core.Files;
using Ambient.Core.Identity;
using Ambient.Istiod.Ca;
using Ambient.TestCommon;
using Microsoft.Extensions.Logging;

namespace Ambient.Istiod.Tests.Ca;

/// <summary>
/// The root rotation's phase machine against fake proxies: old + new roots go out first, the CA switches its signer
/// and waits for every leaf in use to be re-issued, then the old root is dropped; each phase waits for the proxies
/// or its time bound; a rotation that cannot work is refused and leaves the old root serving.
/// </summary>
[System.Runtime.Versioning.UnsupportedOSPlatform("windows")]
public sealed class RootRotationTests : IDisposable
{
    private static readonly SpiffeId Web = SpiffeId.Parse("spiffe://cluster.local/ns/demo/sa/web");
    private static readonly TimeSpan Patience = TimeSpan.FromSeconds(10);
    private readonly TempDir _dir = new();
    private readonly CaSigner _old;
    private readonly CaSigner _new;
    private readonly CertificateAuthority _ca;
    private readonly FakeProxies _proxies = new();
    private readonly ListLogger<RootRotation> _log = new();

    public RootRotationTests()
    {
        _old = CaStore.LoadOrCreate(Path.Combine(_dir.Path, "old"));
        _new = CaStore.LoadOrCreate(Path.Combine(_dir.Path, "new"));
        _ca = new CertificateAuthority(_old);
    }

    private RootRotation NewRotation(TimeSpan? phaseTimeout = null) =>
        new(_ca, _proxies, new RotationOptions { PhaseTimeout = phaseTimeout ?? Patience, PollInterval = TimeSpan.FromMilliseconds(10) }, _log);

    [Fact]
    public async Task Phases_PushOldPlusNew_ThenReissueUnderTheNewRoot_ThenDropTheOldRoot()
    {
        var rotation = NewRotation();
        _proxies.Rotation = rotation;
        _proxies.Leaves.Add(("node-a", Web));
        _proxies.AckAtOnce = true;
        // A proxy that re-requests its leaf as soon as the epoch changes, as ztunnel does.
        _proxies.Published += (_, epoch) =>
        {
            if (epoch > 0)
            {
                var issued = Issue();
                rotation.LeafIssued("node-a", Web, issued.SignerGeneration);
            }
        };

        await rotation.RotateAsync(_new, TestContext.Current.CancellationToken);

        Assert.Equal(
        [
            (2, 0UL, RotationPhase.DistributingBundle),
            (2, 1UL, RotationPhase.Reissuing),
            (1, 1UL, RotationPhase.DroppingOldRoot),
        ], _proxies.Pushes.Select(p => (p.Bundle.Roots.Count, p.Epoch, p.Phase)));
        Assert.Equal(RotationPhase.Idle, rotation.Phase);
        Assert.True(_ca.Material.Bundle.SameRootsAs(_new.CreateTrustBundle()));

        var leaf = X509Certificate2.CreateFromPem(Issue().LeafPem);
        Assert.True(_new.CreateTrustBundle().ValidateChain(leaf, null, out var error), error);
        Assert.False(_old.CreateTrustBundle().ValidateChain(leaf, null, out _));
        var messages = _log.Entries.Select(e => e.Message).ToList();
        Assert.Contains(messages, m => m.StartsWith("root rotation phase 1/3 DistributingBundle", StringComparison.Ordinal));
        Assert.Contains(messages, m => m.StartsWith("root rotation phase 2/3 Reissuing", StringComparison.Ordinal));
        Assert.Contains(messages, m => m.StartsWith("root rotation phase 3/3 DroppingOldRoot", StringComparison.Ordinal));
        Assert.Contains(messages, m => m.StartsWith("root rotation done", StringComparison.Ordinal));
        Assert.DoesNotContain(_log.Entries, e => e.Level >= LogLevel.Warning);
    }

    [Fact]
    public async Task EachPhase_WaitsForTheProxies_AndLeavesOfBothRootsVerifyInBetween()
    {
        var rotation = NewRotation();
        _proxies.Leaves.Add(("node-a", Web));
        var run = rotation.RotateAsync(_new, TestContext.Current.CancellationToken);

        // Phase 1: the bundle grew, the CA still signs under the old root, and nothing moves without the ACK.
        await WaitForAsync(() => rotation.Phase == RotationPhase.DistributingBundle);
        var oldLeaf = Issue();
        Assert.Equal(2, TrustBundle.FromRootPems([oldLeaf.ChainPem[^1]], "cluster.local").Roots.Count);
        Assert.True(_old.CreateTrustBundle().ValidateChain(X509Certificate2.CreateFromPem(oldLeaf.LeafPem), null, out var error), error);
        await Task.Delay(200, TestContext.Current.CancellationToken);
        Assert.Equal(RotationPhase.DistributingBundle, rotation.Phase);

        // Phase 2: once ACKed, new leaves come from the new root, and both kinds verify against the pushed bundle.
        _proxies.AckAll();
        await WaitForAsync(() => rotation.Phase == RotationPhase.Reissuing);
        _proxies.AckAll();
        var newLeaf = Issue();
        var pushed = _proxies.Pushes[^1].Bundle;
        Assert.True(pushed.ValidateChain(X509Certificate2.CreateFromPem(oldLeaf.LeafPem), null, out error), error);
        Assert.True(pushed.ValidateChain(X509Certificate2.CreateFromPem(newLeaf.LeafPem), null, out error), error);
        Assert.True(_new.CreateTrustBundle().ValidateChain(X509Certificate2.CreateFromPem(newLeaf.LeafPem), null, out error), error);
        // The leaf in use is not renewed yet: the old root must stay.
        await Task.Delay(200, TestContext.Current.CancellationToken);
        Assert.Equal(RotationPhase.Reissuing, rotation.Phase);

        // Phase 3 only after node-a's leaf is re-issued.
        rotation.LeafIssued("node-a", Web, newLeaf.SignerGeneration);
        await WaitForAsync(() => rotation.Phase == RotationPhase.DroppingOldRoot);
        Assert.False(run.IsCompleted);
        _proxies.AckAll();
        await run.WaitAsync(Patience, TestContext.Current.CancellationToken);
        Assert.Single(_proxies.Pushes[^1].Bundle.Roots);
    }

    [Fact]
    public async Task AProxyThatNeverConfirms_HoldsEachPhaseOnlyForTheBound_AndIsNamed()
    {
        var rotation = NewRotation(phaseTimeout: TimeSpan.FromMilliseconds(150));
        _proxies.Leaves.Add(("node-silent", Web));

        await rotation.RotateAsync(_new, TestContext.Current.CancellationToken).WaitAsync(Patience, TestContext.Current.CancellationToken);

        var warnings = _log.Entries.Where(e => e.Level == LogLevel.Warning).Select(e => e.Message).ToList();
        Assert.Equal(3, warnings.Count);
        Assert.All(warnings, w => Assert.Contains("node-silent", w, StringComparison.Ordinal));
        Assert.True(_ca.Material.Bundle.SameRootsAs(_new.CreateTrustBundle()));
    }

    [Fact]
    public async Task TheRootAlreadyInUse_OrAnotherTrustDomain_IsRefused_AndTheOldRootKeepsServing()
    {
        var rotation = NewRotation();
        using var same = CaStore.LoadOrCreate(Path.Combine(_dir.Path, "old"));
        using var foreign = CaStore.LoadOrCreate(Path.Combine(_dir.Path, "foreign"), "other.domain");

        var ex = await Assert.ThrowsAsync<RotationRefusedException>(() => rotation.RotateAsync(same, TestContext.Current.CancellationToken));
        Assert.Contains("already in use", ex.Message, StringComparison.Ordinal);
        ex = await Assert.ThrowsAsync<RotationRefusedException>(() => rotation.RotateAsync(foreign, TestContext.Current.CancellationToken));
        Assert.Contains("trust domain 'other.domain'", ex.Message, StringComparison.Ordinal);

        Assert.Empty(_proxies.Pushes);
        Assert.Same(_old, _ca.Material.Signer);
        Assert.True(_ca.Material.Bundle.SameRootsAs(_old.CreateTrustBundle()));
        Assert.Equal(RotationPhase.Idle, rotation.Phase);
    }

    [Fact]
    public async Task DropFolder_RefusesABadPair_NamingTheFile_ThenRotatesToAGoodOne_AndMakesItTheStateRoot()
    {
        var state = Path.Combine(_dir.Path, "old");
        var rotation = NewRotation();
        _proxies.AckAtOnce = true;
        var folderLog = new ListLogger<RootRotationFolder>();
        await using var folder = new RootRotationFolder(state, "cluster.local", rotation, folderLog);
        PrivateFile.EnsureDirectory(folder.Folder);
        var newCert = File.ReadAllText(Path.Combine(_dir.Path, "new", CaStore.RootCertFile));
        var newKey = File.ReadAllText(Path.Combine(_dir.Path, "new", CaStore.RootKeyFile));
        var oldKey = File.ReadAllText(Path.Combine(state, CaStore.RootKeyFile));

        // The new certificate with the old key: refused before anything is pushed.
        PrivateFile.Write(Path.Combine(folder.Folder, CaStore.RootCertFile), newCert);
        PrivateFile.Write(Path.Combine(folder.Folder, CaStore.RootKeyFile), oldKey);
        Assert.False(await folder.CheckOnceAsync(TestContext.Current.CancellationToken));
        var refusal = Assert.Single(folderLog.Entries, e => e.Level == LogLevel.Error).Message;
        Assert.Contains("root rotation refused", refusal, StringComparison.Ordinal);
        Assert.Contains(Path.Combine(folder.Folder, CaStore.RootKeyFile), refusal, StringComparison.Ordinal);
        Assert.Empty(_proxies.Pushes);
        Assert.Same(_old, _ca.Material.Signer);
        // Reported once, not at every poll.
        Assert.False(await folder.CheckOnceAsync(TestContext.Current.CancellationToken));
        Assert.Single(folderLog.Entries, e => e.Level == LogLevel.Error);

        PrivateFile.Write(Path.Combine(folder.Folder, CaStore.RootKeyFile), newKey);
        Assert.True(await folder.CheckOnceAsync(TestContext.Current.CancellationToken));

        Assert.True(_ca.Material.Bundle.SameRootsAs(_new.CreateTrustBundle()));
        Assert.Equal(newCert, File.ReadAllText(Path.Combine(state, CaStore.RootCertFile)));
        Assert.Empty(Directory.GetFiles(folder.Folder));
        using var reloaded = CaStore.LoadOrCreate(state);
        Assert.True(reloaded.CreateTrustBundle().SameRootsAs(_new.CreateTrustBundle()));
    }

    private IssuedCertificate Issue()
    {
        using var csr = WorkloadCsr.Create(Web);
        return _ca.IssueWorkloadCertificate(csr.CsrPem, Web, TimeSpan.FromHours(1));
    }

    private static async Task WaitForAsync(Func<bool> condition)
    {
        var deadline = DateTime.UtcNow + Patience;
        while (!condition())
        {
            Assert.True(DateTime.UtcNow < deadline, "condition not reached in time");
            await Task.Delay(10, TestContext.Current.CancellationToken);
        }
    }

    public void Dispose()
    {
        _old.Dispose();
        _new.Dispose();
        _dir.Dispose();
    }

    /// <summary>Proxies that ACK at once or when told, and hold the leaves the test lists.</summary>
    private sealed class FakeProxies : IRotationProxies
    {
        private readonly Lock _lock = new();
        private long _version;
        private long _acked;

        public bool AckAtOnce { get; set; }
        public List<(string Node, SpiffeId Identity)> Leaves { get; } = [];
        public List<(TrustBundle Bundle, ulong Epoch, RotationPhase Phase)> Pushes { get; } = [];
        public RootRotation? Rotation { get; set; }
        public event Action<TrustBundle, ulong>? Published;

        public long PublishTrustBundle(TrustBundle bundle, ulong reissueEpoch)
        {
            long version;
            lock (_lock)
            {
                version = ++_version;
                Pushes.Add((bundle, reissueEpoch, Rotation?.Phase ?? RotationPhase.Idle));
                if (AckAtOnce)
                {
                    _acked = version;
                }
            }
            Published?.Invoke(bundle, reissueEpoch);
            return version;
        }

        public void AckAll()
        {
            lock (_lock)
            {
                _acked = _version;
            }
        }

        public IReadOnlyList<string> NotAcknowledged(long version)
        {
            lock (_lock)
            {
                return _acked >= version ? [] : [.. Leaves.Select(l => l.Node).Distinct()];
            }
        }

        public IReadOnlyList<(string Node, SpiffeId Identity)> LeavesInUse() => Leaves;
    }
}

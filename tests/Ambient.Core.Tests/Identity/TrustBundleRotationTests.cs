using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;
using Ambient.TestCommon;
using Ambient.Core.Identity;

namespace Ambient.Core.Tests.Identity;

/// <summary>
/// The bundle side of a root rotation: with old + new roots a leaf of either verifies (so an old-leaf peer and a
/// new-leaf peer accept each other), once the old root is dropped its leaves do not, and a pushed bundle that is not
/// a set of usable roots is refused with a reason.
/// </summary>
public class TrustBundleRotationTests
{
    private static readonly SpiffeId Id = SpiffeId.Parse("spiffe://cluster.local/ns/demo/sa/web");

    [Fact]
    public void OldPlusNew_AcceptsLeavesOfBothRoots_AndNewOnly_RefusesTheOldRootsLeaves()
    {
        using var oldPki = new TestPki("Old Root");
        using var newPki = new TestPki("New Root");
        using var oldLeaf = oldPki.IssueLeaf(Id);
        using var newLeaf = newPki.IssueLeaf(Id);

        var both = oldPki.Bundle().Union(newPki.Bundle());
        Assert.Equal(2, both.Roots.Count);
        Assert.True(both.ValidateChain(oldLeaf, null, out var error), error);
        Assert.True(both.ValidateChain(newLeaf, null, out error), error);

        var newOnly = TrustBundle.FromRootPems(newPki.Bundle().RootPems(), SpiffeId.DefaultTrustDomain);
        Assert.True(newOnly.ValidateChain(newLeaf, null, out error), error);
        Assert.False(newOnly.ValidateChain(oldLeaf, null, out error));
        Assert.Contains("does not chain to the mesh root", error, StringComparison.Ordinal);
    }

    [Fact]
    public void FromRootPems_ReadsOneRootPerEntry_OrSeveralInOneEntry_AsACaResponseEndsWithThem()
    {
        using var a = new TestPki("Root A");
        using var b = new TestPki("Root B");
        var separate = TrustBundle.FromRootPems([a.Root.ExportCertificatePem(), b.Root.ExportCertificatePem()], SpiffeId.DefaultTrustDomain);
        var concatenated = TrustBundle.FromRootPems([a.Root.ExportCertificatePem() + "\n" + b.Root.ExportCertificatePem()], SpiffeId.DefaultTrustDomain);

        Assert.True(separate.SameRootsAs(concatenated));
        Assert.True(separate.Contains(a.Root) && separate.Contains(b.Root));
        Assert.False(a.Bundle().SameRootsAs(separate));
        Assert.Contains("Root A", separate.Describe(), StringComparison.Ordinal);
    }

    [Fact]
    public void FromRootPems_RefusesANonCaCertificate_NamingIt()
    {
        using var pki = new TestPki();
        using var leaf = pki.IssueLeaf(Id);

        var ex = Assert.Throws<CryptographicException>(() =>
            TrustBundle.FromRootPems([pki.Root.ExportCertificatePem(), leaf.ExportCertificatePem()], SpiffeId.DefaultTrustDomain));
        Assert.Contains("is not a CA certificate", ex.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void FromRootPems_RefusesGarbage_AnEmptyEntry_AndNoRoots()
    {
        using var pki = new TestPki();
        Assert.Contains("root 1 holds no", Assert.Throws<CryptographicException>(() =>
            TrustBundle.FromRootPems([pki.Root.ExportCertificatePem(), "not pem"], SpiffeId.DefaultTrustDomain)).Message, StringComparison.Ordinal);
        Assert.Contains("no root certificate", Assert.Throws<CryptographicException>(() =>
            TrustBundle.FromRootPems([], SpiffeId.DefaultTrustDomain)).Message, StringComparison.Ordinal);
    }

    [Fact]
    public void FromRootPems_RefusesAnExpiredRoot()
    {
        using var pki = new TestPki();
        var later = new FixedTime(DateTimeOffset.UtcNow.AddYears(20));

        var ex = Assert.Throws<CryptographicException>(() => TrustBundle.FromRootPems(pki.Bundle().RootPems(), SpiffeId.DefaultTrustDomain, later));
        Assert.Contains("expired", ex.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void Source_ReplacesWhole_AndSignalsOnlyARealChange()
    {
        using var oldPki = new TestPki("Old Root");
        using var newPki = new TestPki("New Root");
        var source = new TrustBundleSource(oldPki.Bundle());
        var changes = 0;
        source.Changed += _ => changes++;

        Assert.False(source.Replace(oldPki.Bundle()));
        Assert.True(source.Replace(oldPki.Bundle().Union(newPki.Bundle())));
        Assert.Equal(2, source.Current.Roots.Count);
        Assert.Equal(1, changes);
        Assert.Throws<ArgumentException>(() => source.Replace(newPki.Bundle("other.domain")));
    }

    private sealed class FixedTime(DateTimeOffset now) : TimeProvider
    {
        public override DateTimeOffset GetUtcNow() => now;
    }

    /// <summary>One root of the shared test PKI and the bundle that trusts only it.</summary>
    private sealed class TestPki(string commonName = "ambient-test-root") : IDisposable
    {
        public X509Certificate2 Root { get; } = TestCertificates.CreateRoot(commonName);

        public X509Certificate2 IssueLeaf(SpiffeId id) => TestCertificates.IssueLeaf(Root, [id.ToString()]);

        public TrustBundle Bundle(string trustDomain = SpiffeId.DefaultTrustDomain) =>
            new(trustDomain, new X509Certificate2Collection(X509CertificateLoader.LoadCertificate(Root.RawData)));

        public void Dispose() => Root.Dispose();
    }
}

using System.Security.Cryptography.X509Certificates;
using Ambient.Core.Identity;

namespace Ambient.Core.Tests.Identity;

public class TrustBundleTests
{
    private static readonly SpiffeId Id = SpiffeId.Parse("spiffe://cluster.local/ns/demo/sa/web");

    [Fact]
    public void GoodLeaf_IsAccepted_WithItsIdentity()
    {
        using var pki = new TestPki();
        using var leaf = pki.IssueLeaf(Id);

        Assert.True(pki.Bundle().ValidateChain(leaf, null, out var identity, out var error), error);
        Assert.Equal(Id, identity);
        Assert.Equal(string.Empty, error);
    }

    [Fact]
    public void LeafFromForeignCa_IsRejected()
    {
        using var ours = new TestPki("Our Root");
        using var foreign = new TestPki("Foreign Root");
        using var leaf = foreign.IssueLeaf(Id);

        Assert.False(ours.Bundle().ValidateChain(leaf, null, out var error));
        Assert.Contains("does not chain to the mesh root", error, StringComparison.Ordinal);
    }

    [Fact]
    public void ForeignRootPassedAsIntermediate_IsStillRejected()
    {
        using var ours = new TestPki("Our Root");
        using var foreign = new TestPki("Foreign Root");
        using var leaf = foreign.IssueLeaf(Id);

        Assert.False(ours.Bundle().ValidateChain(leaf, new X509Certificate2Collection(foreign.Root), out var error));
        Assert.False(string.IsNullOrEmpty(error));
    }

    [Fact]
    public void ExpiredLeaf_IsRejected()
    {
        using var pki = new TestPki();
        var now = DateTimeOffset.UtcNow;
        using var leaf = pki.IssueLeaf([Id.ToString()], now.AddDays(-5), now.AddDays(-1));

        Assert.False(pki.Bundle().ValidateChain(leaf, null, out var error));
        Assert.Contains("expired", error, StringComparison.Ordinal);
    }

    [Fact]
    public void NotYetValidLeaf_IsRejected()
    {
        using var pki = new TestPki();
        var now = DateTimeOffset.UtcNow;
        using var leaf = pki.IssueLeaf([Id.ToString()], now.AddDays(1), now.AddDays(2));

        Assert.False(pki.Bundle().ValidateChain(leaf, null, out var error));
        Assert.Contains("not valid before", error, StringComparison.Ordinal);
    }

    [Fact]
    public void ForeignTrustDomain_IsRejected()
    {
        using var pki = new TestPki();
        using var leaf = pki.IssueLeaf(SpiffeId.Parse("spiffe://other.domain/ns/demo/sa/web"));

        Assert.False(pki.Bundle().ValidateChain(leaf, null, out var error));
        Assert.Contains("not of trust domain 'cluster.local'", error, StringComparison.Ordinal);
    }

    [Fact]
    public void LeafWithoutUri_OrWithTwo_IsRejected()
    {
        using var pki = new TestPki();
        using var none = pki.IssueLeaf([]);
        using var two = pki.IssueLeaf([Id.ToString(), "spiffe://cluster.local/ns/demo/sa/other"]);

        Assert.False(pki.Bundle().ValidateChain(none, null, out var error1));
        Assert.Contains("no URI", error1, StringComparison.Ordinal);
        Assert.False(pki.Bundle().ValidateChain(two, null, out var error2));
        Assert.Contains("exactly one", error2, StringComparison.Ordinal);
    }

    [Fact]
    public void LeafWithSeveralUris_IsAccepted_WhenOneIsTheExpectedIdentity()
    {
        using var pki = new TestPki();
        var other = SpiffeId.Parse("spiffe://cluster.local/ns/demo/sa/other");
        using var leaf = pki.IssueLeaf(["https://example.com/app", "spiffe://other.domain/ns/demo/sa/web", Id.ToString(), other.ToString()]);

        Assert.True(pki.Bundle().ValidateChain(leaf, null, Id, out var error), error);
        Assert.True(pki.Bundle().ValidateChain(leaf, null, other, out error), error);
        Assert.False(pki.Bundle().ValidateChain(leaf, null, SpiffeId.Parse("spiffe://cluster.local/ns/demo/sa/third"), out error));
        Assert.Contains("spiffe://cluster.local/ns/demo/sa/third", error, StringComparison.Ordinal);
        Assert.Contains(Id.ToString(), error, StringComparison.Ordinal);
    }

    [Fact]
    public void LeafWithSeveralUris_WithoutExpectation_YieldsItsOneIdentityOfOurTrustDomain()
    {
        using var pki = new TestPki();
        using var leaf = pki.IssueLeaf(["https://example.com/app", "spiffe://other.domain/ns/demo/sa/web", Id.ToString()]);

        Assert.True(pki.Bundle().ValidateChain(leaf, null, out var identity, out var error), error);
        Assert.Equal(Id, identity);
    }

    [Fact]
    public void LeafWithSeveralUris_IsRefused_WhenNoneIsExpected_OrOneIsMalformed()
    {
        using var pki = new TestPki();
        using var foreignOnly = pki.IssueLeaf(["https://example.com/app", "spiffe://other.domain/ns/demo/sa/web"]);
        using var malformed = pki.IssueLeaf([Id.ToString(), "spiffe://cluster.local/not-a-workload"]);

        Assert.False(pki.Bundle().ValidateChain(foreignOnly, null, Id, out var error));
        Assert.Contains("does not carry", error, StringComparison.Ordinal);
        Assert.False(pki.Bundle().ValidateChain(foreignOnly, null, out error));
        Assert.Contains("not of trust domain 'cluster.local'", error, StringComparison.Ordinal);
        Assert.False(pki.Bundle().ValidateChain(malformed, null, Id, out error));
        Assert.Contains("spiffe://cluster.local/not-a-workload", error, StringComparison.Ordinal);
        Assert.False(pki.Bundle().ValidateChain(malformed, null, out error));
    }

    [Fact]
    public void CaCertificateAsLeaf_IsRejected()
    {
        using var pki = new TestPki();
        using var leaf = pki.IssueLeaf([Id.ToString()], ca: true);

        Assert.False(pki.Bundle().ValidateChain(leaf, null, out var error));
        Assert.Contains("CA certificate", error, StringComparison.Ordinal);
    }

    [Fact]
    public void FromPem_RoundTrips_AndRejectsGarbage()
    {
        using var pki = new TestPki();
        var bundle = TrustBundle.FromPem(pki.Root.ExportCertificatePem());
        using var leaf = pki.IssueLeaf(Id);

        Assert.Single(bundle.Roots);
        Assert.True(bundle.ValidateChain(leaf, null, out var error), error);
        Assert.Contains("BEGIN CERTIFICATE", bundle.ExportPem(), StringComparison.Ordinal);
        Assert.ThrowsAny<System.Security.Cryptography.CryptographicException>(() => TrustBundle.FromPem("not a pem"));
    }
}

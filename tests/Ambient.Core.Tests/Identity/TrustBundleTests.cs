using System.Security.Cryptography.X509Certificates;
using Ambient.Core.Identity;
using Ambient.TestCommon;

namespace Ambient.Core.Tests.Identity;

public class TrustBundleTests
{
    private static readonly SpiffeId Id = SpiffeId.Parse("spiffe://cluster.local/ns/demo/sa/web");

    private static TrustBundle Bundle(X509Certificate2 root)
        => new(SpiffeId.DefaultTrustDomain, new X509Certificate2Collection(X509CertificateLoader.LoadCertificate(root.RawData)));

    [Fact]
    public void GoodLeaf_IsAccepted_WithItsIdentity()
    {
        using var root = TestCertificates.CreateRoot();
        using var leaf = TestCertificates.IssueLeaf(root, [Id.ToString()]);

        Assert.True(Bundle(root).ValidateChain(leaf, null, out var identity, out var error), error);
        Assert.Equal(Id, identity);
        Assert.Equal(string.Empty, error);
    }

    [Fact]
    public void LeafFromForeignCa_IsRejected()
    {
        using var ours = TestCertificates.CreateRoot("Our Root");
        using var foreign = TestCertificates.CreateRoot("Foreign Root");
        using var leaf = TestCertificates.IssueLeaf(foreign, [Id.ToString()]);

        Assert.False(Bundle(ours).ValidateChain(leaf, null, out var error));
        Assert.Contains("does not chain to the mesh root", error, StringComparison.Ordinal);
    }

    [Fact]
    public void ForeignRootPassedAsIntermediate_IsStillRejected()
    {
        using var ours = TestCertificates.CreateRoot("Our Root");
        using var foreign = TestCertificates.CreateRoot("Foreign Root");
        using var leaf = TestCertificates.IssueLeaf(foreign, [Id.ToString()]);

        Assert.False(Bundle(ours).ValidateChain(leaf, new X509Certificate2Collection(foreign), out var error));
        Assert.False(string.IsNullOrEmpty(error));
    }

    [Fact]
    public void ExpiredLeaf_IsRejected()
    {
        using var root = TestCertificates.CreateRoot();
        var now = DateTimeOffset.UtcNow;
        using var leaf = TestCertificates.IssueLeaf(root, [Id.ToString()], now.AddDays(-5), now.AddDays(-1));

        Assert.False(Bundle(root).ValidateChain(leaf, null, out var error));
        Assert.Contains("expired", error, StringComparison.Ordinal);
    }

    [Fact]
    public void NotYetValidLeaf_IsRejected()
    {
        using var root = TestCertificates.CreateRoot();
        var now = DateTimeOffset.UtcNow;
        using var leaf = TestCertificates.IssueLeaf(root, [Id.ToString()], now.AddDays(1), now.AddDays(2));

        Assert.False(Bundle(root).ValidateChain(leaf, null, out var error));
        Assert.Contains("not valid before", error, StringComparison.Ordinal);
    }

    [Fact]
    public void ForeignTrustDomain_IsRejected()
    {
        using var root = TestCertificates.CreateRoot();
        using var leaf = TestCertificates.IssueLeaf(root, ["spiffe://other.domain/ns/demo/sa/web"]);

        Assert.False(Bundle(root).ValidateChain(leaf, null, out var error));
        Assert.Contains("not of trust domain 'cluster.local'", error, StringComparison.Ordinal);
    }

    [Fact]
    public void LeafWithoutUri_OrWithTwo_IsRejected()
    {
        using var root = TestCertificates.CreateRoot();
        using var none = TestCertificates.IssueLeaf(root, []);
        using var two = TestCertificates.IssueLeaf(root, [Id.ToString(), "spiffe://cluster.local/ns/demo/sa/other"]);

        Assert.False(Bundle(root).ValidateChain(none, null, out var error1));
        Assert.Contains("no URI", error1, StringComparison.Ordinal);
        Assert.False(Bundle(root).ValidateChain(two, null, out var error2));
        Assert.Contains("exactly one", error2, StringComparison.Ordinal);
    }

    [Fact]
    public void LeafWithSeveralUris_IsAccepted_WhenOneIsTheExpectedIdentity()
    {
        using var root = TestCertificates.CreateRoot();
        var other = SpiffeId.Parse("spiffe://cluster.local/ns/demo/sa/other");
        using var leaf = TestCertificates.IssueLeaf(root, ["https://example.com/app", "spiffe://other.domain/ns/demo/sa/web", Id.ToString(), other.ToString()]);

        Assert.True(Bundle(root).ValidateChain(leaf, null, Id, out var error), error);
        Assert.True(Bundle(root).ValidateChain(leaf, null, other, out error), error);
        Assert.False(Bundle(root).ValidateChain(leaf, null, SpiffeId.Parse("spiffe://cluster.local/ns/demo/sa/third"), out error));
        Assert.Contains("spiffe://cluster.local/ns/demo/sa/third", error, StringComparison.Ordinal);
        Assert.Contains(Id.ToString(), error, StringComparison.Ordinal);
    }

    [Fact]
    public void LeafWithSeveralUris_WithoutExpectation_YieldsItsOneIdentityOfOurTrustDomain()
    {
        using var root = TestCertificates.CreateRoot();
        using var leaf = TestCertificates.IssueLeaf(root, ["https://example.com/app", "spiffe://other.domain/ns/demo/sa/web", Id.ToString()]);

        Assert.True(Bundle(root).ValidateChain(leaf, null, out var identity, out var error), error);
        Assert.Equal(Id, identity);
    }

    [Fact]
    public void LeafWithSeveralUris_IsRefused_WhenNoneIsExpected_OrOneIsMalformed()
    {
        using var root = TestCertificates.CreateRoot();
        using var foreignOnly = TestCertificates.IssueLeaf(root, ["https://example.com/app", "spiffe://other.domain/ns/demo/sa/web"]);
        using var malformed = TestCertificates.IssueLeaf(root, [Id.ToString(), "spiffe://cluster.local/not-a-workload"]);

        Assert.False(Bundle(root).ValidateChain(foreignOnly, null, Id, out var error));
        Assert.Contains("does not carry", error, StringComparison.Ordinal);
        Assert.False(Bundle(root).ValidateChain(foreignOnly, null, out error));
        Assert.Contains("not of trust domain 'cluster.local'", error, StringComparison.Ordinal);
        Assert.False(Bundle(root).ValidateChain(malformed, null, Id, out error));
        Assert.Contains("spiffe://cluster.local/not-a-workload", error, StringComparison.Ordinal);
        Assert.False(Bundle(root).ValidateChain(malformed, null, out error));
    }

    [Fact]
    public void CaCertificateAsLeaf_IsRejected()
    {
        using var root = TestCertificates.CreateRoot();
        using var leaf = TestCertificates.IssueLeaf(root, [Id.ToString()], ca: true);

        Assert.False(Bundle(root).ValidateChain(leaf, null, out var error));
        Assert.Contains("CA certificate", error, StringComparison.Ordinal);
    }

    [Fact]
    public void FromPem_RoundTrips_AndRejectsGarbage()
    {
        using var root = TestCertificates.CreateRoot();
        var bundle = TrustBundle.FromPem(root.ExportCertificatePem());
        using var leaf = TestCertificates.IssueLeaf(root, [Id.ToString()]);

        Assert.Single(bundle.Roots);
        Assert.True(bundle.ValidateChain(leaf, null, out var error), error);
        Assert.Contains("BEGIN CERTIFICATE", bundle.ExportPem(), StringComparison.Ordinal);
        Assert.ThrowsAny<System.Security.Cryptography.CryptographicException>(() => TrustBundle.FromPem("not a pem"));
    }
}

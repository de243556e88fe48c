using Ambient.Core.Identity;
using Ambient.Istiod.Ca;
using Ambient.TestCommon;

namespace Ambient.Istiod.Tests;

/// <summary>The trust domain is the mesh's choice (<c>--trust-domain</c>), not a constant: identities, issuance and
/// peer checks all follow it.</summary>
public sealed class TrustDomainTests : IDisposable
{
    private readonly TempDir _dir = new();

    public void Dispose() => _dir.Dispose();

    private string Config() => _dir.Write("mesh/demo.yaml", MeshYaml.Namespace("demo", dataplaneMode: null));

    [Fact]
    public void The_flag_sets_the_trust_domain_and_defaults_to_cluster_local()
    {
        Assert.Equal("cluster.local", IstiodOptions.TryParse(["--config", Config()], out var error)!.TrustDomain);
        Assert.Null(error);
        Assert.Equal("example.org", IstiodOptions.TryParse(["--config", Config(), "--trust-domain", "example.org"], out error)!.TrustDomain);
        Assert.Null(error);
    }

    [Theory]
    [InlineData("Example.ORG")]
    [InlineData("")]
    [InlineData("td/ns")]
    public void A_trust_domain_spiffe_does_not_allow_is_refused_at_start_naming_the_flag(string bad)
    {
        Assert.Null(IstiodOptions.TryParse(["--config", Config(), "--trust-domain", bad], out var error));
        Assert.StartsWith("--trust-domain: ", error, StringComparison.Ordinal);
        Assert.Contains("trust domain", error![16..], StringComparison.Ordinal);
    }

    [Fact]
    public void A_mesh_of_another_trust_domain_issues_and_accepts_its_identities_and_refuses_other_trust_domains()
    {
        using var root = CaStore.LoadOrCreate(_dir.Path, "example.org");
        var ca = new CertificateAuthority(root);
        var bundle = root.CreateTrustBundle();
        Assert.Equal("example.org", bundle.TrustDomain);

        var own = SpiffeId.Parse("spiffe://example.org/ns/demo/sa/web");
        using var ownCsr = WorkloadCsr.Create(own);
        using var ownLeaf = ownCsr.CombineWithLeaf(ca.IssueWorkloadCertificate(ownCsr.CsrPem, own, TimeSpan.FromHours(1)).LeafPem);
        Assert.True(bundle.ValidateChain(ownLeaf, null, out var identity, out var error), error);
        Assert.Equal("spiffe://example.org/ns/demo/sa/web", identity.ToString());

        // Same root, identity of the default trust domain: a peer presenting it is refused.
        var foreign = SpiffeId.Parse("spiffe://cluster.local/ns/demo/sa/web");
        using var foreignCsr = WorkloadCsr.Create(foreign);
        using var foreignLeaf = foreignCsr.CombineWithLeaf(ca.IssueWorkloadCertificate(foreignCsr.CsrPem, foreign, TimeSpan.FromHours(1)).LeafPem);
        Assert.False(bundle.ValidateChain(foreignLeaf, null, out _, out error));
        Assert.Contains("not of trust domain 'example.org'", error, StringComparison.Ordinal);
    }
}

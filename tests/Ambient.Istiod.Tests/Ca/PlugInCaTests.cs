using System.Security.Cryptography.X509Certificates;
using Ambient.Core.Identity;
using Ambient.Istiod.Ca;
using Ambient.TestCommon;

namespace Ambient.Istiod.Tests.Ca;

/// <summary>An operator's intermediate CA (Istio's cacerts layout) made by openssl, loaded, signing, and refused.</summary>
public sealed class PlugInCaTests
{
    private static readonly SpiffeId Id = SpiffeId.Parse("spiffe://cluster.local/ns/demo/sa/echo");

    public static TheoryData<string, CaKeyFormat> Keys => new()
    {
        { "rsa:2048", CaKeyFormat.Pkcs1 },
        { "ec:P-384", CaKeyFormat.Sec1 },
        { "ec:P-256", CaKeyFormat.Pkcs8 },
        { "rsa:4096", CaKeyFormat.Pkcs8 },
        { "rsa:2048", CaKeyFormat.EncryptedPkcs8 },
        { "ec:P-384", CaKeyFormat.EncryptedPkcs8 },
    };

    [Theory]
    [MemberData(nameof(Keys))]
    public void Leaves_are_signed_by_the_intermediate_and_verify_with_openssl_through_cert_chain(string key, CaKeyFormat format)
    {
        using var cacerts = new PlugInCaFolder(key, format);
        using var signer = PlugInCa.Load(cacerts.Folder, cacerts.PasswordFile, "cluster.local");
        var ca = new CertificateAuthority(signer);
        using var csr = WorkloadCsr.Create(Id);

        var issued = ca.IssueWorkloadCertificate(csr.CsrPem, Id, TimeSpan.FromHours(1));

        // The independent verifier, exactly as an operator would check a leaf against the cacerts files.
        var leafPath = cacerts.WriteScratch("leaf.pem", issued.LeafPem);
        var (code, output) = OpenSsl.Run("verify", "-x509_strict", "-CAfile", cacerts.RootCert, "-untrusted", cacerts.CertChain, leafPath);
        Assert.True(code == 0, "openssl verify failed: " + output);
        Assert.Contains(leafPath + ": OK", output, StringComparison.Ordinal);

        // The response chain itself, without cert-chain.pem, is enough for a peer that holds only the root.
        var sentChain = cacerts.WriteScratch("sent-chain.pem", string.Concat(issued.ChainPem.Skip(1)));
        (code, output) = OpenSsl.Run("verify", "-CAfile", cacerts.RootCert, "-untrusted", sentChain, leafPath);
        Assert.True(code == 0, "openssl verify with the issued chain failed: " + output);

        // Istio's order: leaf, intermediate, root last. The trust bundle is root-cert.pem, not the signer.
        using var root = X509Certificate2.CreateFromPem(File.ReadAllText(cacerts.RootCert));
        using var intermediate = X509Certificate2.CreateFromPem(File.ReadAllText(cacerts.CaCert));
        Assert.Equal(3, issued.ChainPem.Count);
        Assert.Equal(issued.LeafPem, issued.ChainPem[0]);
        Assert.Equal(intermediate.Thumbprint, X509Certificate2.CreateFromPem(issued.ChainPem[1]).Thumbprint);
        Assert.Equal(root.Thumbprint, X509Certificate2.CreateFromPem(issued.ChainPem[2]).Thumbprint);
        Assert.Equal(File.ReadAllText(cacerts.RootCert), ca.RootCertificatePem);
        using var leaf = X509Certificate2.CreateFromPem(issued.LeafPem);
        Assert.Equal(intermediate.SubjectName.Name, leaf.IssuerName.Name);
        Assert.True(leaf.NotAfter <= intermediate.NotAfter);

        // What a proxy does with the response: trust root-cert.pem, take the rest of the chain as intermediates.
        var trust = signer.CreateTrustBundle();
        var presented = new X509Certificate2Collection();
        foreach (var pem in issued.ChainPem.Skip(1))
        {
            presented.ImportFromPem(pem);
        }
        Assert.True(trust.ValidateChain(leaf, presented, out var identity, out var error), error);
        Assert.Equal(Id, identity);
        Assert.False(trust.ValidateChain(leaf, intermediates: null, out _), "without the intermediate the leaf must not verify against the root alone");
    }

    [Fact]
    public void A_cert_chain_that_stops_below_the_root_still_gives_leaves_ending_at_the_root()
    {
        using var cacerts = new PlugInCaFolder();
        File.Copy(cacerts.CaCert, cacerts.CertChain, overwrite: true);
        using var signer = PlugInCa.Load(cacerts.Folder, null, "cluster.local");
        using var csr = WorkloadCsr.Create(Id);

        var issued = new CertificateAuthority(signer).IssueWorkloadCertificate(csr.CsrPem, Id, TimeSpan.FromHours(1));

        using var root = X509Certificate2.CreateFromPem(File.ReadAllText(cacerts.RootCert));
        Assert.Equal(3, issued.ChainPem.Count);
        Assert.Equal(root.Thumbprint, X509Certificate2.CreateFromPem(issued.ChainPem[^1]).Thumbprint);
    }

    [Fact]
    public void A_legacy_openssl_encrypted_pkcs1_key_is_read_with_the_password_file()
    {
        using var cacerts = new PlugInCaFolder("rsa:2048", CaKeyFormat.Pkcs1);
        var password = cacerts.WriteScratch("legacy.password", "s3cret\n");
        var encrypted = cacerts.WriteScratch("legacy-key.pem", "");
        var (code, output) = OpenSsl.Run("rsa", "-in", cacerts.CaKey, "-aes256", "-traditional", "-passout", "file:" + password, "-out", encrypted);
        Assert.True(code == 0, output);
        File.Copy(encrypted, cacerts.CaKey, overwrite: true);
        Assert.Contains("Proc-Type: 4,ENCRYPTED", File.ReadAllText(cacerts.CaKey), StringComparison.Ordinal);

        AssertRefused(cacerts, cacerts.CaKey, "--ca-key-password-file", passwordFile: null);
        using var signer = PlugInCa.Load(cacerts.Folder, password, "cluster.local");
        using var csr = WorkloadCsr.Create(Id);
        var issued = new CertificateAuthority(signer).IssueWorkloadCertificate(csr.CsrPem, Id, TimeSpan.FromHours(1));
        Assert.Equal(3, issued.ChainPem.Count);
    }

    [Theory]
    [InlineData("ca-cert.pem")]
    [InlineData("ca-key.pem")]
    [InlineData("root-cert.pem")]
    [InlineData("cert-chain.pem")]
    public void A_missing_file_is_refused_naming_it(string name)
    {
        using var cacerts = new PlugInCaFolder();
        var path = Path.Combine(cacerts.Folder, name);
        File.Delete(path);

        AssertRefused(cacerts, path, "is missing");
    }

    [Fact]
    public void A_key_that_does_not_match_ca_cert_is_refused_naming_the_key()
    {
        using var cacerts = new PlugInCaFolder("ec:P-384", CaKeyFormat.Sec1);
        cacerts.ReplaceKeyWithAnother("ec:P-384", CaKeyFormat.Sec1);

        var message = AssertRefused(cacerts, cacerts.CaKey, "does not match");
        Assert.Contains(cacerts.CaCert, message, StringComparison.Ordinal);
    }

    [Fact]
    public void An_rsa_key_that_does_not_match_ca_cert_is_refused_too()
    {
        using var cacerts = new PlugInCaFolder("rsa:2048", CaKeyFormat.Pkcs1);
        cacerts.ReplaceKeyWithAnother("rsa:2048", CaKeyFormat.Pkcs8);

        AssertRefused(cacerts, cacerts.CaKey, "does not match");
    }

    [Fact]
    public void An_expired_intermediate_is_refused_naming_ca_cert()
    {
        using var cacerts = new PlugInCaFolder(intermediateDays: -1);

        AssertRefused(cacerts, cacerts.CaCert, "expired at");
    }

    [Fact]
    public void An_intermediate_without_the_ca_flag_is_refused_naming_ca_cert()
    {
        using var cacerts = new PlugInCaFolder(intermediateIsCa: false);

        AssertRefused(cacerts, cacerts.CaCert, "is not a CA certificate");
    }

    [Fact]
    public void An_encrypted_key_without_its_password_is_refused_naming_the_key()
    {
        using var cacerts = new PlugInCaFolder("ec:P-256", CaKeyFormat.EncryptedPkcs8);

        AssertRefused(cacerts, cacerts.CaKey, "--ca-key-password-file", passwordFile: null);
        var wrong = cacerts.WriteScratch("wrong.password", "not it\n");
        AssertRefused(cacerts, cacerts.CaKey, "password is wrong", passwordFile: wrong);
    }

    [Fact]
    public void A_chain_to_another_root_is_refused_naming_both_files()
    {
        using var cacerts = new PlugInCaFolder();
        using var other = new PlugInCaFolder();
        File.Copy(other.RootCert, cacerts.RootCert, overwrite: true);

        var message = AssertRefused(cacerts, cacerts.CertChain, "does not lead to");
        Assert.Contains(cacerts.RootCert, message, StringComparison.Ordinal);
    }

    [Fact]
    public void The_trust_bundle_and_issued_chain_of_the_default_root_are_unchanged()
    {
        using var dir = new TempDir();
        using var root = CaStore.LoadOrCreate(dir.Path);
        var ca = new CertificateAuthority(root);
        using var csr = WorkloadCsr.Create(Id);

        var issued = ca.IssueWorkloadCertificate(csr.CsrPem, Id, TimeSpan.FromHours(1));

        Assert.Equal(File.ReadAllText(Path.Combine(dir.Path, CaStore.RootCertFile)), ca.RootCertificatePem);
        Assert.Equal([issued.LeafPem, ca.RootCertificatePem], issued.ChainPem);
    }

    private static string AssertRefused(PlugInCaFolder cacerts, string namedFile, string problem, string? passwordFile = "")
    {
        var ex = Assert.Throws<CaStateException>(() => PlugInCa.Load(cacerts.Folder, passwordFile == "" ? cacerts.PasswordFile : passwordFile, "cluster.local").Dispose());
        Assert.Contains("'" + namedFile + "'", ex.Message, StringComparison.Ordinal);
        Assert.True(ex.Message.Contains(problem, StringComparison.Ordinal), ex.Message);
        Assert.DoesNotContain('\n', ex.Message);
        return ex.Message;
    }
}

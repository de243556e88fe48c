using System.Security.Cryptography.X509Certificates;
using Ambient.Core.Identity;
using Ambient.Istiod.Ca;
using Ambient.TestCommon;

namespace Ambient.Istiod.Tests.Ca;

// Unix file modes are part of what is tested; the mesh runs on Linux.
[System.Runtime.Versioning.UnsupportedOSPlatform("windows")]
public class CaStoreTests
{
    private static readonly SpiffeId Id = SpiffeId.Parse("spiffe://cluster.local/ns/demo/sa/web");

    [Fact]
    public void FirstStart_CreatesP256RootProfile_WithOwnerOnlyFiles()
    {
        using var dir = new TempDir();
        var state = Path.Combine(dir.Path, "state");

        using var root = CaStore.LoadOrCreate(state);

        var certPath = Path.Combine(state, CaStore.RootCertFile);
        var keyPath = Path.Combine(state, CaStore.RootKeyFile);
        Assert.Equal(UnixFileMode.UserRead | UnixFileMode.UserWrite, File.GetUnixFileMode(keyPath));
        Assert.Equal(UnixFileMode.UserRead | UnixFileMode.UserWrite, File.GetUnixFileMode(certPath));
        Assert.Empty(Directory.GetFiles(state, "*.tmp"));
        Assert.Contains("PRIVATE KEY", File.ReadAllText(keyPath), StringComparison.Ordinal);

        var cert = root.Certificate;
        Assert.Equal(cert.SubjectName.RawData, cert.IssuerName.RawData);
        Assert.Contains("O=cluster.local", cert.Subject, StringComparison.Ordinal);
        var bc = Assert.Single(cert.Extensions.OfType<X509BasicConstraintsExtension>());
        Assert.True(bc.CertificateAuthority);
        Assert.True(bc.Critical);
        var ku = Assert.Single(cert.Extensions.OfType<X509KeyUsageExtension>());
        Assert.True(ku.Critical);
        Assert.Equal(X509KeyUsageFlags.KeyCertSign | X509KeyUsageFlags.CrlSign, ku.KeyUsages);
        using var pub = cert.GetECDsaPublicKey();
        Assert.Equal(256, pub!.KeySize);
        var life = cert.NotAfter - DateTime.Now;
        Assert.InRange(life.TotalDays, 3649, 3651);

        var (code, output) = OpenSsl.Run("verify", "-x509_strict", "-CAfile", certPath, certPath);
        Assert.True(code == 0, "openssl does not accept the root as a CA: " + output);
    }

    [Fact]
    public void Restart_ReusesRoot_AndEarlierLeavesStillVerify()
    {
        using var dir = new TempDir();
        string leafPem;
        string firstRootPem;
        using (var first = CaStore.LoadOrCreate(dir.Path))
        {
            using var csr = WorkloadCsr.Create(Id);
            leafPem = new CertificateAuthority(first).IssueWorkloadCertificate(csr.CsrPem, Id, TimeSpan.Zero).LeafPem;
            firstRootPem = first.CertificatePem;
        }

        // "Restart": a new store and CA on the same folder.
        using var second = CaStore.LoadOrCreate(dir.Path);
        var ca = new CertificateAuthority(second);
        using var leaf = X509Certificate2.CreateFromPem(leafPem);

        Assert.Equal(firstRootPem, second.CertificatePem);
        Assert.True(second.CreateTrustBundle().ValidateChain(leaf, null, out var error), error);
        using var csr2 = WorkloadCsr.Create(Id);
        using var newLeaf = X509Certificate2.CreateFromPem(ca.IssueWorkloadCertificate(csr2.CsrPem, Id, TimeSpan.Zero).LeafPem);
        Assert.True(TrustBundle.FromPem(firstRootPem).ValidateChain(newLeaf, null, out error), error);
    }

    [Fact]
    public void CorruptCertificate_IsAnErrorNamingTheFile_AndNothingIsRegenerated()
    {
        using var dir = new TempDir();
        CaStore.LoadOrCreate(dir.Path).Dispose();
        var certPath = Path.Combine(dir.Path, CaStore.RootCertFile);
        File.WriteAllText(certPath, "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n");

        var ex = Assert.Throws<CaStateException>(() => CaStore.LoadOrCreate(dir.Path));

        Assert.Contains(certPath, ex.Message, StringComparison.Ordinal);
        Assert.Contains("not a valid PEM certificate", ex.Message, StringComparison.Ordinal);
        Assert.Contains("AAAA", File.ReadAllText(certPath), StringComparison.Ordinal);
    }

    [Fact]
    public void CorruptKey_IsAnErrorNamingTheFile()
    {
        using var dir = new TempDir();
        CaStore.LoadOrCreate(dir.Path).Dispose();
        var keyPath = Path.Combine(dir.Path, CaStore.RootKeyFile);
        File.WriteAllText(keyPath, "garbage");

        var ex = Assert.Throws<CaStateException>(() => CaStore.LoadOrCreate(dir.Path));

        Assert.Contains(keyPath, ex.Message, StringComparison.Ordinal);
        Assert.Contains("not a valid PEM private key", ex.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void KeyFromAnotherRoot_IsAnError()
    {
        using var a = new TempDir();
        using var b = new TempDir();
        CaStore.LoadOrCreate(a.Path).Dispose();
        CaStore.LoadOrCreate(b.Path).Dispose();
        File.Copy(Path.Combine(b.Path, CaStore.RootKeyFile), Path.Combine(a.Path, CaStore.RootKeyFile), overwrite: true);

        var ex = Assert.Throws<CaStateException>(() => CaStore.LoadOrCreate(a.Path));

        Assert.Contains("does not belong to the certificate", ex.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void MissingHalf_IsAnError_NotARegeneration()
    {
        using var dir = new TempDir();
        CaStore.LoadOrCreate(dir.Path).Dispose();
        File.Delete(Path.Combine(dir.Path, CaStore.RootCertFile));

        var ex = Assert.Throws<CaStateException>(() => CaStore.LoadOrCreate(dir.Path));

        Assert.Contains(CaStore.RootCertFile + "' is missing", ex.Message, StringComparison.Ordinal);
        Assert.False(File.Exists(Path.Combine(dir.Path, CaStore.RootCertFile)));
    }

    [Fact]
    public void OperatorSuppliedRsaRoot_IsLoaded_AndSignsP256Leaves()
    {
        using var dir = new TempDir();
        using (var rsa = System.Security.Cryptography.RSA.Create(2048))
        {
            var request = new CertificateRequest("O=cluster.local, CN=Istio-style RSA root", rsa,
                System.Security.Cryptography.HashAlgorithmName.SHA256, System.Security.Cryptography.RSASignaturePadding.Pkcs1);
            request.CertificateExtensions.Add(new X509BasicConstraintsExtension(true, false, 0, true));
            request.CertificateExtensions.Add(new X509KeyUsageExtension(X509KeyUsageFlags.KeyCertSign | X509KeyUsageFlags.CrlSign, true));
            request.CertificateExtensions.Add(new X509SubjectKeyIdentifierExtension(request.PublicKey, false));
            using var rootCert = request.CreateSelfSigned(DateTimeOffset.UtcNow.AddDays(-1), DateTimeOffset.UtcNow.AddYears(10));
            dir.Write(CaStore.RootCertFile, rootCert.ExportCertificatePem());
            // An operator's key must be private to them, as istiod-lite's own is (StrictModes).
            File.SetUnixFileMode(dir.Write(CaStore.RootKeyFile, rsa.ExportPkcs8PrivateKeyPem()), UnixFileMode.UserRead | UnixFileMode.UserWrite);
        }

        using var root = CaStore.LoadOrCreate(dir.Path);
        using var csr = WorkloadCsr.Create(Id);
        var issued = new CertificateAuthority(root).IssueWorkloadCertificate(csr.CsrPem, Id, TimeSpan.Zero);

        var leafPath = dir.Write("leaf.pem", issued.LeafPem);
        var (code, output) = OpenSsl.Run("verify", "-x509_strict", "-CAfile", Path.Combine(dir.Path, CaStore.RootCertFile), leafPath);
        Assert.True(code == 0, "openssl verify failed: " + output);
    }

    [Fact]
    public void ExpiredRoot_IsAnError()
    {
        using var dir = new TempDir();
        var past = new ManualTime(DateTimeOffset.UtcNow.AddYears(-11));
        CaStore.LoadOrCreate(dir.Path, time: past).Dispose();

        var ex = Assert.Throws<CaStateException>(() => CaStore.LoadOrCreate(dir.Path));

        Assert.Contains("expired", ex.Message, StringComparison.Ordinal);
    }
}

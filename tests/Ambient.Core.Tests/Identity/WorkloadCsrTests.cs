using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;
using Ambient.Core.Identity;
using Ambient.TestCommon;

namespace Ambient.Core.Tests.Identity;

public class WorkloadCsrTests
{
    [Fact]
    public void Create_GivesSignedP256Csr_WithCriticalUriSan()
    {
        var id = SpiffeId.Parse("spiffe://cluster.local/ns/demo/sa/web");
        using var csr = WorkloadCsr.Create(id);

        Assert.StartsWith("-----BEGIN CERTIFICATE REQUEST-----", csr.CsrPem, StringComparison.Ordinal);
        Assert.Equal(256, csr.PrivateKey.KeySize);

        // Loading with default options verifies the signature; the unsafe flag lets us see the requested SAN.
        var loaded = CertificateRequest.LoadSigningRequestPem(csr.CsrPem, HashAlgorithmName.SHA256,
            CertificateRequestLoadOptions.UnsafeLoadCertificateExtensions);
        Assert.Equal(new byte[] { 0x30, 0x00 }, loaded.SubjectName.RawData);
        var san = Assert.Single(loaded.CertificateExtensions, e => e.Oid!.Value == CertificateSpiffe.SubjectAltNameOid);
        Assert.True(san.Critical);
        var uris = new List<string>();
        CertificateSpiffe.ReadUriSans(san.RawData, uris);
        Assert.Equal([id.ToString()], uris);
    }

    [Fact]
    public void CombineWithLeaf_RejectsCertificateForAnotherKey()
    {
        var id = SpiffeId.Parse("spiffe://cluster.local/ns/demo/sa/web");
        using var csr = WorkloadCsr.Create(id);
        using var root = TestCertificates.CreateRoot();
        using var otherLeaf = TestCertificates.IssueLeaf(root, [id.ToString()]);

        Assert.Throws<CryptographicException>(() => csr.CombineWithLeaf(otherLeaf.ExportCertificatePem()));
    }
}

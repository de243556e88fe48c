using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;
using Ambient.Core.Identity;
using Ambient.TestCommon;

namespace Ambient.Core.Tests.Identity;

public class CertificateSpiffeTests
{
    private static readonly SpiffeId Id = SpiffeId.Parse("spiffe://cluster.local/ns/demo/sa/web");

    [Fact]
    public void GetUriSans_ReadsUris_AndSkipsOtherNames()
    {
        using var key = ECDsa.Create(ECCurve.NamedCurves.nistP256);
        var request = new CertificateRequest("CN=x", key, HashAlgorithmName.SHA256);
        var san = new SubjectAlternativeNameBuilder();
        san.AddDnsName("web.demo.svc");
        san.AddUri(new Uri("spiffe://cluster.local/ns/demo/sa/web"));
        san.AddIpAddress(System.Net.IPAddress.Loopback);
        san.AddEmailAddress("a@example.com");
        san.AddUri(new Uri("https://example.com/x"));
        request.CertificateExtensions.Add(san.Build());
        using var cert = request.CreateSelfSigned(DateTimeOffset.UtcNow.AddMinutes(-1), DateTimeOffset.UtcNow.AddHours(1));

        var uris = CertificateSpiffe.GetUriSans(cert);

        Assert.Equal(["spiffe://cluster.local/ns/demo/sa/web", "https://example.com/x"], uris);
        Assert.False(CertificateSpiffe.TryGetSpiffeId(cert, out _, out var error));
        Assert.Contains("2 URI subject alternative names", error, StringComparison.Ordinal);
    }

    [Fact]
    public void TryGetSpiffeId_ExactlyOneUri_Succeeds()
    {
        using var root = TestCertificates.CreateRoot();
        using var leaf = TestCertificates.IssueLeaf(root, [Id.ToString()]);

        Assert.True(CertificateSpiffe.TryGetSpiffeId(leaf, out var id));
        Assert.Equal(Id, id);
    }

    [Fact]
    public void TryGetSpiffeId_NoUri_FailsWithReason()
    {
        using var root = TestCertificates.CreateRoot();
        using var leaf = TestCertificates.IssueLeaf(root, []);

        Assert.Empty(CertificateSpiffe.GetUriSans(leaf));
        Assert.False(CertificateSpiffe.TryGetSpiffeId(leaf, out var id, out var error));
        Assert.True(id.IsEmpty);
        Assert.Contains("no URI subject alternative name", error, StringComparison.Ordinal);
    }

    [Fact]
    public void TryGetSpiffeId_NonSpiffeUri_Fails()
    {
        using var root = TestCertificates.CreateRoot();
        using var leaf = TestCertificates.IssueLeaf(root, ["https://cluster.local/ns/a/sa/b"]);

        Assert.False(CertificateSpiffe.TryGetSpiffeId(leaf, out _, out var error));
        Assert.Contains("does not start with 'spiffe://'", error, StringComparison.Ordinal);
    }

    [Fact]
    public void CreateUriSanExtension_IsCritical_AndMatchesBclEncoding()
    {
        var ours = CertificateSpiffe.CreateUriSanExtension(Id);
        var san = new SubjectAlternativeNameBuilder();
        san.AddUri(new Uri(Id.ToString()));
        var bcl = san.Build(critical: true);

        Assert.True(ours.Critical);
        Assert.Equal(CertificateSpiffe.SubjectAltNameOid, ours.Oid!.Value);
        Assert.Equal(bcl.RawData, ours.RawData);
        var read = new List<string>();
        CertificateSpiffe.ReadUriSans(ours.RawData, read);
        Assert.Equal([Id.ToString()], read);
    }

    [Fact]
    public void ReadUriSans_MalformedDer_ThrowsCryptographicException()
    {
        var ex = Assert.Throws<CryptographicException>(() => CertificateSpiffe.ReadUriSans(new byte[] { 0x30, 0x05, 0x86, 0x09, 0x41 }, []));
        Assert.Contains("not valid DER", ex.Message, StringComparison.Ordinal);
    }
}

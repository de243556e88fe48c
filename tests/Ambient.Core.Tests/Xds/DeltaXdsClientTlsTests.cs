using System.Net;
using System.Net.Security;
using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;
using Ambient.Core.Xds;

namespace Ambient.Core.Tests.Xds;

/// <summary>istiod's serving certificate check: chain to the mesh root only, and a SAN naming the host or istiod.</summary>
public sealed class DeltaXdsClientTlsTests
{
    private static (X509Certificate2 Root, X509Certificate2 Leaf) Pki(Action<SubjectAlternativeNameBuilder> names)
    {
        using var rootKey = ECDsa.Create(ECCurve.NamedCurves.nistP256);
        var rootRequest = new CertificateRequest("CN=mesh root", rootKey, HashAlgorithmName.SHA256);
        rootRequest.CertificateExtensions.Add(new X509BasicConstraintsExtension(true, false, 0, true));
        rootRequest.CertificateExtensions.Add(new X509KeyUsageExtension(X509KeyUsageFlags.KeyCertSign, true));
        var root = rootRequest.CreateSelfSigned(DateTimeOffset.UtcNow.AddDays(-1), DateTimeOffset.UtcNow.AddDays(10));
        using var leafKey = ECDsa.Create(ECCurve.NamedCurves.nistP256);
        var leafRequest = new CertificateRequest("", leafKey, HashAlgorithmName.SHA256);
        var san = new SubjectAlternativeNameBuilder();
        names(san);
        leafRequest.CertificateExtensions.Add(san.Build(critical: true));
        var leaf = leafRequest.Create(root, DateTimeOffset.UtcNow.AddHours(-1), DateTimeOffset.UtcNow.AddDays(1), [1, 2, 3, 4]);
        return (root, leaf);
    }

    [Theory]
    [InlineData("127.0.0.1", true)]
    [InlineData("localhost", true)]
    [InlineData("istiod.example", true)] // accepted through the istiod service name
    public void Chained_certificate_naming_the_host_or_istiod_is_accepted(string host, bool ok)
    {
        var (root, leaf) = Pki(san =>
        {
            san.AddDnsName("istiod.istio-system.svc");
            san.AddDnsName("localhost");
            san.AddIpAddress(IPAddress.Loopback);
        });
        using (root)
        using (leaf)
        {
            var accepted = IstiodChannel.ValidateServerCertificate(leaf, null, SslPolicyErrors.RemoteCertificateChainErrors,
                [root], host, IstiodChannel.DefaultServerName, out var error);
            Assert.True(accepted == ok, error);
        }
    }

    [Fact]
    public void Wrong_name_wrong_root_and_no_certificate_are_refused_with_reasons()
    {
        var (root, leaf) = Pki(san => san.AddDnsName("someone-else.example"));
        var (otherRoot, _) = Pki(san => san.AddDnsName("x"));
        using (root)
        using (leaf)
        using (otherRoot)
        {
            Assert.False(IstiodChannel.ValidateServerCertificate(leaf, null, SslPolicyErrors.None, [root], "127.0.0.1", IstiodChannel.DefaultServerName, out var nameError));
            Assert.Contains("names neither '127.0.0.1'", nameError, StringComparison.Ordinal);

            Assert.False(IstiodChannel.ValidateServerCertificate(leaf, null, SslPolicyErrors.None, [otherRoot], "someone-else.example", null, out var chainError));
            Assert.Contains("does not chain to the mesh root", chainError, StringComparison.Ordinal);

            Assert.False(IstiodChannel.ValidateServerCertificate(null, null, SslPolicyErrors.RemoteCertificateNotAvailable, [root], "h", null, out var none));
            Assert.Contains("no certificate", none, StringComparison.Ordinal);

            // The host dialled is accepted by itself, without the istiod name.
            Assert.True(IstiodChannel.ValidateServerCertificate(leaf, null, SslPolicyErrors.None, [root], "someone-else.example", null, out var e), e);
        }
    }
}

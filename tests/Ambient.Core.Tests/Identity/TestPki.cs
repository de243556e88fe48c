using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;
using Ambient.Core.Identity;

namespace Ambient.Core.Tests.Identity;

/// <summary>A throw-away root for exercising verification code in Core (the real CA lives in istiod).</summary>
internal sealed class TestPki : IDisposable
{
    public TestPki(string commonName = "Test Root")
    {
        using var key = ECDsa.Create(ECCurve.NamedCurves.nistP256);
        var request = new CertificateRequest("CN=" + commonName, key, HashAlgorithmName.SHA256);
        request.CertificateExtensions.Add(new X509BasicConstraintsExtension(true, false, 0, true));
        request.CertificateExtensions.Add(new X509KeyUsageExtension(X509KeyUsageFlags.KeyCertSign | X509KeyUsageFlags.CrlSign, true));
        request.CertificateExtensions.Add(new X509SubjectKeyIdentifierExtension(request.PublicKey, false));
        var now = DateTimeOffset.UtcNow;
        Root = request.CreateSelfSigned(now.AddDays(-30), now.AddDays(30));
    }

    public X509Certificate2 Root { get; }

    /// <summary>A leaf for <paramref name="sans"/> (URI SAN strings), with its key, valid in the given window.</summary>
    public X509Certificate2 IssueLeaf(IReadOnlyList<string> uris, DateTimeOffset? notBefore = null, DateTimeOffset? notAfter = null, bool ca = false)
    {
        using var key = ECDsa.Create(ECCurve.NamedCurves.nistP256);
        var request = new CertificateRequest(new X500DistinguishedName([0x30, 0x00]), key, HashAlgorithmName.SHA256);
        if (uris.Count > 0)
        {
            var san = new SubjectAlternativeNameBuilder();
            foreach (var uri in uris)
            {
                san.AddUri(new Uri(uri));
            }
            request.CertificateExtensions.Add(san.Build(critical: true));
        }
        request.CertificateExtensions.Add(new X509BasicConstraintsExtension(ca, false, 0, true));
        var now = DateTimeOffset.UtcNow;
        using var cert = request.Create(Root, notBefore ?? now.AddMinutes(-2), notAfter ?? now.AddHours(1), RandomNumberGenerator.GetBytes(8));
        return cert.CopyWithPrivateKey(key);
    }

    public X509Certificate2 IssueLeaf(SpiffeId id) => IssueLeaf([id.ToString()]);

    public TrustBundle Bundle(string trustDomain = SpiffeId.DefaultTrustDomain)
        => new(trustDomain, new X509Certificate2Collection(X509CertificateLoader.LoadCertificate(Root.RawData)));

    public void Dispose() => Root.Dispose();
}

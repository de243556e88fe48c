using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;
using Ambient.Core.Identity;

namespace Ambient.Istiod.Ca;

/// <summary>The mesh root: its certificate with the signing key, and its PEM as served in every chain.</summary>
internal sealed class CaRoot : IDisposable
{
    public CaRoot(string trustDomain, X509Certificate2 certificateWithKey)
    {
        ArgumentNullException.ThrowIfNull(certificateWithKey);
        if (!certificateWithKey.HasPrivateKey)
        {
            throw new ArgumentException("the root certificate has no private key", nameof(certificateWithKey));
        }
        TrustDomain = trustDomain;
        Certificate = certificateWithKey;
        CertificatePem = certificateWithKey.ExportCertificatePem();
        IsRsa = certificateWithKey.GetRSAPublicKey() is { } rsa && Dispose(rsa);
        AuthorityKeyIdentifier = CreateAuthorityKeyIdentifier(certificateWithKey);
    }

    public string TrustDomain { get; }

    public X509Certificate2 Certificate { get; }

    public string CertificatePem { get; }

    /// <summary>RSA roots (e.g. an operator-supplied Istio cacerts root) sign with PKCS#1 v1.5 padding.</summary>
    public bool IsRsa { get; }

    /// <summary>Added to every issued certificate; built once since it only depends on the root.</summary>
    public X509AuthorityKeyIdentifierExtension AuthorityKeyIdentifier { get; }

    public TrustBundle CreateTrustBundle(TimeProvider? time = null)
        => new(TrustDomain, new X509Certificate2Collection(X509CertificateLoader.LoadCertificate(Certificate.RawData)), time);

    public void Dispose() => Certificate.Dispose();

    private static bool Dispose(IDisposable d)
    {
        d.Dispose();
        return true;
    }

    private static X509AuthorityKeyIdentifierExtension CreateAuthorityKeyIdentifier(X509Certificate2 root)
    {
        foreach (var extension in root.Extensions)
        {
            if (extension is X509SubjectKeyIdentifierExtension ski)
            {
                return X509AuthorityKeyIdentifierExtension.CreateFromSubjectKeyIdentifier(ski);
            }
        }
        // A root without a subject key identifier (allowed for self-signed roots): derive the usual SHA-1 one.
        var derived = new X509SubjectKeyIdentifierExtension(root.PublicKey, X509SubjectKeyIdentifierHashAlgorithm.Sha1, critical: false);
        return X509AuthorityKeyIdentifierExtension.CreateFromSubjectKeyIdentifier(derived);
    }
}

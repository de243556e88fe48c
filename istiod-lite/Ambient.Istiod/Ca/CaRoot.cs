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
        // RSA roots (e.g. an operator-supplied Istio cacerts root) sign with PKCS#1 v1.5 padding, as Istio's do.
        // Hold one key object for the life of the root: the Get*PrivateKey calls create a new one each time.
        if (certificateWithKey.GetRSAPrivateKey() is { } rsa)
        {
            _key = rsa;
            SignatureGenerator = X509SignatureGenerator.CreateForRSA(rsa, RSASignaturePadding.Pkcs1);
        }
        else if (certificateWithKey.GetECDsaPrivateKey() is { } ecdsa)
        {
            _key = ecdsa;
            SignatureGenerator = X509SignatureGenerator.CreateForECDsa(ecdsa);
        }
        else
        {
            throw new ArgumentException("the root key must be RSA or ECDSA", nameof(certificateWithKey));
        }
        AuthorityKeyIdentifier = CreateAuthorityKeyIdentifier(certificateWithKey);
    }

    private readonly AsymmetricAlgorithm _key;

    public string TrustDomain { get; }

    public X509Certificate2 Certificate { get; }

    public string CertificatePem { get; }

    /// <summary>
    /// Signs with the root key whatever the subject key type: the BCL's issuer-certificate overload refuses to
    /// sign an RSA CSR key with an ECDSA root.
    /// </summary>
    public X509SignatureGenerator SignatureGenerator { get; }

    /// <summary>Added to every issued certificate; built once since it only depends on the root.</summary>
    public X509AuthorityKeyIdentifierExtension AuthorityKeyIdentifier { get; }

    public TrustBundle CreateTrustBundle(TimeProvider? time = null)
        => new(TrustDomain, new X509Certificate2Collection(X509CertificateLoader.LoadCertificate(Certificate.RawData)), time);

    public void Dispose()
    {
        _key.Dispose();
        Certificate.Dispose();
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

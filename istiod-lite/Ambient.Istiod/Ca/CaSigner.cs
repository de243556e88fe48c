using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;
using Ambient.Core.Identity;

namespace Ambient.Istiod.Ca;

/// <summary>
/// The certificate that signs workload certificates, with its key, and what every issued chain carries above it.
/// By default it is the self-signed mesh root (<see cref="CaStore"/>); with a plug-in CA (<see cref="PlugInCa"/>)
/// it is an operator's intermediate, and the chain runs through its <c>cert-chain.pem</c> up to the root.
/// </summary>
internal sealed class CaSigner : IDisposable
{
    /// <summary>A self-signed root that signs for itself: the chain above a leaf is the root alone.</summary>
    public CaSigner(string trustDomain, X509Certificate2 certificateWithKey)
        : this(trustDomain, certificateWithKey, issuerChainPem: null, rootCertificatePem: null)
    {
    }

    /// <param name="issuerChainPem">What follows the leaf in a response: the signer first, up to the root (last).</param>
    /// <param name="rootCertificatePem">The trust bundle proxies get (the root certificates, PEM).</param>
    public CaSigner(string trustDomain, X509Certificate2 certificateWithKey, IReadOnlyList<string>? issuerChainPem, string? rootCertificatePem)
    {
        ArgumentNullException.ThrowIfNull(certificateWithKey);
        if (!certificateWithKey.HasPrivateKey)
        {
            throw new ArgumentException("the signing certificate has no private key", nameof(certificateWithKey));
        }
        TrustDomain = trustDomain;
        Certificate = certificateWithKey;
        CertificatePem = certificateWithKey.ExportCertificatePem();
        IssuerChainPem = issuerChainPem ?? [CertificatePem];
        RootCertificatePem = rootCertificatePem ?? CertificatePem;
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

    /// <summary>The signing certificate's own PEM.</summary>
    public string CertificatePem { get; }

    /// <summary>The certificates after the leaf in every issued chain (Istio's order: signer first, root last).</summary>
    public IReadOnlyList<string> IssuerChainPem { get; }

    /// <summary>The mesh root(s), PEM: the trust bundle. The signer itself when it is the self-signed root.</summary>
    public string RootCertificatePem { get; }

    /// <summary>Intermediates a TLS server sends after its leaf so that peers holding only the root can verify it.</summary>
    public X509Certificate2Collection LoadIntermediates()
    {
        var intermediates = new X509Certificate2Collection();
        foreach (var pem in IssuerChainPem)
        {
            var cert = X509Certificate2.CreateFromPem(pem);
            if (cert.SubjectName.RawData.AsSpan().SequenceEqual(cert.IssuerName.RawData))
            {
                cert.Dispose(); // a root: peers have it already
                continue;
            }
            intermediates.Add(cert);
        }
        return intermediates;
    }

    /// <summary>
    /// Signs with the signer's key whatever the subject key type: the BCL's issuer-certificate overload refuses to
    /// sign an RSA CSR key with an ECDSA root.
    /// </summary>
    public X509SignatureGenerator SignatureGenerator { get; }

    /// <summary>Added to every issued certificate; built once since it only depends on the signer.</summary>
    public X509AuthorityKeyIdentifierExtension AuthorityKeyIdentifier { get; }

    public TrustBundle CreateTrustBundle(TimeProvider? time = null)
    {
        var roots = new X509Certificate2Collection();
        roots.ImportFromPem(RootCertificatePem);
        return new(TrustDomain, roots, time);
    }

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

using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;

namespace Ambient.Core.Identity;

/// <summary>
/// A fresh workload key and the PEM certificate signing request sent to the CA for it. The node proxy keeps the
/// key; the CA signs the public key and decides the SAN itself (it ignores what the CSR asks for), but the CSR
/// carries the SPIFFE URI anyway, as Istio's ztunnel does, so a stock Istio CA accepts it too.
/// </summary>
internal sealed class WorkloadCsr : IDisposable
{
    private WorkloadCsr(SpiffeId identity, ECDsa privateKey, string csrPem)
    {
        Identity = identity;
        PrivateKey = privateKey;
        CsrPem = csrPem;
    }

    public SpiffeId Identity { get; }

    /// <summary>ECDSA P-256, owned by this object until <see cref="Dispose"/>.</summary>
    public ECDsa PrivateKey { get; }

    public string CsrPem { get; }

    public static WorkloadCsr Create(SpiffeId identity)
    {
        if (identity.IsEmpty)
        {
            throw new ArgumentException("the SPIFFE ID is empty", nameof(identity));
        }
        var key = ECDsa.Create(ECCurve.NamedCurves.nistP256);
        try
        {
            // Empty subject like Istio's CSRs; the identity lives only in the (critical) URI SAN.
            var request = new CertificateRequest(new X500DistinguishedName([0x30, 0x00]), key, HashAlgorithmName.SHA256);
            request.CertificateExtensions.Add(CertificateSpiffe.CreateUriSanExtension(identity, critical: true));
            return new WorkloadCsr(identity, key, request.CreateSigningRequestPem());
        }
        catch
        {
            key.Dispose();
            throw;
        }
    }

    /// <summary>
    /// Pairs the CA's leaf PEM with our key (for SslStream); throws <see cref="CryptographicException"/> when the
    /// leaf is not for this key.
    /// </summary>
    public X509Certificate2 CombineWithLeaf(string leafPem)
    {
        using var leaf = X509Certificate2.CreateFromPem(leafPem);
        try
        {
            return leaf.CopyWithPrivateKey(PrivateKey);
        }
        catch (ArgumentException ex)
        {
            throw new CryptographicException("the issued certificate does not carry this CSR's public key", ex);
        }
    }

    public void Dispose() => PrivateKey.Dispose();
}

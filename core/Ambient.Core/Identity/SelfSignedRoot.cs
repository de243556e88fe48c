using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;

namespace Ambient.Core.Identity;

/// <summary>
/// The default mesh root: ECDSA P-256, self-signed, CA (critical basicConstraints, keyCertSign|cRLSign), ten years.
/// istiod-lite makes one at first start; `ambientctl local rotate-root` makes the next one the same way.
/// </summary>
internal static class SelfSignedRoot
{
    /// <summary>The root's files in istiod-lite's state folder (and in the rotation drop folder).</summary>
    public const string CertificateFile = "root-cert.pem";
    public const string KeyFile = "root-key.pem";

    /// <summary>
    /// The state folder's drop folder: a new pair put there (both files, key 0600) makes istiod-lite rotate the mesh
    /// to it; when done istiod-lite moves it over the state folder's root and the folder is empty again.
    /// </summary>
    public const string RotationFolder = "rotate-root";

    public static readonly TimeSpan Lifetime = TimeSpan.FromDays(3650);

    // Back-dated so that leaves, back-dated 2 minutes for clock skew, still fall inside the issuer's validity (the
    // BCL refuses to issue otherwise, and strict verifiers reject it).
    private static readonly TimeSpan Backdate = TimeSpan.FromHours(1);

    /// <summary>A new root with its key, and both as PEM (the key as PKCS#8).</summary>
    public static (X509Certificate2 CertificateWithKey, string CertificatePem, string KeyPem) Create(string trustDomain, TimeProvider? time = null)
    {
        _ = new SpiffeId(trustDomain, "ns", "sa"); // validates the trust domain
        using var key = ECDsa.Create(ECCurve.NamedCurves.nistP256);
        var subject = new X500DistinguishedNameBuilder();
        subject.AddOrganizationName(trustDomain);
        subject.AddCommonName("Ambient Root CA");
        var request = new CertificateRequest(subject.Build(), key, HashAlgorithmName.SHA256);
        request.CertificateExtensions.Add(new X509BasicConstraintsExtension(certificateAuthority: true, hasPathLengthConstraint: false, pathLengthConstraint: 0, critical: true));
        request.CertificateExtensions.Add(new X509KeyUsageExtension(X509KeyUsageFlags.KeyCertSign | X509KeyUsageFlags.CrlSign, critical: true));
        request.CertificateExtensions.Add(new X509SubjectKeyIdentifierExtension(request.PublicKey, critical: false));
        var now = (time ?? TimeProvider.System).GetUtcNow();
        using var generated = request.Create(request.SubjectName, X509SignatureGenerator.CreateForECDsa(key), now - Backdate, now + Lifetime,
            NewSerialNumber());
        return (generated.CopyWithPrivateKey(key), generated.ExportCertificatePem(), key.ExportPkcs8PrivateKeyPem());
    }

    /// <summary>A random positive 128-bit serial (RFC 5280 allows up to 20 octets; CAB rules want 64+ random bits).</summary>
    public static byte[] NewSerialNumber()
    {
        var serial = RandomNumberGenerator.GetBytes(16);
        // Top bit clear = positive INTEGER; a non-zero first octet keeps the DER encoding exactly 16 octets.
        serial[0] &= 0x7F;
        if (serial[0] == 0)
        {
            serial[0] = 1;
        }
        return serial;
    }
}

using System.Formats.Asn1;
using System.Net;
using System.Net.Security;
using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;
using Ambient.Core.Identity;

namespace Ambient.TestCommon;

/// <summary>
/// The tests' one PKI: throw-away roots and the certificates they issue (ECDSA P-256, made in memory, never stored
/// unless a test writes them for a non-.NET peer). A root is an <see cref="X509Certificate2"/> with its key; the test
/// owns and disposes what it gets. The product CA lives in istiod-lite; this is scaffolding only.
/// </summary>
public static class TestCertificates
{
    private const string ServerAuth = "1.3.6.1.5.5.7.3.1";
    private const string ClientAuth = "1.3.6.1.5.5.7.3.2";
    private const string SubjectAltName = "2.5.29.17";

    /// <summary>The identity of ns/<paramref name="ns"/> sa/<paramref name="serviceAccount"/> in cluster.local.</summary>
    public static string Spiffe(string ns, string serviceAccount) => $"spiffe://{SpiffeId.DefaultTrustDomain}/ns/{ns}/sa/{serviceAccount}";

    /// <summary>A self-signed server/client certificate valid for <paramref name="commonName"/> and 127.0.0.1.</summary>
    public static X509Certificate2 CreateSelfSigned(string commonName = "localhost")
    {
        using var key = ECDsa.Create(ECCurve.NamedCurves.nistP256);
        var request = new CertificateRequest("CN=" + commonName, key, HashAlgorithmName.SHA256);
        var san = new SubjectAlternativeNameBuilder();
        san.AddDnsName(commonName);
        san.AddIpAddress(IPAddress.Loopback);
        request.CertificateExtensions.Add(san.Build());
        request.CertificateExtensions.Add(new X509BasicConstraintsExtension(false, false, 0, true));
        request.CertificateExtensions.Add(new X509EnhancedKeyUsageExtension([new Oid(ServerAuth), new Oid(ClientAuth)], false));
        var now = DateTimeOffset.UtcNow;
        using var cert = request.CreateSelfSigned(now.AddMinutes(-5), now.AddHours(1));
        // Round-trip through PKCS#12 so the key is usable by SslStream on every platform.
        return X509CertificateLoader.LoadPkcs12(cert.Export(X509ContentType.Pkcs12), password: null);
    }

    /// <summary>
    /// A CA root with its key. By default it is back-dated 30 days and lasts 10 years, so every leaf a test issues (the
    /// BCL refuses one outside its issuer's validity), expired or not yet valid ones included, fits inside it.
    /// </summary>
    public static X509Certificate2 CreateRoot(string commonName = "ambient-test-root", DateTimeOffset? notBefore = null, DateTimeOffset? notAfter = null)
    {
        using var key = ECDsa.Create(ECCurve.NamedCurves.nistP256);
        var request = new CertificateRequest("CN=" + commonName, key, HashAlgorithmName.SHA256);
        request.CertificateExtensions.Add(new X509BasicConstraintsExtension(true, false, 0, true));
        request.CertificateExtensions.Add(new X509KeyUsageExtension(X509KeyUsageFlags.KeyCertSign | X509KeyUsageFlags.CrlSign, true));
        request.CertificateExtensions.Add(new X509SubjectKeyIdentifierExtension(request.PublicKey, false));
        var now = DateTimeOffset.UtcNow;
        return request.CreateSelfSigned(notBefore ?? now.AddDays(-30), notAfter ?? now.AddYears(10));
    }

    /// <summary>
    /// A leaf shaped like an Istio workload certificate: empty subject, one critical SPIFFE URI SAN, digitalSignature +
    /// keyEncipherment, serverAuth + clientAuth. Valid from 2 minutes ago for 24 hours unless told otherwise.
    /// </summary>
    public static X509Certificate2 IssueWorkload(X509Certificate2 issuer, string spiffeId, DateTimeOffset? notBefore = null, DateTimeOffset? notAfter = null)
    {
        using var key = ECDsa.Create(ECCurve.NamedCurves.nistP256);
        var request = new CertificateRequest(new X500DistinguishedName(""), key, HashAlgorithmName.SHA256);
        request.CertificateExtensions.Add(new X509BasicConstraintsExtension(false, false, 0, true));
        request.CertificateExtensions.Add(new X509KeyUsageExtension(X509KeyUsageFlags.DigitalSignature | X509KeyUsageFlags.KeyEncipherment, true));
        request.CertificateExtensions.Add(new X509EnhancedKeyUsageExtension([new Oid(ServerAuth), new Oid(ClientAuth)], false));
        var san = new SubjectAlternativeNameBuilder();
        san.AddUri(new Uri(spiffeId));
        request.CertificateExtensions.Add(san.Build(critical: true));
        AddAuthorityKeyIdentifier(request, issuer);
        var now = DateTimeOffset.UtcNow;
        using var cert = request.Create(issuer, notBefore ?? now.AddMinutes(-2), notAfter ?? now.AddHours(24), NewSerial());
        return cert.CopyWithPrivateKey(key);
    }

    /// <summary>
    /// A bare leaf for verification edge cases: empty subject, the given URI SANs (critical; no SAN extension when
    /// there are none), basic constraints only (<paramref name="ca"/> true makes it claim to be a CA). Valid from 2
    /// minutes ago for an hour unless told otherwise.
    /// </summary>
    public static X509Certificate2 IssueLeaf(X509Certificate2 issuer, IReadOnlyList<string> uris, DateTimeOffset? notBefore = null, DateTimeOffset? notAfter = null, bool ca = false)
    {
        using var key = ECDsa.Create(ECCurve.NamedCurves.nistP256);
        var request = new CertificateRequest(new X500DistinguishedName(""), key, HashAlgorithmName.SHA256);
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
        using var cert = request.Create(issuer, notBefore ?? now.AddMinutes(-2), notAfter ?? now.AddHours(1), NewSerial());
        return cert.CopyWithPrivateKey(key);
    }

    /// <summary>A TLS server certificate (with key) issued by <paramref name="issuer"/> for the DNS names and 127.0.0.1.</summary>
    public static X509Certificate2 IssueServer(X509Certificate2 issuer, params string[] dnsNames) => IssueServer(issuer, dnsNames, [IPAddress.Loopback]);

    /// <summary>A TLS server certificate (with key) naming exactly these DNS names and addresses; valid for a day.</summary>
    public static X509Certificate2 IssueServer(X509Certificate2 issuer, IReadOnlyList<string> dnsNames, IReadOnlyList<IPAddress> addresses)
    {
        using var key = ECDsa.Create(ECCurve.NamedCurves.nistP256);
        var request = new CertificateRequest("CN=" + (dnsNames.Count > 0 ? dnsNames[0] : "localhost"), key, HashAlgorithmName.SHA256);
        var san = new SubjectAlternativeNameBuilder();
        foreach (var name in dnsNames)
        {
            san.AddDnsName(name);
        }
        foreach (var address in addresses)
        {
            san.AddIpAddress(address);
        }
        request.CertificateExtensions.Add(san.Build());
        request.CertificateExtensions.Add(new X509BasicConstraintsExtension(false, false, 0, true));
        request.CertificateExtensions.Add(new X509EnhancedKeyUsageExtension([new Oid(ServerAuth)], false));
        AddAuthorityKeyIdentifier(request, issuer);
        var now = DateTimeOffset.UtcNow;
        using var cert = request.Create(issuer, now.AddMinutes(-5), now.AddDays(1), NewSerial());
        return cert.CopyWithPrivateKey(key);
    }

    /// <summary>A PEM CSR for <paramref name="spiffeId"/> as a ztunnel sends one: subject O=cluster.local, one critical URI SAN.</summary>
    public static string CreateWorkloadCsr(ECDsa key, string spiffeId)
    {
        var request = new CertificateRequest("O=" + SpiffeId.DefaultTrustDomain, key, HashAlgorithmName.SHA256);
        var san = new SubjectAlternativeNameBuilder();
        san.AddUri(new Uri(spiffeId));
        request.CertificateExtensions.Add(san.Build(critical: true));
        return request.CreateSigningRequestPem();
    }

    /// <summary>Writes <paramref name="certificate"/> and its ECDSA key as PEM files (for a non-.NET peer); returns the paths.</summary>
    public static (string Certificate, string Key) WritePem(TempDir dir, string name, X509Certificate2 certificate)
    {
        using var key = certificate.GetECDsaPrivateKey() ?? throw new ArgumentException("the certificate has no ECDSA key", nameof(certificate));
        return (dir.Write(name + ".crt", certificate.ExportCertificatePem()), dir.Write(name + ".key", key.ExportPkcs8PrivateKeyPem()));
    }

    /// <summary>A validation callback that trusts exactly <paramref name="root"/> (custom root trust, no system store).</summary>
    public static RemoteCertificateValidationCallback TrustOnly(X509Certificate2 root) => (_, certificate, _, _) =>
    {
        if (certificate is null)
        {
            return false;
        }

        using var chain = new X509Chain();
        chain.ChainPolicy.TrustMode = X509ChainTrustMode.CustomRootTrust;
        chain.ChainPolicy.CustomTrustStore.Add(root);
        chain.ChainPolicy.RevocationMode = X509RevocationMode.NoCheck;
        using var leaf = new X509Certificate2(certificate);
        return chain.Build(leaf);
    };

    /// <summary>
    /// Chains <paramref name="certificate"/> to <paramref name="root"/> (custom trust) and returns its single SPIFFE URI,
    /// or a failure naming what is wrong.
    /// </summary>
    public static bool TryVerify(X509Certificate2 root, X509Certificate2 certificate, X509Chain? presented, out string? identity, out string? failure)
    {
        identity = null;
        using var chain = new X509Chain();
        chain.ChainPolicy.TrustMode = X509ChainTrustMode.CustomRootTrust;
        chain.ChainPolicy.CustomTrustStore.Add(root);
        chain.ChainPolicy.RevocationMode = X509RevocationMode.NoCheck;
        if (presented is not null)
        {
            foreach (X509ChainElement element in presented.ChainElements)
            {
                chain.ChainPolicy.ExtraStore.Add(element.Certificate);
            }
        }
        if (!chain.Build(certificate))
        {
            var statuses = new List<string>();
            foreach (X509ChainStatus status in chain.ChainStatus)
            {
                statuses.Add(status.Status.ToString());
            }
            failure = $"certificate does not chain to the mesh root ({string.Join(", ", statuses)})";
            return false;
        }
        List<string> uris = UriSans(certificate);
        if (uris.Count != 1 || !uris[0].StartsWith("spiffe://", StringComparison.Ordinal))
        {
            failure = $"certificate must carry exactly one SPIFFE URI SAN, found [{string.Join(", ", uris)}]";
            return false;
        }
        identity = uris[0];
        failure = null;
        return true;
    }

    /// <summary>
    /// The URI SANs of a certificate (GeneralName [6] IA5String), read here rather than with the product's reader so a
    /// test does not check our code with itself; the BCL only enumerates DNS and IP SANs.
    /// </summary>
    public static List<string> UriSans(X509Certificate2 certificate)
    {
        var uris = new List<string>();
        var uriTag = new Asn1Tag(TagClass.ContextSpecific, 6);
        foreach (X509Extension extension in certificate.Extensions)
        {
            if (extension.Oid?.Value != SubjectAltName)
            {
                continue;
            }
            AsnReader names = new AsnReader(extension.RawData, AsnEncodingRules.DER).ReadSequence();
            while (names.HasData)
            {
                if (names.PeekTag().HasSameClassAndValue(uriTag))
                {
                    uris.Add(names.ReadCharacterString(UniversalTagNumber.IA5String, uriTag));
                }
                else
                {
                    names.ReadEncodedValue();
                }
            }
        }
        return uris;
    }

    // Positive and without a leading zero octet, so OpenSSL and .NET print the same hex for it.
    private static byte[] NewSerial()
    {
        var serial = RandomNumberGenerator.GetBytes(12);
        serial[0] = (byte)((serial[0] & 0x7F) | 0x10);
        return serial;
    }

    // Roots made here carry a subject key identifier; one read from elsewhere may not, and then there is nothing to point at.
    private static void AddAuthorityKeyIdentifier(CertificateRequest request, X509Certificate2 issuer)
    {
        foreach (X509Extension extension in issuer.Extensions)
        {
            if (extension is X509SubjectKeyIdentifierExtension)
            {
                request.CertificateExtensions.Add(X509AuthorityKeyIdentifierExtension.CreateFromCertificate(issuer, true, false));
                return;
            }
        }
    }
}

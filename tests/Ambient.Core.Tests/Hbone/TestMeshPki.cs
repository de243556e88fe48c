using System.Formats.Asn1;
using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;
using Ambient.Hbone;
using Ambient.TestCommon;

namespace Ambient.Core.Tests.Hbone;

/// <summary>
/// A throwaway mesh CA for tests: ECDSA P-256 root, leaves shaped like Istio workload certs (empty subject, one critical
/// SPIFFE URI SAN, serverAuth+clientAuth). Product identity code lives elsewhere; this is test scaffolding only.
/// </summary>
internal sealed class TestMeshPki
{
    public const string ServerIdentity = "spiffe://cluster.local/ns/default/sa/server";
    public const string ClientIdentity = "spiffe://cluster.local/ns/default/sa/client";

    private readonly X509Certificate2 _root;

    public TestMeshPki(string name = "ambient-test-root")
    {
        using var key = ECDsa.Create(ECCurve.NamedCurves.nistP256);
        var request = new CertificateRequest("CN=" + name, key, HashAlgorithmName.SHA256);
        request.CertificateExtensions.Add(new X509BasicConstraintsExtension(true, false, 0, true));
        request.CertificateExtensions.Add(new X509KeyUsageExtension(X509KeyUsageFlags.KeyCertSign | X509KeyUsageFlags.CrlSign, true));
        request.CertificateExtensions.Add(new X509SubjectKeyIdentifierExtension(request.PublicKey, false));
        DateTimeOffset now = DateTimeOffset.UtcNow;
        _root = request.CreateSelfSigned(now.AddDays(-1), now.AddYears(10));
    }

    public X509Certificate2 Root => _root;

    public X509Certificate2 Issue(string spiffeId)
    {
        using var key = ECDsa.Create(ECCurve.NamedCurves.nistP256);
        var request = new CertificateRequest(new X500DistinguishedName(""), key, HashAlgorithmName.SHA256);
        request.CertificateExtensions.Add(new X509BasicConstraintsExtension(false, false, 0, true));
        request.CertificateExtensions.Add(new X509KeyUsageExtension(X509KeyUsageFlags.DigitalSignature | X509KeyUsageFlags.KeyEncipherment, true));
        request.CertificateExtensions.Add(new X509EnhancedKeyUsageExtension([new Oid("1.3.6.1.5.5.7.3.1"), new Oid("1.3.6.1.5.5.7.3.2")], false));
        var san = new SubjectAlternativeNameBuilder();
        san.AddUri(new Uri(spiffeId));
        request.CertificateExtensions.Add(san.Build(critical: true));
        request.CertificateExtensions.Add(X509AuthorityKeyIdentifierExtension.CreateFromCertificate(_root, true, false));
        DateTimeOffset now = DateTimeOffset.UtcNow;
        byte[] serial = RandomNumberGenerator.GetBytes(12);
        serial[0] &= 0x7F;
        using X509Certificate2 certificate = request.Create(_root, now.AddMinutes(-2), now.AddHours(24), serial);
        return certificate.CopyWithPrivateKey(key);
    }

    /// <summary>Writes the root, and a cert + key for <paramref name="spiffeId"/>, as PEM files for the python server.</summary>
    public (string Ca, string Cert, string Key) WritePem(TempDir dir, string spiffeId)
    {
        using X509Certificate2 leaf = Issue(spiffeId);
        using ECDsa key = leaf.GetECDsaPrivateKey()!;
        string name = Guid.NewGuid().ToString("N")[..8];
        return (dir.Write(name + "-ca.pem", _root.ExportCertificatePem()),
            dir.Write(name + "-cert.pem", leaf.ExportCertificatePem()),
            dir.Write(name + "-key.pem", key.ExportPkcs8PrivateKeyPem()));
    }

    /// <summary>The URI SANs of a certificate (the BCL only enumerates DNS/IP SANs): GeneralName [6] IA5String.</summary>
    public static List<string> GetUriSans(X509Certificate2 certificate)
    {
        var uris = new List<string>();
        foreach (X509Extension extension in certificate.Extensions)
        {
            if (extension.Oid?.Value != "2.5.29.17")
            {
                continue;
            }
            var reader = new AsnReader(extension.RawData, AsnEncodingRules.DER);
            AsnReader names = reader.ReadSequence();
            var uriTag = new Asn1Tag(TagClass.ContextSpecific, 6);
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

    /// <summary>Chain to this root (custom trust) and return the single SPIFFE URI, or a failure naming what is wrong.</summary>
    public bool TryVerify(X509Certificate2 certificate, X509Chain? presented, out string? identity, out string? failure)
    {
        identity = null;
        using var chain = new X509Chain();
        chain.ChainPolicy.TrustMode = X509ChainTrustMode.CustomRootTrust;
        chain.ChainPolicy.CustomTrustStore.Add(_root);
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
        List<string> uris = GetUriSans(certificate);
        if (uris.Count != 1 || !uris[0].StartsWith("spiffe://", StringComparison.Ordinal))
        {
            failure = $"certificate must carry exactly one SPIFFE URI SAN, found [{string.Join(", ", uris)}]";
            return false;
        }
        identity = uris[0];
        failure = null;
        return true;
    }
}

/// <summary>Test <see cref="IHboneTlsProvider"/>: certs per identity, server check = chain to the root + exact identity.</summary>
internal sealed class TestTlsProvider(TestMeshPki pki) : IHboneTlsProvider
{
    private readonly Dictionary<string, X509Certificate2> _certificates = [];
    private readonly object _lock = new();

    public (X509Certificate2 Certificate, X509Certificate2Collection? Chain) GetClientCertificate(string sourceIdentity)
    {
        lock (_lock)
        {
            if (!_certificates.TryGetValue(sourceIdentity, out X509Certificate2? certificate))
            {
                certificate = pki.Issue(sourceIdentity);
                _certificates.Add(sourceIdentity, certificate);
            }
            return (certificate, null);
        }
    }

    public bool ValidateServer(X509Certificate2 serverCert, X509Chain? chain, string expectedIdentity, out string? failure)
    {
        if (!pki.TryVerify(serverCert, chain, out string? identity, out failure))
        {
            return false;
        }
        if (!string.Equals(identity, expectedIdentity, StringComparison.Ordinal))
        {
            failure = $"server presented identity {identity}";
            return false;
        }
        return true;
    }
}

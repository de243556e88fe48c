using System.Formats.Asn1;
using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;
using Ambient.Core.Identity;
using Ambient.Istiod.Ca;
using Ambient.TestCommon;

namespace Ambient.Istiod.Tests.Ca;

public sealed class CertificateAuthorityTests : IDisposable
{
    private static readonly SpiffeId Id = SpiffeId.Parse("spiffe://cluster.local/ns/demo/sa/web");
    private readonly TempDir _dir = new();
    private readonly CaSigner _root;
    private readonly CertificateAuthority _ca;

    public CertificateAuthorityTests()
    {
        _root = CaStore.LoadOrCreate(_dir.Path);
        _ca = new CertificateAuthority(_root);
    }

    public void Dispose()
    {
        _root.Dispose();
        _dir.Dispose();
    }

    [Fact]
    public void IssuedLeaf_HasExactlyTheIstioWorkloadProfile()
    {
        using var csr = WorkloadCsr.Create(Id);
        var before = DateTimeOffset.UtcNow;

        var issued = _ca.IssueWorkloadCertificate(csr.CsrPem, Id, TimeSpan.Zero);
        using var leaf = X509Certificate2.CreateFromPem(issued.LeafPem);

        // Empty subject, issued by the root.
        Assert.Equal(new byte[] { 0x30, 0x00 }, leaf.SubjectName.RawData);
        Assert.Equal(_root.Certificate.SubjectName.RawData, leaf.IssuerName.RawData);

        // Exactly one SAN extension, critical, holding exactly one GeneralName: the URI.
        var sans = leaf.Extensions.Cast<X509Extension>().Where(e => e.Oid!.Value == "2.5.29.17").ToList();
        var san = Assert.Single(sans);
        Assert.True(san.Critical);
        var names = new AsnReader(san.RawData, AsnEncodingRules.DER).ReadSequence();
        Assert.Equal(new Asn1Tag(TagClass.ContextSpecific, 6), names.PeekTag());
        Assert.Equal(Id.ToString(), names.ReadCharacterString(UniversalTagNumber.IA5String, new Asn1Tag(TagClass.ContextSpecific, 6)));
        Assert.False(names.HasData);
        Assert.True(CertificateSpiffe.TryGetSpiffeId(leaf, out var parsed));
        Assert.Equal(Id, parsed);

        // P-256 key from the CSR, SHA-256 ECDSA signature.
        using (var pub = leaf.GetECDsaPublicKey())
        {
            Assert.NotNull(pub);
            Assert.Equal("1.2.840.10045.3.1.7", pub.ExportParameters(false).Curve.Oid.Value);
            Assert.Equal(csr.PrivateKey.ExportSubjectPublicKeyInfo(), pub.ExportSubjectPublicKeyInfo());
        }
        Assert.Equal("1.2.840.10045.4.3.2", leaf.SignatureAlgorithm.Value);

        var ku = Assert.Single(leaf.Extensions.OfType<X509KeyUsageExtension>());
        Assert.True(ku.Critical);
        Assert.Equal(X509KeyUsageFlags.DigitalSignature | X509KeyUsageFlags.KeyEncipherment, ku.KeyUsages);
        var eku = Assert.Single(leaf.Extensions.OfType<X509EnhancedKeyUsageExtension>());
        Assert.Equal(["1.3.6.1.5.5.7.3.1", "1.3.6.1.5.5.7.3.2"], eku.EnhancedKeyUsages.Cast<Oid>().Select(o => o.Value!).ToArray());
        var bc = Assert.Single(leaf.Extensions.OfType<X509BasicConstraintsExtension>());
        Assert.False(bc.CertificateAuthority);
        var aki = Assert.Single(leaf.Extensions.OfType<X509AuthorityKeyIdentifierExtension>());
        var rootSki = Assert.Single(_root.Certificate.Extensions.OfType<X509SubjectKeyIdentifierExtension>());
        Assert.Equal(Convert.FromHexString(rootSki.SubjectKeyIdentifier!), aki.KeyIdentifier!.Value.ToArray());

        // Serial: 16 octets, positive.
        var serial = leaf.SerialNumberBytes.ToArray();
        Assert.Equal(16, serial.Length);
        Assert.Equal(issued.SerialNumber, leaf.SerialNumber);

        // Back-dated ~2 minutes, default 24 h.
        var notBefore = leaf.NotBefore.ToUniversalTime();
        Assert.InRange(notBefore, before.UtcDateTime.AddMinutes(-2).AddSeconds(-2), before.UtcDateTime.AddMinutes(-2).AddSeconds(5));
        Assert.InRange(leaf.NotAfter.ToUniversalTime() - before.UtcDateTime, TimeSpan.FromHours(24) - TimeSpan.FromSeconds(2), TimeSpan.FromHours(24) + TimeSpan.FromSeconds(5));

        // Chain: leaf first, root last.
        Assert.Equal([issued.LeafPem, _ca.RootCertificatePem], issued.ChainPem);
        Assert.True(_root.CreateTrustBundle().ValidateChain(leaf, null, out var error), error);
    }

    [Fact]
    public void Serials_AreRandomAndPositive()
    {
        using var csr = WorkloadCsr.Create(Id);
        var serials = new HashSet<string>();
        for (var i = 0; i < 20; i++)
        {
            var serial = CertificateAuthority.NewSerialNumber();
            Assert.Equal(16, serial.Length);
            Assert.InRange(serial[0], (byte)1, (byte)0x7F);
            Assert.True(serials.Add(Convert.ToHexString(serial)));
        }
        Assert.NotEqual(_ca.IssueWorkloadCertificate(csr.CsrPem, Id, TimeSpan.Zero).SerialNumber,
            _ca.IssueWorkloadCertificate(csr.CsrPem, Id, TimeSpan.Zero).SerialNumber);
    }

    [Theory]
    [InlineData(0, 24 * 3600)]
    [InlineData(3600, 3600)]
    [InlineData(90 * 86400, 90 * 86400)]
    public void Ttl_ZeroIsTheDefault_UpToTheMaximum(long requestedSeconds, long expectedSeconds)
    {
        var time = new ManualTime(new DateTimeOffset(2030, 1, 1, 12, 0, 0, TimeSpan.Zero));
        using var dir = new TempDir();
        using var root = CaStore.LoadOrCreate(dir.Path, time: time);
        var ca = new CertificateAuthority(root, time);
        using var csr = WorkloadCsr.Create(Id);

        var issued = ca.IssueWorkloadCertificate(csr.CsrPem, Id, TimeSpan.FromSeconds(requestedSeconds));

        Assert.Equal(time.Now.AddMinutes(-2), issued.NotBefore);
        Assert.Equal(time.Now.AddSeconds(expectedSeconds), issued.NotAfter);
    }

    [Fact]
    public void Leaf_VerifiesWithOpenSsl_AndShowsUriSan()
    {
        using var csr = WorkloadCsr.Create(Id);
        var issued = _ca.IssueWorkloadCertificate(csr.CsrPem, Id, TimeSpan.FromHours(1));
        using var work = new TempDir();
        var rootPath = work.Write("root.pem", _ca.RootCertificatePem);
        var leafPath = work.Write("leaf.pem", issued.LeafPem);

        // -x509_strict also enforces RFC 5280 details such as "empty subject needs a critical SAN" and AKI.
        var (code, output) = OpenSsl.Run("verify", "-x509_strict", "-CAfile", rootPath, leafPath);
        Assert.True(code == 0, "openssl verify failed: " + output);
        Assert.Contains(leafPath + ": OK", output, StringComparison.Ordinal);

        var (code2, purpose) = OpenSsl.Run("verify", "-purpose", "sslclient", "-CAfile", rootPath, leafPath);
        Assert.True(code2 == 0, "openssl verify -purpose sslclient failed: " + purpose);

        var (textCode, text) = OpenSsl.Run("x509", "-in", leafPath, "-noout", "-text");
        Assert.True(textCode == 0, text);
        Assert.Contains("URI:" + Id, text, StringComparison.Ordinal);
        Assert.Contains("X509v3 Subject Alternative Name: critical", text, StringComparison.Ordinal);
        Assert.Matches(new System.Text.RegularExpressions.Regex(@"^\s*Subject:\s*$", System.Text.RegularExpressions.RegexOptions.Multiline), text);
        Assert.Contains("TLS Web Server Authentication, TLS Web Client Authentication", text, StringComparison.Ordinal);
    }

    [Fact]
    public void RequestedSansAndExtensions_AreIgnored()
    {
        using var key = ECDsa.Create(ECCurve.NamedCurves.nistP256);
        var request = new CertificateRequest("CN=evil, O=attacker", key, HashAlgorithmName.SHA256);
        var san = new SubjectAlternativeNameBuilder();
        san.AddUri(new Uri("spiffe://cluster.local/ns/istio-system/sa/istiod"));
        san.AddDnsName("kubernetes.default.svc");
        request.CertificateExtensions.Add(san.Build());
        request.CertificateExtensions.Add(new X509BasicConstraintsExtension(true, false, 0, true));

        var issued = _ca.IssueWorkloadCertificate(request.CreateSigningRequestPem(), Id, TimeSpan.Zero);
        using var leaf = X509Certificate2.CreateFromPem(issued.LeafPem);

        Assert.Equal([Id.ToString()], CertificateSpiffe.GetUriSans(leaf));
        Assert.Empty(Assert.Single(leaf.Extensions.OfType<X509SubjectAlternativeNameExtension>()).EnumerateDnsNames());
        Assert.Equal(new byte[] { 0x30, 0x00 }, leaf.SubjectName.RawData);
        Assert.False(Assert.Single(leaf.Extensions.OfType<X509BasicConstraintsExtension>()).CertificateAuthority);
    }

    [Fact]
    public void TamperedCsrSignature_IsRejected()
    {
        using var csr = WorkloadCsr.Create(Id);
        var der = PemEncoding.Find(csr.CsrPem) is var fields ? Convert.FromBase64String(csr.CsrPem[fields.Base64Data]) : [];
        // The signature BIT STRING is the last element of the CSR: its final byte is inside the ECDSA 's' value.
        der[^1] ^= 0x01;
        var tampered = PemEncoding.WriteString("CERTIFICATE REQUEST", der);

        var ex = Assert.Throws<InvalidCsrException>(() => _ca.IssueWorkloadCertificate(tampered, Id, TimeSpan.Zero));
        Assert.Contains("signature", ex.Message, StringComparison.Ordinal);
    }

    [Theory]
    [InlineData("")]
    [InlineData("   ")]
    [InlineData("hello, I am a CSR")]
    [InlineData("-----BEGIN CERTIFICATE REQUEST-----\nAAAA\n-----END CERTIFICATE REQUEST-----\n")]
    [InlineData("-----BEGIN CERTIFICATE REQUEST-----\n!!!not base64!!!\n-----END CERTIFICATE REQUEST-----\n")]
    public void Garbage_IsRejectedWithClearMessage(string csrPem)
    {
        var ex = Assert.Throws<InvalidCsrException>(() => _ca.IssueWorkloadCertificate(csrPem, Id, TimeSpan.Zero));
        Assert.StartsWith("the CSR is", ex.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void Rsa1024_IsRejected_Rsa2048_IsAccepted()
    {
        using var weak = RSA.Create(1024);
        var weakCsr = new CertificateRequest("CN=x", weak, HashAlgorithmName.SHA256, RSASignaturePadding.Pkcs1).CreateSigningRequestPem();
        var ex = Assert.Throws<InvalidCsrException>(() => _ca.IssueWorkloadCertificate(weakCsr, Id, TimeSpan.Zero));
        Assert.Contains("1024 bits", ex.Message, StringComparison.Ordinal);

        using var strong = RSA.Create(2048);
        var strongCsr = new CertificateRequest("CN=x", strong, HashAlgorithmName.SHA256, RSASignaturePadding.Pkcs1).CreateSigningRequestPem();
        var issued = _ca.IssueWorkloadCertificate(strongCsr, Id, TimeSpan.Zero);
        Assert.Equal(2, issued.ChainPem.Count);
    }

    [Fact]
    public void OtherEcCurve_IsRejected()
    {
        using var p384 = ECDsa.Create(ECCurve.NamedCurves.nistP384);
        var csr = new CertificateRequest("CN=x", p384, HashAlgorithmName.SHA256).CreateSigningRequestPem();

        var ex = Assert.Throws<InvalidCsrException>(() => _ca.IssueWorkloadCertificate(csr, Id, TimeSpan.Zero));
        Assert.Contains("only P-256", ex.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void ConcurrentIssuance_GivesValidDistinctLeaves()
    {
        // gRPC calls arrive in parallel and share one root key object.
        using var csr = WorkloadCsr.Create(Id);
        var leaves = new string[64];
        Parallel.For(0, leaves.Length, new ParallelOptions { MaxDegreeOfParallelism = 8 },
            i => leaves[i] = _ca.IssueWorkloadCertificate(csr.CsrPem, Id, TimeSpan.Zero).LeafPem);

        var bundle = _root.CreateTrustBundle();
        var serials = new HashSet<string>();
        foreach (var pem in leaves)
        {
            using var leaf = X509Certificate2.CreateFromPem(pem);
            Assert.True(bundle.ValidateChain(leaf, null, out var error), error);
            Assert.True(serials.Add(leaf.SerialNumber));
        }
    }

    [Fact]
    public void ServerCertificate_HasIstiodNames_AndVerifiesWithOpenSsl()
    {
        using var cert = _ca.IssueServerCertificate();
        Assert.True(cert.HasPrivateKey);
        var sanExt = Assert.Single(cert.Extensions.OfType<X509SubjectAlternativeNameExtension>());
        Assert.Equal(["istiod.istio-system.svc", "localhost"], sanExt.EnumerateDnsNames().ToArray());
        Assert.Equal([System.Net.IPAddress.Loopback], sanExt.EnumerateIPAddresses().ToArray());
        Assert.True(cert.MatchesHostname("localhost"));
        Assert.True(cert.MatchesHostname("istiod.istio-system.svc"));

        using var work = new TempDir();
        var rootPath = work.Write("root.pem", _ca.RootCertificatePem);
        var certPath = work.Write("server.pem", cert.ExportCertificatePem());
        var (code, output) = OpenSsl.Run("verify", "-x509_strict", "-purpose", "sslserver", "-CAfile", rootPath, certPath);
        Assert.True(code == 0, "openssl verify failed: " + output);
    }
}

using System.Net;
using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;
using Ambient.Core.Identity;

namespace Ambient.Istiod.Ca;

/// <summary>The CSR cannot be used: unreadable, bad signature, or an unsupported key. Maps to INVALID_ARGUMENT.</summary>
internal class InvalidCsrException(string message, Exception? inner = null) : Exception(message, inner);

/// <summary>The CSR asks for a URI SAN other than the identity the CA is about to issue.</summary>
internal sealed class CsrIdentityMismatchException(string message) : InvalidCsrException(message);

/// <summary>The requested lifetime is negative or above <see cref="CertificateAuthority.MaxTtl"/>. Maps to INVALID_ARGUMENT.</summary>
internal sealed class InvalidTtlException(string message) : Exception(message);

/// <summary>
/// An issued workload certificate: <see cref="ChainPem"/> is leaf first, the trust bundle last (Istio's order: the
/// last element holds every root, several of them during a rotation). <see cref="SignerGeneration"/> says which
/// signer issued it (it grows by one at each root rotation).
/// </summary>
internal sealed record IssuedCertificate(
    string LeafPem,
    IReadOnlyList<string> ChainPem,
    SpiffeId Identity,
    string SerialNumber,
    DateTimeOffset NotBefore,
    DateTimeOffset NotAfter)
{
    public long SignerGeneration { get; init; }
}

/// <summary>What the CA signs with and hands out, replaced whole during a root rotation.</summary>
/// <param name="IssuerChainPem">What follows each leaf: the signer's chain with its root replaced by the whole bundle.</param>
internal sealed record CaMaterial(CaSigner Signer, TrustBundle Bundle, string BundlePem, IReadOnlyList<string> IssuerChainPem, long SignerGeneration)
{
    public static CaMaterial For(CaSigner signer) =>
        new(signer, signer.CreateTrustBundle(), signer.RootCertificatePem, signer.IssuerChainPem, 1);

    public CaMaterial WithBundle(TrustBundle bundle, CaSigner? signer = null, long? generation = null)
    {
        signer ??= Signer;
        var bundlePem = bundle.ExportPem();
        return new CaMaterial(signer, bundle, bundlePem, [.. signer.IssuerChainPem.Take(signer.IssuerChainPem.Count - 1), bundlePem],
            generation ?? SignerGeneration);
    }
}

/// <summary>
/// Signs workload certificates with the CA signer (the mesh root, or a plug-in intermediate). The CSR only
/// contributes its public key: the identity, subject, extensions and lifetime are all decided here, so a caller
/// cannot smuggle in a SAN, a CA flag or a longer life.
/// </summary>
internal sealed class CertificateAuthority
{
    public static readonly TimeSpan DefaultTtl = TimeSpan.FromHours(24);
    public static readonly TimeSpan MaxTtl = TimeSpan.FromDays(90);

    // Leaves are back-dated for clock skew between nodes, as Istio does.
    public static readonly TimeSpan Backdate = TimeSpan.FromMinutes(2);

    private const string EcPublicKeyOid = "1.2.840.10045.2.1";
    private const string RsaPublicKeyOid = "1.2.840.113549.1.1.1";
    private const string P256CurveOid = "1.2.840.10045.3.1.7";
    private const int MinRsaBits = 2048;

    // DER of an empty Name (SEQUENCE {}): workload certs carry their identity only in the SAN.
    private static readonly X500DistinguishedName EmptySubject = new([0x30, 0x00]);

    private static readonly OidCollection WorkloadEku = new()
    {
        new Oid("1.3.6.1.5.5.7.3.1", "Server Authentication"),
        new Oid("1.3.6.1.5.5.7.3.2", "Client Authentication"),
    };

    private readonly TimeProvider _time;
    private CaMaterial _material;

    public CertificateAuthority(CaSigner signer, TimeProvider? time = null)
    {
        ArgumentNullException.ThrowIfNull(signer);
        _material = CaMaterial.For(signer);
        _time = time ?? TimeProvider.System;
    }

    public string TrustDomain => Material.Signer.TrustDomain;

    /// <summary>The signer, the bundle and the chain every leaf carries now.</summary>
    public CaMaterial Material => Volatile.Read(ref _material);

    /// <summary>
    /// The trust bundle proxies verify against: the self-signed root, or a plug-in CA's root-cert.pem; during a root
    /// rotation the old and the new roots, then the new one.
    /// </summary>
    public string RootCertificatePem => Material.BundlePem;

    /// <summary>Hands out <paramref name="bundle"/> from now on; it must hold the current signer's root.</summary>
    public void SetTrustBundle(TrustBundle bundle)
    {
        ArgumentNullException.ThrowIfNull(bundle);
        lock (_materialLock)
        {
            var material = Material;
            CheckCovers(bundle, material.Signer);
            Volatile.Write(ref _material, material.WithBundle(bundle));
        }
    }

    /// <summary>Signs with <paramref name="next"/> from now on (a new generation); the bundle must already hold its root.</summary>
    public long SwitchSigner(CaSigner next)
    {
        ArgumentNullException.ThrowIfNull(next);
        lock (_materialLock)
        {
            var material = Material;
            CheckCovers(material.Bundle, next);
            var switched = material.WithBundle(material.Bundle, next, material.SignerGeneration + 1);
            Volatile.Write(ref _material, switched);
            return switched.SignerGeneration;
        }
    }

    private readonly Lock _materialLock = new();

    private static void CheckCovers(TrustBundle bundle, CaSigner signer)
    {
        foreach (var root in signer.CreateTrustBundle().Roots)
        {
            if (!bundle.Contains(root))
            {
                throw new InvalidOperationException($"the trust bundle lacks the signer's root '{root.Subject}': leaves would not verify");
            }
        }
    }

    /// <summary>
    /// Signs the public key of <paramref name="csrPem"/> for <paramref name="identity"/>. The caller has already
    /// decided that the requester may hold that identity. <paramref name="requestedTtl"/> 0 means 24 h; a negative
    /// one or one above 90 days is refused with <see cref="InvalidTtlException"/>, as Istio refuses a TTL above its
    /// maximum (nothing outlives the root either). Throws <see cref="InvalidCsrException"/> for a bad CSR.
    /// </summary>
    /// <param name="refuseOtherUriSans">Kubernetes mode: a CSR that asks for a URI SAN other than
    /// <paramref name="identity"/> is refused (<see cref="CsrIdentityMismatchException"/>) instead of having it ignored.</param>
    public IssuedCertificate IssueWorkloadCertificate(string csrPem, SpiffeId identity, TimeSpan requestedTtl, bool refuseOtherUriSans = false)
    {
        if (identity.IsEmpty)
        {
            throw new ArgumentException("the SPIFFE ID is empty", nameof(identity));
        }
        var ttl = CheckTtl(requestedTtl);
        var csr = LoadCsr(csrPem);
        if (refuseOtherUriSans)
        {
            CheckRequestedSans(csr, identity);
        }
        var publicKey = csr.PublicKey;
        var request = new CertificateRequest(EmptySubject, publicKey, HashAlgorithmName.SHA256);
        var extensions = request.CertificateExtensions;
        extensions.Add(CertificateSpiffe.CreateUriSanExtension(identity, critical: true));
        extensions.Add(new X509KeyUsageExtension(X509KeyUsageFlags.DigitalSignature | X509KeyUsageFlags.KeyEncipherment, critical: true));
        extensions.Add(new X509EnhancedKeyUsageExtension(WorkloadEku, critical: false));
        extensions.Add(new X509BasicConstraintsExtension(certificateAuthority: false, hasPathLengthConstraint: false, pathLengthConstraint: 0, critical: true));
        var material = Material;
        var signer = material.Signer;
        extensions.Add(signer.AuthorityKeyIdentifier);

        var (notBefore, notAfter) = Validity(signer, ttl);
        var serial = NewSerialNumber();
        using var leaf = request.Create(signer.Certificate.SubjectName, signer.SignatureGenerator, notBefore, notAfter, serial);
        var leafPem = leaf.ExportCertificatePem();
        return new IssuedCertificate(leafPem, [leafPem, .. material.IssuerChainPem], identity, leaf.SerialNumber,
            new DateTimeOffset(leaf.NotBefore.ToUniversalTime()), new DateTimeOffset(leaf.NotAfter.ToUniversalTime()))
        {
            SignerGeneration = material.SignerGeneration,
        };
    }

    /// <summary>
    /// istiod's own serving certificate (port 15012), with its private key. It is issued afresh at every start
    /// and never written to disk: that keeps one secret fewer in the state folder, and a restart is the rotation.
    /// The one-year life only has to outlast the process; <paramref name="lifetime"/> can shorten it.
    /// </summary>
    public X509Certificate2 IssueServerCertificate(IReadOnlyList<string>? extraDnsNames = null, TimeSpan? lifetime = null)
    {
        using var key = ECDsa.Create(ECCurve.NamedCurves.nistP256);
        var request = new CertificateRequest(EmptySubject, key, HashAlgorithmName.SHA256);
        // Non-empty subject would be fine too, but an empty one keeps the SAN the sole name, as for workloads.
        var san = new SubjectAlternativeNameBuilder();
        san.AddDnsName("istiod.istio-system.svc");
        san.AddDnsName("localhost");
        if (extraDnsNames is not null)
        {
            foreach (var name in extraDnsNames)
            {
                san.AddDnsName(name);
            }
        }
        san.AddIpAddress(IPAddress.Loopback);
        var extensions = request.CertificateExtensions;
        extensions.Add(san.Build(critical: true));
        extensions.Add(new X509KeyUsageExtension(X509KeyUsageFlags.DigitalSignature | X509KeyUsageFlags.KeyEncipherment, critical: true));
        extensions.Add(new X509EnhancedKeyUsageExtension(new OidCollection { new Oid("1.3.6.1.5.5.7.3.1", "Server Authentication") }, critical: false));
        extensions.Add(new X509BasicConstraintsExtension(false, false, 0, critical: true));
        var signer = Material.Signer;
        extensions.Add(signer.AuthorityKeyIdentifier);
        var life = lifetime is { } l && l > TimeSpan.Zero ? l : TimeSpan.FromDays(365);
        var (notBefore, notAfter) = Validity(signer, life);
        using var cert = request.Create(signer.Certificate.SubjectName, signer.SignatureGenerator, notBefore, notAfter, NewSerialNumber());
        return cert.CopyWithPrivateKey(key);
    }

    /// <summary>A random positive 128-bit serial (RFC 5280 allows up to 20 octets; CAB rules want 64+ random bits).</summary>
    public static byte[] NewSerialNumber() => SelfSignedRoot.NewSerialNumber();

    // Istio (security/pkg/pki/ca) gives a TTL <= 0 the default and refuses one above the maximum; a negative
    // one is refused here too, since no client means it and silently granting 24 h hides the client's bug.
    private static TimeSpan CheckTtl(TimeSpan requested)
    {
        if (requested < TimeSpan.Zero)
        {
            throw new InvalidTtlException($"the requested TTL {requested.TotalSeconds:F0}s is negative; ask for 0 (the default, {DefaultTtl.TotalHours:F0}h) or a positive lifetime");
        }
        if (requested > MaxTtl)
        {
            throw new InvalidTtlException($"the requested TTL {requested.TotalSeconds:F0}s is greater than the max allowed TTL {MaxTtl.TotalSeconds:F0}s ({MaxTtl.TotalDays:F0} days)");
        }
        return requested == TimeSpan.Zero ? DefaultTtl : requested;
    }

    private (DateTimeOffset NotBefore, DateTimeOffset NotAfter) Validity(CaSigner signer, TimeSpan ttl)
    {
        var now = _time.GetUtcNow();
        // Inside the signer's validity: an intermediate may end long before the root does.
        var signerNotBefore = new DateTimeOffset(signer.Certificate.NotBefore.ToUniversalTime());
        var signerNotAfter = new DateTimeOffset(signer.Certificate.NotAfter.ToUniversalTime());
        var notBefore = now - Backdate;
        if (notBefore < signerNotBefore)
        {
            notBefore = signerNotBefore;
        }
        var notAfter = now + ttl;
        if (notAfter > signerNotAfter)
        {
            notAfter = signerNotAfter;
        }
        return (notBefore, notAfter);
    }

    /// <summary>
    /// A CSR may leave the SAN to the CA, or ask for exactly the identity being issued; one asking for another URI SAN
    /// is refused rather than given a different one (Istio ignores requested SANs; Kubernetes mode here is stricter,
    /// so a workload that asks for an identity it does not own hears so).
    /// </summary>
    private static void CheckRequestedSans(CertificateRequest csr, SpiffeId identity)
    {
        var uris = new List<string>(1);
        foreach (var extension in csr.CertificateExtensions)
        {
            if (extension.Oid?.Value == CertificateSpiffe.SubjectAltNameOid)
            {
                try
                {
                    CertificateSpiffe.ReadUriSans(extension.RawData, uris);
                }
                catch (CryptographicException ex)
                {
                    throw new InvalidCsrException("the CSR's subjectAltName is not valid DER: " + ex.Message, ex);
                }
            }
        }
        var expected = identity.ToString();
        foreach (var uri in uris)
        {
            if (!string.Equals(uri, expected, StringComparison.Ordinal))
            {
                throw new CsrIdentityMismatchException($"the CSR asks for URI SAN '{uri}', but the identity to issue is {expected}");
            }
        }
    }

    private static CertificateRequest LoadCsr(string csrPem)
    {
        if (string.IsNullOrWhiteSpace(csrPem))
        {
            throw new InvalidCsrException("the CSR is empty");
        }
        var block = SinglePemBlock(csrPem);
        CertificateRequest csr;
        try
        {
            // The CSR's self-signature is verified (proof the requester holds the key). Its requested extensions
            // are loaded only to be checked (CheckRequestedSans), never copied: the leaf's extensions are ours to set.
            csr = CertificateRequest.LoadSigningRequestPem(block, HashAlgorithmName.SHA256, CertificateRequestLoadOptions.UnsafeLoadCertificateExtensions);
        }
        catch (Exception ex) when (ex is CryptographicException or ArgumentException)
        {
            throw new InvalidCsrException("the CSR is invalid (unreadable or its signature does not verify): " + ex.Message, ex);
        }
        CheckKey(csr.PublicKey);
        return csr;
    }

    /// <summary>
    /// The one CERTIFICATE REQUEST block of <paramref name="text"/>. Anything but whitespace around it is refused:
    /// the BCL would silently take the first block and ignore the rest, so megabytes of junk (or a second request)
    /// would ride along unnoticed. The messages never quote the input.
    /// </summary>
    private static ReadOnlySpan<char> SinglePemBlock(string text)
    {
        if (!PemEncoding.TryFind(text, out var fields) || !text.AsSpan(fields.Label).SequenceEqual("CERTIFICATE REQUEST"))
        {
            throw new InvalidCsrException("the CSR is not PEM: no '-----BEGIN CERTIFICATE REQUEST-----' block");
        }
        var (start, end) = (fields.Location.Start.GetOffset(text.Length), fields.Location.End.GetOffset(text.Length));
        if (!text.AsSpan(0, start).IsWhiteSpace())
        {
            throw new InvalidCsrException($"the CSR has {start} characters before the PEM block; send exactly one CERTIFICATE REQUEST block");
        }
        if (!text.AsSpan(end).IsWhiteSpace())
        {
            throw new InvalidCsrException($"the CSR has {text.Length - end} characters after the PEM block; send exactly one CERTIFICATE REQUEST block");
        }
        return text.AsSpan(start, end - start);
    }

    private static void CheckKey(PublicKey key)
    {
        switch (key.Oid.Value)
        {
            case EcPublicKeyOid:
            {
                using var ec = key.GetECDsaPublicKey()
                    ?? throw new InvalidCsrException("the CSR's EC public key cannot be read");
                var curve = ec.ExportParameters(false).Curve;
                if (!curve.IsNamed || curve.Oid.Value != P256CurveOid)
                {
                    throw new InvalidCsrException($"the CSR's EC key uses curve '{curve.Oid.FriendlyName ?? curve.Oid.Value ?? "explicit"}'; only P-256 is accepted");
                }
                return;
            }
            case RsaPublicKeyOid:
            {
                using var rsa = key.GetRSAPublicKey()
                    ?? throw new InvalidCsrException("the CSR's RSA public key cannot be read");
                if (rsa.KeySize < MinRsaBits)
                {
                    throw new InvalidCsrException($"the CSR's RSA key has {rsa.KeySize} bits; at least {MinRsaBits} are required");
                }
                return;
            }
            default:
                throw new InvalidCsrException($"the CSR's key algorithm '{key.Oid.FriendlyName ?? key.Oid.Value}' is not supported; use ECDSA P-256 (or RSA >= 2048)");
        }
    }
}

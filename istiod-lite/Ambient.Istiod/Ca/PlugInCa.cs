using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;
using Org.BouncyCastle.Crypto;
using Org.BouncyCastle.Crypto.Parameters;
using Org.BouncyCastle.OpenSsl;
using Org.BouncyCastle.Pkcs;
using Org.BouncyCastle.Security;
using Org.BouncyCastle.Security.Certificates;
using Org.BouncyCastle.X509;
using BcCertificate = Org.BouncyCastle.X509.X509Certificate;

namespace Ambient.Istiod.Ca;

/// <summary>
/// An operator's CA plugged in as Istio's <c>cacerts</c> secret: a folder holding <c>ca-cert.pem</c> (the
/// intermediate that signs), <c>ca-key.pem</c> (its key), <c>cert-chain.pem</c> (ca-cert first, up to the root) and
/// <c>root-cert.pem</c> (the trust bundle proxies get). Everything is checked at start, as Istio's
/// keycertbundle.go verify() does (chain to the root, key parses, key matches cert) plus expiry and the CA flag, and
/// every refusal is one line naming the file: a CA that starts and then issues unverifiable leaves is far worse.
/// </summary>
/// <remarks>
/// BouncyCastle reads the key and checks the chain; the BCL still signs. Why each part is on BouncyCastle:
/// <list type="bullet">
/// <item>Keys: one reader for PKCS#1, SEC1, PKCS#8, encrypted PKCS#8 and OpenSSL's legacy encrypted PEM without
/// knowing the algorithm first; the BCL needs the key type before import (RSA vs ECDsa), and cannot read legacy
/// "Proc-Type: 4,ENCRYPTED" keys at all.</item>
/// <item>Key/cert match: the public key derived from the private key is compared with the certificate's, so the
/// refusal can say "does not match" instead of the BCL's generic CopyWithPrivateKey failure.</item>
/// <item>Chain: each certificate's signature is verified against the next one's key, and each issuer's CA flag
/// checked, step by step, so the error names the certificate and file that break the chain; X509Chain reports a
/// status set for the whole chain and needs the platform's chain engine.</item>
/// </list>
/// The parsed key is handed to the BCL (as PKCS#8) so that signing stays on the same path as the default root.
/// CSRs are still read by the BCL (CertificateRequest.LoadSigningRequestPem verifies the proof of possession and
/// drops every requested extension, which is exactly what the CA wants).
/// </remarks>
internal static class PlugInCa
{
    public const string CaCertFile = "ca-cert.pem";
    public const string CaKeyFile = "ca-key.pem";
    public const string RootCertFile = "root-cert.pem";
    public const string CertChainFile = "cert-chain.pem";

    private const string P256CurveOid = "1.2.840.10045.3.1.7";
    private const string P384CurveOid = "1.3.132.0.34";
    private const int MinRsaBits = 2048;
    private const int MaxRsaBits = 4096;

    /// <summary>Loads and checks the folder; throws <see cref="CaStateException"/> with one line naming the file.</summary>
    public static CaSigner Load(string caDirectory, string? keyPasswordFile, string trustDomain, TimeProvider? time = null)
    {
        ArgumentException.ThrowIfNullOrEmpty(caDirectory);
        var now = (time ?? TimeProvider.System).GetUtcNow().UtcDateTime;
        if (!Directory.Exists(caDirectory))
        {
            throw new CaStateException($"plug-in CA folder '{caDirectory}' does not exist");
        }
        var caCertPath = Existing(caDirectory, CaCertFile);
        var caKeyPath = Existing(caDirectory, CaKeyFile);
        var rootPath = Existing(caDirectory, RootCertFile);
        var chainPath = Existing(caDirectory, CertChainFile);

        var caCert = ReadCertificates(caCertPath)[0];
        var roots = ReadCertificates(rootPath);
        var chain = ReadCertificates(chainPath);
        if (!chain[0].Equals(caCert))
        {
            throw new CaStateException($"plug-in CA file '{chainPath}' must start with the certificate of '{caCertPath}' (Istio's order: ca-cert first, root last)");
        }
        CheckTimes(caCertPath, [caCert], now);
        CheckTimes(chainPath, chain, now);
        CheckTimes(rootPath, roots, now);
        if (caCert.GetBasicConstraints() < 0)
        {
            throw new CaStateException($"plug-in CA file '{caCertPath}' is not a CA certificate (basicConstraints CA:true is missing)");
        }
        if (caCert.GetKeyUsage() is { } usage && !usage[5])
        {
            throw new CaStateException($"plug-in CA file '{caCertPath}' may not sign certificates (keyUsage lacks keyCertSign)");
        }
        CheckChain(chainPath, rootPath, chain, roots);

        var privateKey = ReadPrivateKey(caKeyPath, keyPasswordFile);
        if (!PublicKeyOf(privateKey).Equals(caCert.GetPublicKey()))
        {
            throw new CaStateException($"plug-in CA key '{caKeyPath}' does not match the certificate '{caCertPath}' (their public keys differ)");
        }
        var signer = ToBclCertificate(caCert, privateKey, caKeyPath);
        try
        {
            // After the chain's own root (when cert-chain.pem stops below it), so that leaves always end at the root.
            var issuerChain = new List<string>(chain.Count + 1);
            foreach (var cert in chain)
            {
                issuerChain.Add(ToPem(cert));
            }
            if (!IsSelfSigned(chain[^1]))
            {
                issuerChain.Add(ToPem(IssuerOf(chain[^1], roots)!));
            }
            return new CaSigner(trustDomain, signer, issuerChain, File.ReadAllText(rootPath));
        }
        catch
        {
            signer.Dispose();
            throw;
        }
    }

    private static string Existing(string folder, string name)
    {
        var path = Path.Combine(folder, name);
        if (!File.Exists(path))
        {
            throw new CaStateException($"plug-in CA file '{path}' is missing (a plug-in CA folder holds {CaCertFile}, {CaKeyFile}, {CertChainFile} and {RootCertFile})");
        }
        return path;
    }

    private static List<BcCertificate> ReadCertificates(string path)
    {
        List<BcCertificate> certs;
        try
        {
            certs = [.. new X509CertificateParser().ReadCertificates(File.ReadAllBytes(path))];
        }
        catch (Exception ex) when (ex is IOException or ArgumentException or CertificateException or InvalidCastException)
        {
            throw new CaStateException($"plug-in CA file '{path}' is not a PEM certificate: {OneLine(ex.Message)}", ex);
        }
        if (certs.Count == 0)
        {
            throw new CaStateException($"plug-in CA file '{path}' holds no certificate");
        }
        return certs;
    }

    private static void CheckTimes(string path, List<BcCertificate> certs, DateTime now)
    {
        foreach (var cert in certs)
        {
            if (now > cert.NotAfter.ToUniversalTime())
            {
                throw new CaStateException($"plug-in CA file '{path}': certificate '{cert.SubjectDN}' expired at {cert.NotAfter.ToUniversalTime():u}");
            }
            if (now < cert.NotBefore.ToUniversalTime())
            {
                throw new CaStateException($"plug-in CA file '{path}': certificate '{cert.SubjectDN}' is not valid before {cert.NotBefore.ToUniversalTime():u}");
            }
        }
    }

    // cert-chain.pem[i] must be signed by cert-chain.pem[i+1], a CA; the last one is a root or signed by one.
    private static void CheckChain(string chainPath, string rootPath, List<BcCertificate> chain, List<BcCertificate> roots)
    {
        for (var i = 0; i < chain.Count; i++)
        {
            var cert = chain[i];
            BcCertificate? issuer;
            string issuerFile;
            if (i + 1 < chain.Count)
            {
                (issuer, issuerFile) = (chain[i + 1], chainPath);
            }
            else
            {
                (issuer, issuerFile) = (IssuerOf(cert, roots), rootPath);
                if (issuer is null)
                {
                    throw new CaStateException($"plug-in CA file '{chainPath}' does not lead to '{rootPath}': no root there issued '{cert.SubjectDN}' (issuer '{cert.IssuerDN}')");
                }
            }
            if (issuer.GetBasicConstraints() < 0)
            {
                throw new CaStateException($"plug-in CA file '{issuerFile}': '{issuer.SubjectDN}' issues '{cert.SubjectDN}' but is not a CA certificate (basicConstraints CA:true is missing)");
            }
            if (!SignedBy(cert, issuer))
            {
                throw new CaStateException($"plug-in CA file '{chainPath}': '{cert.SubjectDN}' is not signed by the key of '{issuer.SubjectDN}' in '{issuerFile}'");
            }
        }
    }

    // The root that issued the top of the chain (or that is the top of the chain, when cert-chain.pem includes it).
    private static BcCertificate? IssuerOf(BcCertificate cert, List<BcCertificate> roots)
    {
        foreach (var root in roots)
        {
            if (root.Equals(cert) || root.SubjectDN.Equivalent(cert.IssuerDN) && SignedBy(cert, root))
            {
                return root;
            }
        }
        return null;
    }

    private static bool SignedBy(BcCertificate cert, BcCertificate issuer)
    {
        try
        {
            cert.Verify(issuer.GetPublicKey());
            return true;
        }
        catch (Exception ex) when (ex is CryptoException or CertificateException or InvalidKeyException or SignatureException or ArgumentException or InvalidCastException)
        {
            return false;
        }
    }

    private static bool IsSelfSigned(BcCertificate cert) => cert.SubjectDN.Equivalent(cert.IssuerDN) && SignedBy(cert, cert);

    private static AsymmetricKeyParameter ReadPrivateKey(string path, string? passwordFile)
    {
        var text = File.ReadAllText(path);
        // Said before parsing: BouncyCastle reports a missing password as a generic "problem creating" error.
        if (passwordFile is null && (text.Contains("-----BEGIN ENCRYPTED PRIVATE KEY-----", StringComparison.Ordinal) || text.Contains("Proc-Type: 4,ENCRYPTED", StringComparison.Ordinal)))
        {
            throw new CaStateException($"plug-in CA key '{path}' is encrypted: pass --ca-key-password-file FILE");
        }
        object? read;
        try
        {
            using var reader = new StringReader(text);
            read = new PemReader(reader, passwordFile is null ? null : new FilePassword(passwordFile)).ReadObject();
        }
        catch (Exception ex) when (ex is IOException or CryptoException or ArgumentException or InvalidCastException)
        {
            var hint = passwordFile is null ? "" : " (or the password is wrong)";
            throw new CaStateException($"plug-in CA key '{path}' cannot be read{hint}: {OneLine(ex.Message)}", ex);
        }
        var key = read switch
        {
            AsymmetricCipherKeyPair pair => pair.Private, // PKCS#1 "RSA PRIVATE KEY", SEC1 "EC PRIVATE KEY"
            AsymmetricKeyParameter { IsPrivate: true } single => single, // PKCS#8, plain or encrypted
            null => throw new CaStateException($"plug-in CA key '{path}' holds no PEM block"),
            _ => throw new CaStateException($"plug-in CA key '{path}' holds a {read.GetType().Name}, not a private key"),
        };
        switch (key)
        {
            case RsaKeyParameters rsa when rsa.Modulus.BitLength is < MinRsaBits or > MaxRsaBits:
                throw new CaStateException($"plug-in CA key '{path}' is RSA {rsa.Modulus.BitLength} bits; use {MinRsaBits} to {MaxRsaBits}");
            case RsaKeyParameters:
                return key;
            case ECPrivateKeyParameters ec when ec.PublicKeyParamSet?.Id is P256CurveOid or P384CurveOid:
                return key;
            case ECPrivateKeyParameters ec:
                throw new CaStateException($"plug-in CA key '{path}' is on EC curve '{ec.PublicKeyParamSet?.Id ?? "explicit parameters"}'; use P-256 or P-384");
            default:
                throw new CaStateException($"plug-in CA key '{path}' is {key.GetType().Name}; use RSA 2048-4096 or EC P-256/P-384");
        }
    }

    private static AsymmetricKeyParameter PublicKeyOf(AsymmetricKeyParameter privateKey) => privateKey switch
    {
        RsaPrivateCrtKeyParameters rsa => new RsaKeyParameters(false, rsa.Modulus, rsa.PublicExponent),
        ECPrivateKeyParameters ec => new ECPublicKeyParameters(ec.AlgorithmName, ec.Parameters.G.Multiply(ec.D).Normalize(), ec.PublicKeyParamSet),
        _ => throw new CaStateException("a private RSA key without its public exponent (not CRT form) cannot be checked against its certificate"),
    };

    private static X509Certificate2 ToBclCertificate(BcCertificate cert, AsymmetricKeyParameter key, string keyPath)
    {
        var pkcs8 = PrivateKeyInfoFactory.CreatePrivateKeyInfo(key).GetDerEncoded();
        using var bclCert = X509CertificateLoader.LoadCertificate(cert.GetEncoded());
        try
        {
            if (key is RsaKeyParameters)
            {
                using var rsa = RSA.Create();
                rsa.ImportPkcs8PrivateKey(pkcs8, out _);
                return bclCert.CopyWithPrivateKey(rsa);
            }
            using var ecdsa = ECDsa.Create();
            ecdsa.ImportPkcs8PrivateKey(pkcs8, out _);
            return bclCert.CopyWithPrivateKey(ecdsa);
        }
        catch (CryptographicException ex)
        {
            throw new CaStateException($"plug-in CA key '{keyPath}' cannot be used for signing: {OneLine(ex.Message)}", ex);
        }
        finally
        {
            CryptographicOperations.ZeroMemory(pkcs8);
        }
    }

    private static string ToPem(BcCertificate cert) => PemEncoding.WriteString("CERTIFICATE", cert.GetEncoded()) + "\n";

    private static string OneLine(string message) => message.ReplaceLineEndings(" ").Trim();

    /// <summary>The key password: the file's content without its trailing newline (as <c>echo pw &gt; file</c> writes it).</summary>
    private sealed class FilePassword(string path) : IPasswordFinder
    {
        public char[] GetPassword()
        {
            try
            {
                return File.ReadAllText(path).TrimEnd('\r', '\n').ToCharArray();
            }
            catch (Exception ex) when (ex is IOException or UnauthorizedAccessException)
            {
                throw new CaStateException($"CA key password file '{path}' cannot be read: {OneLine(ex.Message)}", ex);
            }
        }
    }
}

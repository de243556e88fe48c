using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;
using Ambient.Core.Files;
using Ambient.Core.Identity;

namespace Ambient.Istiod.Ca;

/// <summary>A CA state file is missing its partner or cannot be read; the message names the file.</summary>
internal sealed class CaStateException(string message, Exception? inner = null) : Exception(message, inner);

/// <summary>
/// The root's home in the state folder: <c>root-cert.pem</c> and <c>root-key.pem</c> (PKCS#8), both 0600.
/// A state folder or key that another user owns or can change is refused (<see cref="StrictModes"/>).
/// Created once and reused on every start, because a new root silently invalidates every certificate the mesh
/// holds. For the same reason a damaged or half-present root is an error for the operator, never regenerated.
/// </summary>
internal static class CaStore
{
    public const string RootCertFile = SelfSignedRoot.CertificateFile;
    public const string RootKeyFile = SelfSignedRoot.KeyFile;
    public static readonly TimeSpan RootLifetime = SelfSignedRoot.Lifetime;

    public static CaSigner LoadOrCreate(string stateDirectory, string trustDomain = SpiffeId.DefaultTrustDomain, TimeProvider? time = null)
    {
        ArgumentException.ThrowIfNullOrEmpty(stateDirectory);
        _ = new SpiffeId(trustDomain, "ns", "sa"); // validates the trust domain
        time ??= TimeProvider.System;
        // Before anything is read or written: a folder or key another user made or can change is not ours to trust.
        StrictModes.CheckFolder(stateDirectory, "state folder");
        var certPath = Path.Combine(stateDirectory, RootCertFile);
        var keyPath = Path.Combine(stateDirectory, RootKeyFile);
        var certExists = File.Exists(certPath);
        var keyExists = File.Exists(keyPath);
        if (certExists && keyExists)
        {
            StrictModes.CheckSecretFile(keyPath, "CA root key");
            return Load(certPath, keyPath, trustDomain, time);
        }
        if (certExists != keyExists)
        {
            var (present, missing) = certExists ? (certPath, keyPath) : (keyPath, certPath);
            throw new CaStateException(
                $"CA state is incomplete: '{present}' exists but '{missing}' is missing. Restore the missing file, " +
                "or delete both to create a new root (this invalidates every certificate issued so far).");
        }
        PrivateFile.EnsureDirectory(stateDirectory);
        return Create(certPath, keyPath, trustDomain, time);
    }

    private static CaSigner Create(string certPath, string keyPath, string trustDomain, TimeProvider time)
    {
        var (root, certPem, keyPem) = SelfSignedRoot.Create(trustDomain, time);
        // Key first: a crash between the two writes leaves "key without cert", which LoadOrCreate reports; the
        // reverse order could leave a root certificate whose key is lost for good.
        PrivateFile.Write(keyPath, keyPem);
        PrivateFile.Write(certPath, certPem);
        return new CaSigner(trustDomain, root);
    }

    /// <summary>A root pair (certificate and PKCS#8/SEC1/PKCS#1 key) checked as at start; <see cref="CaStateException"/> names the file.</summary>
    internal static CaSigner Load(string certPath, string keyPath, string trustDomain, TimeProvider time)
    {
        X509Certificate2 cert;
        try
        {
            cert = X509Certificate2.CreateFromPem(File.ReadAllText(certPath));
        }
        catch (Exception ex) when (ex is CryptographicException or ArgumentException)
        {
            throw new CaStateException($"CA root certificate '{certPath}' is not a valid PEM certificate: {ex.Message}", ex);
        }
        using (cert)
        {
            var keyPem = File.ReadAllText(keyPath);
            AsymmetricAlgorithm key;
            try
            {
                key = cert.GetKeyAlgorithm() == "1.2.840.113549.1.1.1" ? ImportRsa(keyPem) : ImportEcdsa(keyPem);
            }
            catch (Exception ex) when (ex is CryptographicException or ArgumentException)
            {
                throw new CaStateException($"CA root key '{keyPath}' is not a valid PEM private key: {ex.Message}", ex);
            }
            using (key)
            {
                X509Certificate2 withKey;
                try
                {
                    withKey = key is RSA rsa ? cert.CopyWithPrivateKey(rsa) : cert.CopyWithPrivateKey((ECDsa)key);
                }
                catch (Exception ex) when (ex is CryptographicException or ArgumentException)
                {
                    throw new CaStateException($"CA root key '{keyPath}' does not belong to the certificate '{certPath}': {ex.Message}", ex);
                }
                if (!IsCa(withKey))
                {
                    withKey.Dispose();
                    throw new CaStateException($"CA root certificate '{certPath}' is not a CA certificate (basicConstraints CA:true is missing)");
                }
                if (time.GetUtcNow().UtcDateTime > withKey.NotAfter.ToUniversalTime())
                {
                    var expired = withKey.NotAfter.ToUniversalTime();
                    withKey.Dispose();
                    throw new CaStateException($"CA root certificate '{certPath}' expired at {expired:u}; rotate the root");
                }
                return new CaSigner(trustDomain, withKey);
            }
        }
    }

    private static ECDsa ImportEcdsa(string pem)
    {
        var key = ECDsa.Create();
        try
        {
            key.ImportFromPem(pem);
            return key;
        }
        catch
        {
            key.Dispose();
            throw;
        }
    }

    private static RSA ImportRsa(string pem)
    {
        var key = RSA.Create();
        try
        {
            key.ImportFromPem(pem);
            return key;
        }
        catch
        {
            key.Dispose();
            throw;
        }
    }

    private static bool IsCa(X509Certificate2 cert)
    {
        foreach (var extension in cert.Extensions)
        {
            if (extension is X509BasicConstraintsExtension bc)
            {
                return bc.CertificateAuthority;
            }
        }
        return false;
    }
}

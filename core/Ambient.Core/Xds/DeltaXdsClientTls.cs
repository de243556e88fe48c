using System.Net;
using System.Net.Security;
using System.Security.Cryptography.X509Certificates;

namespace Ambient.Core.Xds;

/// <summary>
/// The TLS channel to istiod (port 15012) shared by the xDS client and the certificate manager: HTTP/2 over TLS,
/// the server certificate verified against the mesh root only (never the system store, never switched off).
/// </summary>
internal static class IstiodChannel
{
    /// <summary>The name Istio expects on istiod's serving certificate, whatever address it is dialled on.</summary>
    public const string DefaultServerName = "istiod.istio-system.svc";

    /// <summary>
    /// An HTTP/2 handler whose server-certificate check is <see cref="ValidateServerCertificate"/>. The caller owns
    /// it (the ztunnel puts its gRPC channels to istiod on it).
    /// </summary>
    public static SocketsHttpHandler CreateHandler(X509Certificate2Collection roots, Uri address, string? serverName = DefaultServerName)
    {
        ArgumentNullException.ThrowIfNull(roots);
        if (roots.Count == 0)
        {
            throw new ArgumentException("no mesh root certificate to verify istiod against", nameof(roots));
        }
        return CreateHandler(() => roots, address, serverName);
    }

    /// <summary>
    /// As above, reading the roots at every handshake: after a root rotation istiod serves a certificate under the
    /// new root, and a reconnect must verify it against the bundle the proxy holds then, not the one it started with.
    /// </summary>
    public static SocketsHttpHandler CreateHandler(Func<X509Certificate2Collection> currentRoots, Uri address, string? serverName = DefaultServerName)
    {
        ArgumentNullException.ThrowIfNull(currentRoots);
        ArgumentNullException.ThrowIfNull(address);
        var host = address.IdnHost.Trim('[', ']');
        return new SocketsHttpHandler
        {
            // One long-lived connection; idle xDS streams must not be reaped by the pool.
            PooledConnectionIdleTimeout = Timeout.InfiniteTimeSpan,
            KeepAlivePingDelay = TimeSpan.FromSeconds(10),
            KeepAlivePingTimeout = TimeSpan.FromSeconds(20),
            KeepAlivePingPolicy = HttpKeepAlivePingPolicy.Always,
            ConnectTimeout = TimeSpan.FromSeconds(10),
            EnableMultipleHttp2Connections = true,
            SslOptions = new SslClientAuthenticationOptions
            {
                RemoteCertificateValidationCallback = (_, certificate, chain, errors) =>
                    ValidateServerCertificate(certificate as X509Certificate2, chain, errors, currentRoots(), host, serverName, out var _),
            },
        };
    }

    /// <summary>
    /// True when istiod's certificate chains to one of <paramref name="roots"/> (custom root trust: the system
    /// store plays no part) and carries a DNS or IP SAN equal to the host dialled or to <paramref name="serverName"/>.
    /// SslStream's own verdict is ignored: it always reports chain errors for a private root.
    /// </summary>
    public static bool ValidateServerCertificate(
        X509Certificate2? certificate, X509Chain? presented, SslPolicyErrors errors,
        X509Certificate2Collection roots, string host, string? serverName, out string error)
    {
        if (certificate is null || (errors & SslPolicyErrors.RemoteCertificateNotAvailable) != 0)
        {
            error = "istiod presented no certificate";
            return false;
        }
        using var chain = new X509Chain();
        chain.ChainPolicy.TrustMode = X509ChainTrustMode.CustomRootTrust;
        chain.ChainPolicy.CustomTrustStore.AddRange(roots);
        chain.ChainPolicy.RevocationMode = X509RevocationMode.NoCheck;
        chain.ChainPolicy.VerificationFlags = X509VerificationFlags.NoFlag;
        if (presented is not null)
        {
            // Intermediates the server sent (element 0 is the leaf itself).
            for (var i = 1; i < presented.ChainElements.Count; i++)
            {
                chain.ChainPolicy.ExtraStore.Add(presented.ChainElements[i].Certificate);
            }
        }
        if (!chain.Build(certificate))
        {
            var reasons = new List<string>();
            foreach (var s in chain.ChainStatus)
            {
                reasons.Add(s.Status + ": " + s.StatusInformation.Trim());
            }
            error = "istiod's certificate does not chain to the mesh root: " + string.Join("; ", reasons);
            return false;
        }
        if (!HasName(certificate, host, serverName))
        {
            error = $"istiod's certificate names neither '{host}' nor '{serverName}'";
            return false;
        }
        error = "";
        return true;
    }

    private static bool HasName(X509Certificate2 certificate, string host, string? serverName)
    {
        IPAddress.TryParse(host, out var hostIp);
        foreach (var extension in certificate.Extensions)
        {
            if (extension is not X509SubjectAlternativeNameExtension san)
            {
                continue;
            }
            foreach (var dns in san.EnumerateDnsNames())
            {
                if (string.Equals(dns, host, StringComparison.OrdinalIgnoreCase)
                    || (serverName is not null && string.Equals(dns, serverName, StringComparison.OrdinalIgnoreCase)))
                {
                    return true;
                }
            }
            if (hostIp is not null)
            {
                foreach (var ip in san.EnumerateIPAddresses())
                {
                    if (ip.Equals(hostIp))
                    {
                        return true;
                    }
                }
            }
        }
        return false;
    }
}

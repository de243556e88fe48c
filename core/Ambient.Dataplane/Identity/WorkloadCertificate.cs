using System.Security.Cryptography.X509Certificates;
using Ambient.Core.Identity;

namespace Ambient.Dataplane.Identity;

/// <summary>
/// One issued certificate: the leaf with its private key, the rest of the chain the CA returned (intermediates
/// and root, leaf excluded), and when to renew it. Never mutated or disposed while published, so TLS contexts
/// built from <see cref="CertificateWithKey"/> may be cached until the instance changes.
/// </summary>
internal sealed record WorkloadCertificate(
    SpiffeId Identity,
    X509Certificate2 CertificateWithKey,
    X509Certificate2Collection Chain,
    string SerialNumber,
    DateTimeOffset NotBefore,
    DateTimeOffset NotAfter,
    DateTimeOffset RefreshAt)
{
    public bool IsValidAt(DateTimeOffset now) => now >= NotBefore && now < NotAfter;

    /// <summary>
    /// Istio's rule: renew at NotBefore + half the lifetime. The CA back-dates NotBefore by 2 minutes, so for a very
    /// short lifetime that instant can precede the moment the cert arrived; then renew at half the remaining life
    /// rather than immediately and forever.
    /// </summary>
    public static DateTimeOffset ComputeRefreshAt(DateTimeOffset notBefore, DateTimeOffset notAfter, DateTimeOffset receivedAt)
    {
        var refresh = notBefore + ((notAfter - notBefore) / 2);
        if (refresh <= receivedAt)
        {
            refresh = receivedAt + ((notAfter - receivedAt) / 2);
        }
        return refresh;
    }
}

/// <summary>Where one identity's certificate stands.</summary>
internal enum CertificateState
{
    /// <summary>No certificate yet; the first fetch is in flight.</summary>
    Pending,

    /// <summary>A valid certificate is held; renewal is scheduled.</summary>
    Ready,

    /// <summary>A fetch failed; the held certificate (if still valid) keeps being served while retrying with backoff.</summary>
    Retrying,

    /// <summary>No valid certificate (never obtained, or expired) and the last fetch failed; retrying with backoff.</summary>
    Failed,
}

/// <summary>One row of config_dump's certificates section.</summary>
internal sealed record CertificateStatus(
    string Identity,
    CertificateState State,
    string? SerialNumber,
    DateTimeOffset? NotBefore,
    DateTimeOffset? NotAfter,
    DateTimeOffset? NextAttempt,
    int Failures,
    string? LastError);

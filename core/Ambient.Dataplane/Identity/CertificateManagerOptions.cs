using Ambient.Core.Xds;

namespace Ambient.Dataplane.Identity;

/// <summary>Where the CA lives, how to authenticate to it, and the renewal timing; fixed for the manager's lifetime.</summary>
internal sealed record CertificateManagerOptions
{
    /// <summary>The metadata field a node proxy asks for a pod's identity with (Istio's spelling).</summary>
    public const string ImpersonatedIdentityField = "ImpersonatedIdentity";

    /// <summary>istiod's gRPC address, e.g. <c>https://127.0.0.1:15012</c>.</summary>
    public required Uri CaAddress { get; init; }

    /// <summary>Node bearer token; read before every request so a rotated token file is picked up.</summary>
    public required Func<string> Token { get; init; }

    public string ClusterId { get; init; } = "Kubernetes";

    /// <summary>Extra DNS name accepted on istiod's certificate besides the host dialled.</summary>
    public string? ServerName { get; init; } = IstiodChannel.DefaultServerName;

    /// <summary>Lifetime asked of the CA (validity_duration). The CA treats 0 as its default (24 h) and refuses more than 90 days.</summary>
    public TimeSpan RequestedTtl { get; init; } = TimeSpan.FromHours(24);

    /// <summary>First retry delay after a failed fetch; doubles per failure up to <see cref="MaxBackoff"/>, with jitter.</summary>
    public TimeSpan InitialBackoff { get; init; } = TimeSpan.FromMilliseconds(500);
    public TimeSpan MaxBackoff { get; init; } = TimeSpan.FromSeconds(150);

    /// <summary>Deadline of one CreateCertificate call (sent as grpc-timeout).</summary>
    public TimeSpan RequestTimeout { get; init; } = TimeSpan.FromSeconds(10);

    /// <summary>Clock for renewal, backoff and expiry checks (tests inject their own).</summary>
    public TimeProvider Time { get; init; } = TimeProvider.System;
}

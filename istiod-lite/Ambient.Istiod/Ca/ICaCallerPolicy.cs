using Ambient.Core.Identity;

namespace Ambient.Istiod.Ca;

/// <summary>
/// Who a CA caller is and which identity it may obtain. Local mode answers with node tokens
/// (<see cref="NodeTokenPolicy"/>); Kubernetes mode with projected service-account tokens checked by TokenReview
/// (<see cref="ServiceAccountTokenPolicy"/>), as Istio's CA does.
/// </summary>
internal interface ICaCallerPolicy
{
    /// <summary>What the bearer token is, for messages (<c>node token</c>, <c>service-account token</c>).</summary>
    string CredentialName { get; }

    /// <summary>The status a caller gets when it may not hold the identity it asked for.</summary>
    CaErrorKind DeniedKind { get; }

    /// <summary>Whether a CSR asking for a URI SAN other than the identity issued is refused (else it is ignored, as Istio does).</summary>
    bool RefusesOtherCsrSans { get; }

    /// <summary>The caller behind <paramref name="token"/> (the text after <c>Bearer </c>); throws <see cref="CaRequestException"/>.</summary>
    ValueTask<CaCaller> AuthenticateAsync(string token, CancellationToken cancellationToken);

    /// <summary>
    /// The identity to issue: <paramref name="impersonated"/> (already parsed and in this CA's trust domain) when the
    /// caller may hold it, or the caller's own when it asked for none. Throws <see cref="CaRequestException"/>.
    /// </summary>
    SpiffeId Authorize(CaCaller caller, SpiffeId? impersonated);
}

/// <summary>An authenticated CA caller.</summary>
/// <param name="Name">How logs and messages name it: the node (local mode) or <c>ns/sa</c> and its pod.</param>
/// <param name="Node">The node it speaks for, when known (local mode: always; Kubernetes mode: resolved from its pod).</param>
/// <param name="ServiceAccount">Kubernetes mode: the service account and pod the token was issued to.</param>
internal sealed record CaCaller(string Name, string? Node, ServiceAccountCaller? ServiceAccount = null);

/// <summary>What a TokenReview says about a projected service-account token.</summary>
/// <param name="PodName">The pod the token is bound to (<c>authentication.kubernetes.io/pod-name</c>), if any.</param>
/// <param name="PodUid">That pod's uid (<c>authentication.kubernetes.io/pod-uid</c>), if any.</param>
internal sealed record ServiceAccountCaller(string Namespace, string ServiceAccount, SpiffeId Identity, string? PodName, string? PodUid)
{
    public override string ToString() => PodName is null
        ? $"{Namespace}/{ServiceAccount}"
        : $"{Namespace}/{ServiceAccount} (pod {Namespace}/{PodName})";
}

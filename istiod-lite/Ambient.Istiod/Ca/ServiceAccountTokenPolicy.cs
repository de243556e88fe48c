using Ambient.Core.Identity;

namespace Ambient.Istiod.Ca;

/// <summary>
/// Kubernetes mode, as Istio's CA (<c>kubeauth/kube_jwt.go</c> and <c>node_auth.go</c>): the caller presents its
/// projected service-account token (audience <c>istio-ca</c>), a TokenReview says whose it is, and the caller gets
/// <c>spiffe://&lt;td&gt;/ns/&lt;ns&gt;/sa/&lt;sa&gt;</c>. Impersonation (the ztunnel asking for its pods) is allowed only
/// to the accounts in <c>CA_TRUSTED_NODE_ACCOUNTS</c>, and only for an identity with a pod on the node of the pod the
/// token is bound to (that pod's uid checked, so a re-created pod's predecessor's token does not count).
/// </summary>
internal sealed class ServiceAccountTokenPolicy(
    ITokenReviewer reviewer,
    IWorkloadDirectory directory,
    TrustedNodeAccounts trustedNodeAccounts,
    string trustDomain,
    TokenReviewCache cache) : ICaCallerPolicy
{
    /// <summary>The audience istio-agent and ztunnel request for their CA token (Istio's <c>istio-ca</c>).</summary>
    public const string Audience = "istio-ca";

    private const string ServiceAccountsGroup = "system:serviceaccounts";
    private const string ServiceAccountUserPrefix = "system:serviceaccount:";

    public string CredentialName => "service-account token";

    public CaErrorKind DeniedKind => CaErrorKind.PermissionDenied;

    public bool RefusesOtherCsrSans => true;

    public async ValueTask<CaCaller> AuthenticateAsync(string token, CancellationToken cancellationToken)
    {
        if (!cache.TryGet(token, out var caller))
        {
            TokenReviewVerdict verdict;
            try
            {
                verdict = await reviewer.ReviewAsync(token, Audience, cancellationToken).ConfigureAwait(false);
            }
            catch (TokenReviewUnavailableException e)
            {
                throw new CaRequestException(CaErrorKind.Unavailable, e.Message, e);
            }
            caller = Check(verdict);
            cache.Add(token, caller);
        }
        return new CaCaller(caller.ToString(), Node(caller), caller);
    }

    public SpiffeId Authorize(CaCaller caller, SpiffeId? impersonated)
    {
        var account = caller.ServiceAccount!;
        // Asking for one's own identity by name is not impersonation: a waypoint may say who it is.
        if (impersonated is not { } identity || identity.Equals(account.Identity))
        {
            return account.Identity;
        }
        string Denied(string why) => $"{account} may not obtain identity {identity}: {why}";
        if (!trustedNodeAccounts.Contains(account.Namespace, account.ServiceAccount))
        {
            throw new CaRequestException(CaErrorKind.PermissionDenied, Denied(
                $"service account {account.Namespace}/{account.ServiceAccount} is not allowed to impersonate " +
                $"({TrustedNodeAccounts.EnvironmentVariable}: {(trustedNodeAccounts.IsEmpty ? "empty" : trustedNodeAccounts.Text)})"));
        }
        if (account.PodName is null)
        {
            throw new CaRequestException(CaErrorKind.PermissionDenied, Denied(
                "the token is not bound to a pod (no authentication.kubernetes.io/pod-name): mount a projected service-account token"));
        }
        if (!directory.TryGetPod(account.Namespace, account.PodName, out var pod))
        {
            throw new CaRequestException(CaErrorKind.PermissionDenied, Denied(
                $"its pod {account.Namespace}/{account.PodName} is not known (yet) to istiod-lite"));
        }
        if (account.PodUid is null || !string.Equals(pod.Uid, account.PodUid, StringComparison.Ordinal))
        {
            // A pod re-created under the same name, and a caller still holding the old one's token; retrying with
            // the current pod's token succeeds.
            throw new CaRequestException(CaErrorKind.PermissionDenied, Denied(
                $"pod {account.Namespace}/{account.PodName} found, but its uid does not match the token's: {pod.Uid ?? "(none)"} vs {account.PodUid ?? "(none)"}"));
        }
        if (!string.Equals(pod.ServiceAccount, account.ServiceAccount, StringComparison.Ordinal))
        {
            throw new CaRequestException(CaErrorKind.PermissionDenied, Denied(
                $"pod {account.Namespace}/{account.PodName} runs as service account '{pod.ServiceAccount}', not the token's"));
        }
        if (pod.Node is not { } node)
        {
            throw new CaRequestException(CaErrorKind.PermissionDenied, Denied(
                $"pod {account.Namespace}/{account.PodName} is not scheduled on a node"));
        }
        if (!directory.HasPodOnNode(node, identity))
        {
            throw new CaRequestException(CaErrorKind.PermissionDenied, Denied(
                $"no pod of {identity.Namespace}/{identity.ServiceAccount} runs on its node '{node}'"));
        }
        return identity;
    }

    // The node of the pod the token is bound to, for logs and for discovery's per-node rules; null when unknown.
    private string? Node(ServiceAccountCaller caller) =>
        caller.PodName is { } name && directory.TryGetPod(caller.Namespace, name, out var pod)
            && string.Equals(pod.Uid, caller.PodUid, StringComparison.Ordinal) && caller.PodUid is not null
            ? pod.Node
            : null;

    private ServiceAccountCaller Check(TokenReviewVerdict verdict)
    {
        if (!verdict.Authenticated)
        {
            throw new CaRequestException(CaErrorKind.Unauthenticated,
                "the Kubernetes API did not authenticate the service-account token" + (verdict.Error is { } e ? ": " + e : "") +
                $" (the CA needs a projected token with audience '{Audience}')");
        }
        var audienceMatched = false;
        foreach (var audience in verdict.Audiences)
        {
            audienceMatched |= audience == Audience;
        }
        if (!audienceMatched)
        {
            // The API answers the audiences it checked; none of ours means it did not check ours (or the token's differ).
            throw new CaRequestException(CaErrorKind.Unauthenticated,
                $"the service-account token is not valid for audience '{Audience}' (TokenReview audiences: [{string.Join(", ", verdict.Audiences)}])");
        }
        var isServiceAccount = false;
        foreach (var group in verdict.Groups)
        {
            isServiceAccount |= group == ServiceAccountsGroup;
        }
        var user = verdict.Username ?? "";
        // system:serviceaccount:<namespace>:<name>
        var parts = user.StartsWith(ServiceAccountUserPrefix, StringComparison.Ordinal) ? user[ServiceAccountUserPrefix.Length..].Split(':') : [];
        if (!isServiceAccount || parts.Length != 2 || parts[0].Length == 0 || parts[1].Length == 0)
        {
            throw new CaRequestException(CaErrorKind.Unauthenticated,
                $"the token authenticates '{user}', which is not a service account (system:serviceaccount:<namespace>:<name>)");
        }
        if (!SpiffeId.TryParse(string.Concat(SpiffeId.Scheme, trustDomain, "/ns/", parts[0], "/sa/", parts[1]), out var identity, out var error))
        {
            throw new CaRequestException(CaErrorKind.Unauthenticated, $"service account {parts[0]}/{parts[1]} has no valid SPIFFE ID: {error}");
        }
        return new ServiceAccountCaller(parts[0], parts[1], identity,
            verdict.SingleExtra(TokenReviewVerdict.PodNameExtra), verdict.SingleExtra(TokenReviewVerdict.PodUidExtra));
    }
}

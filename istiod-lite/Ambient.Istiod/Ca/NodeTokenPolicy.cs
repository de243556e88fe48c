using Ambient.Core.Identity;

namespace Ambient.Istiod.Ca;

/// <summary>
/// Local mode: the caller is the node whose token it presents, and it may obtain an identity only by impersonation,
/// for a pod with that namespace and service account on its node.
/// </summary>
internal sealed class NodeTokenPolicy(NodeTokens tokens, IWorkloadDirectory directory) : ICaCallerPolicy
{
    public string CredentialName => "node token";

    public CaErrorKind DeniedKind => CaErrorKind.Unauthenticated;

    public bool RefusesOtherCsrSans => false;

    public ValueTask<CaCaller> AuthenticateAsync(string token, CancellationToken cancellationToken)
    {
        if (!tokens.TryAuthenticate("Bearer " + token, out var node))
        {
            throw new CaRequestException(CaErrorKind.Unauthenticated, "the bearer token does not belong to any node");
        }
        return ValueTask.FromResult(new CaCaller(node, node));
    }

    public SpiffeId Authorize(CaCaller caller, SpiffeId? impersonated)
    {
        var node = caller.Node!;
        if (impersonated is not { } identity)
        {
            throw new CaRequestException(CaErrorKind.Unauthenticated,
                $"node '{node}' asked for its own identity, but only pod identities are issued: put the pod's SPIFFE ID in " +
                $"metadata field '{CertificateService.ImpersonatedIdentityField}' (per-pod token authentication is not supported in local mode)");
        }
        if (!directory.HasPodOnNode(node, identity))
        {
            throw new CaRequestException(CaErrorKind.Unauthenticated,
                $"node '{node}' may not obtain identity {identity}: no running pod with that service account on this node");
        }
        return identity;
    }
}

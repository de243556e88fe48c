using Ambient.Core.Identity;
using Ambient.Core.Protos.Ca;
using Google.Protobuf.WellKnownTypes;
using Microsoft.Extensions.Logging;

namespace Ambient.Istiod.Ca;

/// <summary>
/// <c>/istio.v1.auth.IstioCertificateService/CreateCertificate</c> without the transport: the gRPC layer decodes the
/// request, passes the <c>authorization</c> metadata value, and maps <see cref="CaRequestException"/> to a status.
/// </summary>
internal sealed class CertificateService
{
    /// <summary>The metadata field a node proxy uses to ask for a pod's identity (Istio's name, case included).</summary>
    public const string ImpersonatedIdentityField = "ImpersonatedIdentity";

    private readonly CertificateAuthority _ca;
    private readonly NodeTokens _tokens;
    private readonly IWorkloadDirectory _directory;
    private readonly ILogger _logger;
    private readonly RootRotation? _rotation;

    /// <param name="rotation">Told of every leaf issued, so a root rotation knows when all are renewed.</param>
    public CertificateService(CertificateAuthority ca, NodeTokens tokens, IWorkloadDirectory directory, ILogger<CertificateService> logger, RootRotation? rotation = null)
    {
        _rotation = rotation;
        ArgumentNullException.ThrowIfNull(ca);
        ArgumentNullException.ThrowIfNull(tokens);
        ArgumentNullException.ThrowIfNull(directory);
        ArgumentNullException.ThrowIfNull(logger);
        _ca = ca;
        _tokens = tokens;
        _directory = directory;
        _logger = logger;
    }

    /// <summary>Authenticates the node, authorizes the impersonation, signs. Throws <see cref="CaRequestException"/>.</summary>
    public IstioCertificateResponse CreateCertificate(IstioCertificateRequest request, string? authorizationHeader)
    {
        ArgumentNullException.ThrowIfNull(request);
        var node = "(unauthenticated)";
        try
        {
            node = Authenticate(authorizationHeader);
            var identity = Authorize(node, request.Metadata);
            // Authorization comes before the CSR is parsed: refused callers cost no signature verification.
            IssuedCertificate issued;
            try
            {
                issued = _ca.IssueWorkloadCertificate(request.Csr, identity, TtlFromSeconds(request.ValidityDuration));
            }
            catch (Exception ex) when (ex is InvalidCsrException or InvalidTtlException)
            {
                throw new CaRequestException(CaErrorKind.InvalidArgument, ex.Message, ex);
            }
            CaLog.CertificateIssued(_logger, identity.ToString(), node, issued.SerialNumber, issued.NotAfter);
            _rotation?.LeafIssued(node, identity, issued.SignerGeneration);
            var response = new IstioCertificateResponse();
            response.CertChain.AddRange(issued.ChainPem);
            return response;
        }
        catch (CaRequestException ex)
        {
            CaLog.RequestRefused(_logger, ex.Kind, node, ex.Message);
            throw;
        }
    }

    private string Authenticate(string? authorizationHeader)
    {
        if (string.IsNullOrEmpty(authorizationHeader))
        {
            throw new CaRequestException(CaErrorKind.Unauthenticated, "missing 'authorization: Bearer <node token>' metadata");
        }
        if (!authorizationHeader.StartsWith("Bearer ", StringComparison.Ordinal))
        {
            throw new CaRequestException(CaErrorKind.Unauthenticated, "the authorization metadata must be 'Bearer <node token>'");
        }
        if (!_tokens.TryAuthenticate(authorizationHeader, out var node))
        {
            throw new CaRequestException(CaErrorKind.Unauthenticated, "the bearer token does not belong to any node");
        }
        return node;
    }

    private SpiffeId Authorize(string node, Struct? metadata)
    {
        if (metadata is null || !metadata.Fields.TryGetValue(ImpersonatedIdentityField, out var value))
        {
            throw new CaRequestException(CaErrorKind.Unauthenticated,
                $"node '{node}' asked for its own identity, but only pod identities are issued: put the pod's SPIFFE ID in " +
                $"metadata field '{ImpersonatedIdentityField}' (per-pod token authentication is not supported in local mode)");
        }
        if (value.KindCase != Value.KindOneofCase.StringValue)
        {
            throw new CaRequestException(CaErrorKind.InvalidArgument,
                $"metadata field '{ImpersonatedIdentityField}' must be a string SPIFFE ID, not {value.KindCase}");
        }
        if (!SpiffeId.TryParse(value.StringValue, out var identity, out var parseError))
        {
            throw new CaRequestException(CaErrorKind.InvalidArgument, $"metadata field '{ImpersonatedIdentityField}': {parseError}");
        }
        if (!string.Equals(identity.TrustDomain, _ca.TrustDomain, StringComparison.Ordinal))
        {
            throw new CaRequestException(CaErrorKind.Unauthenticated,
                $"node '{node}' may not obtain identity {identity}: trust domain '{identity.TrustDomain}' is not this CA's ('{_ca.TrustDomain}')");
        }
        if (!_directory.HasPodOnNode(node, identity))
        {
            throw new CaRequestException(CaErrorKind.Unauthenticated,
                $"node '{node}' may not obtain identity {identity}: no running pod with that service account on this node");
        }
        return identity;
    }

    // validity_duration is int64 seconds: range-checked here, before TimeSpan (which overflows near long.MaxValue).
    // 0 is the default; negative or above the maximum is INVALID_ARGUMENT, as Istio answers a TTL over its maximum.
    private static TimeSpan TtlFromSeconds(long seconds)
    {
        var maxSeconds = (long)CertificateAuthority.MaxTtl.TotalSeconds;
        if (seconds < 0)
        {
            throw new CaRequestException(CaErrorKind.InvalidArgument,
                $"validity_duration {seconds} is negative; send 0 for the default ({CertificateAuthority.DefaultTtl.TotalSeconds:F0} s) or 1..{maxSeconds} seconds");
        }
        if (seconds > maxSeconds)
        {
            throw new CaRequestException(CaErrorKind.InvalidArgument,
                $"validity_duration {seconds} s is greater than the max allowed {maxSeconds} s ({CertificateAuthority.MaxTtl.TotalDays:F0} days)");
        }
        return TimeSpan.FromSeconds(seconds);
    }
}

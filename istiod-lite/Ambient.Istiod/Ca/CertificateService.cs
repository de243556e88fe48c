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
    private readonly ICaCallerPolicy _policy;
    private readonly ILogger _logger;
    private readonly RootRotation? _rotation;

    /// <summary>Local mode: node tokens, pods on the caller's node.</summary>
    public CertificateService(CertificateAuthority ca, NodeTokens tokens, IWorkloadDirectory directory, ILogger<CertificateService> logger, RootRotation? rotation = null)
        : this(ca, new NodeTokenPolicy(tokens ?? throw new ArgumentNullException(nameof(tokens)), directory ?? throw new ArgumentNullException(nameof(directory))), logger, rotation)
    {
    }

    /// <param name="policy">Who the caller is and which identity it may obtain (node tokens or service-account tokens).</param>
    /// <param name="rotation">Told of every leaf issued, so a root rotation knows when all are renewed.</param>
    public CertificateService(CertificateAuthority ca, ICaCallerPolicy policy, ILogger<CertificateService> logger, RootRotation? rotation = null)
    {
        ArgumentNullException.ThrowIfNull(ca);
        ArgumentNullException.ThrowIfNull(policy);
        ArgumentNullException.ThrowIfNull(logger);
        _ca = ca;
        _policy = policy;
        _logger = logger;
        _rotation = rotation;
    }

    /// <summary>Authenticates the caller, authorizes the identity, signs. Throws <see cref="CaRequestException"/>.</summary>
    public async ValueTask<IstioCertificateResponse> CreateCertificateAsync(IstioCertificateRequest request, string? authorizationHeader, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(request);
        var callerName = "(unauthenticated)";
        try
        {
            var caller = await _policy.AuthenticateAsync(BearerToken(authorizationHeader), cancellationToken).ConfigureAwait(false);
            callerName = caller.Name;
            var identity = _policy.Authorize(caller, RequestedIdentity(caller, request.Metadata));
            // Authorization comes before the CSR is parsed: refused callers cost no signature verification.
            IssuedCertificate issued;
            try
            {
                issued = _ca.IssueWorkloadCertificate(request.Csr, identity, TtlFromSeconds(request.ValidityDuration), _policy.RefusesOtherCsrSans);
            }
            catch (CsrIdentityMismatchException ex)
            {
                throw new CaRequestException(_policy.DeniedKind, $"{caller.Name} may not obtain identity {identity} with this CSR: {ex.Message}", ex);
            }
            catch (Exception ex) when (ex is InvalidCsrException or InvalidTtlException)
            {
                throw new CaRequestException(CaErrorKind.InvalidArgument, ex.Message, ex);
            }
            CaLog.CertificateIssued(_logger, identity.ToString(), caller.Name, issued.SerialNumber, issued.NotAfter);
            _rotation?.LeafIssued(caller.Node ?? caller.Name, identity, issued.SignerGeneration);
            var response = new IstioCertificateResponse();
            response.CertChain.AddRange(issued.ChainPem);
            return response;
        }
        catch (CaRequestException ex)
        {
            CaLog.RequestRefused(_logger, ex.Kind, callerName, ex.Message);
            throw;
        }
    }

    private string BearerToken(string? authorizationHeader)
    {
        if (string.IsNullOrEmpty(authorizationHeader))
        {
            throw new CaRequestException(CaErrorKind.Unauthenticated, $"missing 'authorization: Bearer <{_policy.CredentialName}>' metadata");
        }
        if (!authorizationHeader.StartsWith("Bearer ", StringComparison.Ordinal) || authorizationHeader.Length == "Bearer ".Length)
        {
            throw new CaRequestException(CaErrorKind.Unauthenticated, $"the authorization metadata must be 'Bearer <{_policy.CredentialName}>'");
        }
        return authorizationHeader["Bearer ".Length..];
    }

    /// <summary>The ImpersonatedIdentity metadata field, parsed and in this CA's trust domain; null when absent.</summary>
    private SpiffeId? RequestedIdentity(CaCaller caller, Struct? metadata)
    {
        if (metadata is null || !metadata.Fields.TryGetValue(ImpersonatedIdentityField, out var value))
        {
            return null;
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
            throw new CaRequestException(_policy.DeniedKind,
                $"{Describe(caller)} may not obtain identity {identity}: trust domain '{identity.TrustDomain}' is not this CA's ('{_ca.TrustDomain}')");
        }
        return identity;
    }

    private static string Describe(CaCaller caller) => caller.ServiceAccount is null ? $"node '{caller.Name}'" : caller.Name;

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

using Ambient.Core.Protos.Ca;
using Grpc.Core;

namespace Ambient.Istiod.Ca;

/// <summary>
/// istio.v1.auth.IstioCertificateService/CreateCertificate on <see cref="CertificateService"/>: the bearer token from
/// the <c>authorization</c> metadata, and a refused request as its gRPC status with a message safe for the caller.
/// </summary>
internal sealed class CertificateGrpcService(CertificateService service) : IstioCertificateService.IstioCertificateServiceBase
{
    public override async Task<IstioCertificateResponse> CreateCertificate(IstioCertificateRequest request, ServerCallContext context)
    {
        try
        {
            return await service.CreateCertificateAsync(request, context.RequestHeaders.GetValue("authorization"), context.CancellationToken).ConfigureAwait(false);
        }
        catch (CaRequestException e)
        {
            throw new RpcException(new Status((StatusCode)e.GrpcStatusCode, e.Message));
        }
    }
}

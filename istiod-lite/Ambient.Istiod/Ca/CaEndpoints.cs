using Ambient.Core.Grpc;
using Ambient.Core.Protos.Ca;

namespace Ambient.Istiod.Ca;

/// <summary>Maps istio.v1.auth.IstioCertificateService/CreateCertificate onto <see cref="CertificateService"/>.</summary>
internal static class CaEndpoints
{
    public const string CreateCertificatePath = "/istio.v1.auth.IstioCertificateService/CreateCertificate";

    public static IEndpointConventionBuilder MapCertificateService(this IEndpointRouteBuilder endpoints)
    {
        return endpoints.MapGrpcUnary<IstioCertificateRequest, IstioCertificateResponse>(
            CreateCertificatePath,
            IstioCertificateRequest.Parser,
            (request, context) =>
            {
                var service = context.HttpContext.RequestServices.GetRequiredService<CertificateService>();
                try
                {
                    return Task.FromResult(service.CreateCertificate(request, context.GetMetadata("authorization")));
                }
                catch (CaRequestException e)
                {
                    throw new GrpcException((GrpcStatusCode)e.GrpcStatusCode, e.Message);
                }
            });
    }
}

using Ambient.Core.Grpc;
using Ambient.Core.Protos.Discovery;
using Ambient.Istiod.Ca;

namespace Ambient.Istiod.Discovery;

/// <summary>Maps the delta ADS RPC; callers authenticate with their node token like on the CA.</summary>
internal static class DiscoveryEndpoints
{
    public const string DeltaAdsPath = "/envoy.service.discovery.v3.AggregatedDiscoveryService/DeltaAggregatedResources";

    public static IEndpointConventionBuilder MapWorkloadDiscovery(this IEndpointRouteBuilder endpoints)
    {
        return endpoints.MapGrpcDuplex<DeltaDiscoveryRequest, DeltaDiscoveryResponse>(
            DeltaAdsPath,
            DeltaDiscoveryRequest.Parser,
            async (requests, writer, context) =>
            {
                var services = context.HttpContext.RequestServices;
                var tokens = services.GetRequiredService<NodeTokens>();
                if (!tokens.TryAuthenticate(context.GetMetadata("authorization"), out var node))
                {
                    throw new GrpcException(GrpcStatusCode.Unauthenticated,
                        "workload discovery needs 'authorization: Bearer <node token>' (local mode: <state>/tokens/<node>.token)");
                }
                var logger = services.GetRequiredService<ILoggerFactory>().CreateLogger("Ambient.Istiod.Discovery");
                var session = new DeltaXdsSession(services.GetRequiredService<DiscoveryState>(), logger, node, context.Peer);
                await session.RunAsync(requests, writer, context.CancellationToken).ConfigureAwait(false);
            });
    }
}

using System.Net;
using Ambient.Core.Model;
using Ambient.Dataplane.State;

namespace Ambient.Waypoint.Forwarding;

/// <summary>
/// Picks the pod a request or TCP tunnel goes to, with the same lookups as a ztunnel (<see cref="ProxyState"/>:
/// healthy endpoints of the Service, round robin, the endpoint's target port). The waypoint resolves as its own
/// workload, so a Service whose waypoint is this one is not sent back here.
/// </summary>
internal sealed class EndpointPicker(ProxyState state, IPAddress ownAddress)
{
    public ProxyState State => state;

    /// <summary>This waypoint's workload in the current snapshot (null until istiod lists it).</summary>
    public WorkloadInfo? Self => state.FindWorkloadByAddress(ownAddress);

    /// <summary>An endpoint of <paramref name="service"/> for service port <paramref name="port"/>.</summary>
    public DestinationResult Pick(ServiceInfo service, int port) =>
        Check(service.Vips.IsEmpty
            ? state.ResolveDestination(Self, service.Hostname, port)
            : state.ResolveDestination(Self, service.Vips[0], port));

    /// <summary>Where a tunnel addressed to <paramref name="target"/> (a Service VIP or a pod) goes.</summary>
    public DestinationResult Pick(IPEndPoint target) => Check(state.ResolveDestination(Self, target.Address, target.Port));

    private static DestinationResult Check(DestinationResult result)
    {
        // Only when this waypoint is missing from the snapshot would the lookup point at a waypoint again: never loop.
        if (result.Destination is { Route: RouteKind.Waypoint } loop)
        {
            return DestinationResult.Fail(ResolveFailure.NoHealthyEndpoint,
                $"{loop.Authority} is reached through a waypoint again (this waypoint is not in the snapshot yet)");
        }
        return result;
    }
}

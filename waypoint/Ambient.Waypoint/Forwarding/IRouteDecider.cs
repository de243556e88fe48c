using Ambient.Core.Model;
using Ambient.Waypoint.Inbound;
using Microsoft.AspNetCore.Http;

namespace Ambient.Waypoint.Forwarding;

/// <summary>Where one request goes: a Service of the mesh and its port (the endpoint is picked after).</summary>
internal readonly record struct RouteDecision(ServiceInfo Service, int Port);

/// <summary>
/// The seam where HTTPRoute matching plugs in: given a request that arrived through a tunnel addressed to
/// <c>addressed</c> (null when the tunnel named a pod rather than a Service), decide its backend. Null sends it to
/// the tunnel's original target as it is.
/// </summary>
internal interface IRouteDecider
{
    RouteDecision? Decide(HttpContext context, IHboneTunnelFeature tunnel, ServiceInfo? addressed);
}

/// <summary>No HTTPRoute applies: the request goes to the Service it was addressed to (Istio's default).</summary>
internal sealed class AddressedServiceRouteDecider : IRouteDecider
{
    public static readonly AddressedServiceRouteDecider Instance = new();

    public RouteDecision? Decide(HttpContext context, IHboneTunnelFeature tunnel, ServiceInfo? addressed) =>
        addressed is null ? null : new RouteDecision(addressed, tunnel.OriginalTarget.Port);
}

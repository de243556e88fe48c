using System.Net;
using Ambient.Core.Model;
using Ambient.Waypoint.State;

namespace Ambient.Waypoint.Inbound;

/// <summary>
/// Which Services this waypoint serves: those istiod binds to it, i.e. whose <c>waypoint</c> (GatewayAddress) names
/// this waypoint (its address, or a Service this waypoint is an endpoint of), or for which istiod sent
/// ServiceProtocols (it sends them only for served Services). Traffic for anything else is refused (no open relay).
/// </summary>
internal sealed class ServedServices(WaypointConfig config, IPAddress ownAddress)
{
    public bool Serves(MeshSnapshot snapshot, ServiceInfo service) =>
        config.HasProtocols(service.Namespace, service.Hostname) || NamesThisWaypoint(snapshot, service.Waypoint);

    public bool Serves(MeshSnapshot snapshot, WorkloadInfo workload) => NamesThisWaypoint(snapshot, workload.Waypoint);

    private bool NamesThisWaypoint(MeshSnapshot snapshot, GatewayInfo? waypoint)
    {
        if (waypoint is null)
        {
            return false;
        }
        if (waypoint.Address is { } address)
        {
            return address.Equals(ownAddress);
        }
        if (waypoint.Host is { } host && snapshot.FindServiceByKey(host.ToString()) is { } waypointService)
        {
            foreach (var endpoint in snapshot.EndpointsOf(waypointService))
            {
                if (endpoint.Workload.Addresses.Contains(ownAddress))
                {
                    return true;
                }
            }
        }
        return false;
    }
}

using System.Collections.Concurrent;
using System.Collections.Immutable;
using Ambient.Core.Model;
using Ambient.Core.Protos.Waypoint;
using Ambient.Waypoint.State;

namespace Ambient.Waypoint.Routing;

/// <summary>
/// The route table the request path reads: rebuilt whole from <see cref="WaypointConfig"/>'s HTTPRoutes on every
/// change (on the xDS read loop) and swapped in, so a request sees one consistent table and never locks. Routes bound
/// to the waypoint's own Gateway apply as well as Service (GAMMA) routes.
/// </summary>
internal sealed class LiveRouteTable
{
    private readonly GatewayTarget _gateway;
    private readonly IRouteRandom _random;
    // ns/name -> the Service's snapshot key, so resolving a backendRef allocates nothing after its first request.
    private readonly ConcurrentDictionary<(string Namespace, string Name), string> _serviceKeys = new();
    private RouteTable _table = RouteTable.Empty;

    public LiveRouteTable(WaypointConfig config, GatewayTarget gateway, IRouteRandom? random = null)
    {
        _gateway = gateway;
        _random = random ?? SharedRouteRandom.Instance;
        Rebuild(config.Routes);
        config.RoutesChanged += Rebuild;
    }

    public RouteTable Current => Volatile.Read(ref _table);

    private void Rebuild(ImmutableDictionary<string, HTTPRoute> routes) =>
        Volatile.Write(ref _table, RouteTable.Build(routes.Values, _gateway, _random));

    /// <summary>The mesh Service a backendRef names, or null when the snapshot has no such Service.</summary>
    public ServiceInfo? Resolve(MeshSnapshot snapshot, BackendTarget backend)
    {
        var key = _serviceKeys.GetOrAdd((backend.Namespace, backend.Name), static (k, suffix) =>
            k.Namespace + "/" + ServiceInfo.KubernetesHostname(k.Name, k.Namespace, suffix), snapshot.Options.DomainSuffix);
        return snapshot.FindServiceByKey(key);
    }
}

using System.Net;
using Ambient.Core.Model;
using Ambient.Ctl.Local;

namespace Ambient.Ctl.Waypoints;

/// <summary>Whether a waypoint serves now, and if not, why (for `waypoint status` and `apply --wait`).</summary>
internal interface IWaypointReadiness
{
    Task<(bool Serving, string Reason)> CheckAsync(string @namespace, string name, CancellationToken ct);
}

/// <summary>
/// Readiness from the running local mesh: the supervisor records each waypoint process in the state file (kind
/// <c>waypoint</c>, with the waypoint's pod, <see cref="WaypointPlacement.PodNameFor"/>, as its pod record); it serves
/// once its process is up and its HBONE listener (the Gateway's <c>mesh</c> listener, 15008) accepts connections.
/// When istiod-lite publishes waypoint status on its debug endpoint, a source reading that can replace this one.
/// </summary>
internal sealed class LocalStateWaypointReadiness(Func<LocalState?> readState, Func<IPEndPoint, Task<bool>> canConnect) : IWaypointReadiness
{
    public static LocalStateWaypointReadiness Default { get; } = new(() => LocalState.Read(out _), LocalMesh.CanConnectAsync);

    public async Task<(bool Serving, string Reason)> CheckAsync(string @namespace, string name, CancellationToken ct)
    {
        var state = readState();
        if (state is null) return (false, "no local mesh is running");
        var component = Find(state, @namespace, name);
        if (component is null) return (false, "the local mesh runs no process for it yet");
        if (component.Pid <= 0) return (false, $"its process is not running (restarts: {component.Restarts}; log: {component.Log})");
        if (component.Address is { } address && IPAddress.TryParse(address, out var ip)
            && !await canConnect(new IPEndPoint(ip, WaypointSpec.HbonePort)).ConfigureAwait(false))
        {
            return (false, $"its HBONE listener {address}:{WaypointSpec.HbonePort} does not accept connections yet");
        }
        return (true, $"process {component.Pid}" + (component.Address is null ? "" : $" on {component.Address}:{WaypointSpec.HbonePort}"));
    }

    internal static ComponentRecord? Find(LocalState state, string @namespace, string name)
    {
        foreach (var c in state.Components)
        {
            if (c.Kind != "waypoint") continue;
            if (c.Name == $"waypoint-{@namespace}-{name}"
                || (c.Pod is { } p && p.Namespace == @namespace && (p.Name == name || p.Name == WaypointPlacement.PodNameFor(@namespace, name))))
            {
                return c;
            }
        }
        return null;
    }
}

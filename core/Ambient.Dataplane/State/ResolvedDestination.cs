using System.Net;
using System.Net.Sockets;
using Ambient.Core;
using Ambient.Core.Model;

namespace Ambient.Dataplane.State;

/// <summary>Why a destination cannot be reached; the proxy refuses the connection and logs this.</summary>
internal enum ResolveFailure
{
    None = 0,

    /// <summary>A hostname that names no service in the mesh (IPs never fail this way: unknown IPs pass through).</summary>
    UnknownHost,

    /// <summary>The service has no healthy endpoint that can serve the port, or its waypoint has none.</summary>
    NoHealthyEndpoint,

    /// <summary>The service does not expose the port, or no endpoint declares the named target port.</summary>
    PortNotExposed,
}

/// <summary>How an outbound connection is carried.</summary>
internal enum RouteKind
{
    /// <summary>Plain TCP to <see cref="ResolvedDestination.Target"/>: an address outside the mesh (passthrough) or a
    /// workload that is not enrolled.</summary>
    Plain,

    /// <summary>HBONE to the destination pod's HBONE port, <c>:authority</c> = pod IP:target port.</summary>
    Hbone,

    /// <summary>HBONE to the waypoint of the addressed service or workload, <c>:authority</c> = the original target
    /// (service VIP:port or pod IP:port, as the app addressed it); the waypoint picks the endpoint.</summary>
    Waypoint,

    /// <summary>HBONE to the network gateway in front of a workload on another network, <c>:authority</c> = the
    /// target on that network.</summary>
    NetworkGateway,
}

/// <summary>How the proxy should carry one outbound connection.</summary>
/// <param name="Route">Plain TCP, HBONE to the pod, or HBONE through a waypoint or network gateway.</param>
/// <param name="Workload">The workload that terminates the connection as seen from here: the destination pod, or the
/// waypoint / gateway pod the tunnel goes to; null for passthrough to an address outside the mesh.</param>
/// <param name="Target">Where the bytes go in the end: the pod IP and target port, or the original target (service
/// VIP:port, pod IP:port) when a waypoint or gateway picks the endpoint. A service named by hostname that has no VIP
/// has no address to give: its port with <see cref="IPAddress.None"/> (the <see cref="Authority"/> names it).</param>
/// <param name="TunnelEndpoint">Where HBONE dials (pod IP:15008, or the waypoint's / gateway's address and HBONE
/// port); null for <see cref="RouteKind.Plain"/>.</param>
/// <param name="ExpectedIdentity">The SPIFFE URI the tunnel's peer must present (HBONE only).</param>
/// <param name="Service">The service that was addressed (for metrics and <c>forwarded: host=</c>), if any.</param>
internal sealed record ResolvedDestination(
    RouteKind Route,
    WorkloadInfo? Workload,
    IPEndPoint Target,
    IPEndPoint? TunnelEndpoint,
    string? ExpectedIdentity,
    ServiceInfo? Service)
{
    /// <summary>The HBONE CONNECT <c>:authority</c>: <see cref="Target"/> as <c>ip:port</c> (<c>[v6]:port</c>), unless
    /// a waypoint is addressed by a service name with no VIP (<c>hostname:port</c>, as Istio sends for hostname targets).</summary>
    public string Authority { get; init; } = FormatAuthority(Target);

    /// <summary>True when the connection is tunnelled (mutual TLS CONNECT to <see cref="TunnelEndpoint"/>).</summary>
    public bool UseHbone => Route != RouteKind.Plain;

    /// <summary>True when the address is not in the mesh at all and the connection goes straight to it.</summary>
    public bool IsPassthrough => Workload is null;

    /// <summary>Plain TCP to <paramref name="target"/>; <paramref name="workload"/> is null for an address outside the mesh.</summary>
    public static ResolvedDestination Plain(WorkloadInfo? workload, IPEndPoint target, ServiceInfo? service) =>
        new(RouteKind.Plain, workload, target, null, null, service);

    /// <summary>HBONE to the enrolled <paramref name="workload"/>'s own HBONE port.</summary>
    public static ResolvedDestination Direct(WorkloadInfo workload, IPEndPoint target, ServiceInfo? service) =>
        new(RouteKind.Hbone, workload, target, new IPEndPoint(target.Address, MeshPorts.Hbone), workload.Identity, service);

    public static string FormatAuthority(IPEndPoint endpoint) =>
        endpoint.AddressFamily == AddressFamily.InterNetworkV6 ? $"[{endpoint.Address}]:{endpoint.Port}" : $"{endpoint.Address}:{endpoint.Port}";
}

/// <summary>The outcome of <see cref="ProxyState.ResolveDestination(WorkloadInfo?, string, int)"/>: a destination, or why there is none.</summary>
internal readonly record struct DestinationResult(ResolvedDestination? Destination, ResolveFailure Failure, string? Error)
{
    public bool Succeeded => Destination is not null;

    public static DestinationResult Ok(ResolvedDestination destination) => new(destination, ResolveFailure.None, null);

    public static DestinationResult Fail(ResolveFailure failure, string error) => new(null, failure, error);
}

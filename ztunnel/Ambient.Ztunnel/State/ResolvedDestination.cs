using System.Net;
using Ambient.Core.Model;

namespace Ambient.Ztunnel.State;

/// <summary>Why a destination cannot be reached; the proxy refuses the connection and logs this.</summary>
internal enum ResolveFailure
{
    None = 0,

    /// <summary>A hostname that names no service in the mesh (IPs never fail this way: unknown IPs pass through).</summary>
    UnknownHost,

    /// <summary>The service has no healthy endpoint that can serve the port.</summary>
    NoHealthyEndpoint,

    /// <summary>The service does not expose the port, or no endpoint declares the named target port.</summary>
    PortNotExposed,
}

/// <summary>How the proxy should carry one outbound connection.</summary>
/// <param name="Workload">The chosen destination workload; null for passthrough to an address outside the mesh.</param>
/// <param name="Target">Where the bytes go: the pod IP and target port (the HBONE <c>:authority</c> when tunnelling).</param>
/// <param name="UseHbone">True when the destination runs in the mesh: mTLS CONNECT to <see cref="TunnelEndpoint"/>.</param>
/// <param name="ExpectedIdentity">The SPIFFE URI the destination must present (HBONE only).</param>
/// <param name="Service">The service that was addressed (for metrics and <c>forwarded: host=</c>), if any.</param>
internal sealed record ResolvedDestination(
    WorkloadInfo? Workload,
    IPEndPoint Target,
    bool UseHbone,
    string? ExpectedIdentity,
    ServiceInfo? Service)
{
    /// <summary>The HBONE port every in-mesh pod listens on.</summary>
    public const int HbonePort = ZtunnelPorts.Hbone;

    /// <summary>True when the address is not in the mesh at all and the connection goes straight to it.</summary>
    public bool IsPassthrough => Workload is null;

    /// <summary>destination pod IP:15008 when <see cref="UseHbone"/>; otherwise null.</summary>
    public IPEndPoint? TunnelEndpoint => UseHbone ? new IPEndPoint(Target.Address, HbonePort) : null;
}

/// <summary>The outcome of <see cref="ProxyState.ResolveDestination"/>: a destination, or why there is none.</summary>
internal readonly record struct DestinationResult(ResolvedDestination? Destination, ResolveFailure Failure, string? Error)
{
    public bool Succeeded => Destination is not null;

    public static DestinationResult Ok(ResolvedDestination destination) => new(destination, ResolveFailure.None, null);

    public static DestinationResult Fail(ResolveFailure failure, string error) => new(null, failure, error);
}

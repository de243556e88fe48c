using System.Net;
using System.Security.Cryptography.X509Certificates;
using Ambient.Hbone.Telemetry;

namespace Ambient.Hbone.Server;

/// <summary>
/// Where the inbound listener gets its certificates and how it judges a peer's. The ztunnel's cert manager and
/// TrustBundle implement it; the server never caches a certificate itself, so a renewed one is used by the next
/// handshake without a restart.
/// </summary>
internal interface IInboundIdentity
{
    /// <summary>Current cert (with private key) + chain for the workload that owns this listener address; null if none yet.</summary>
    X509Certificate2? GetServerCertificate(IPAddress listenerAddress, out X509Certificate2Collection? chain);

    /// <summary>Validate the client's certificate chain; return the peer's SPIFFE identity string, or null + reason.</summary>
    string? ValidateClient(X509Certificate2 clientCert, X509Chain? chain, out string? failureReason);
}

/// <summary>
/// The proxy's policy for CONNECT targets, asked in this order: a hostname authority is resolved to a local workload
/// (<see cref="ResolveServiceTarget"/>), then the target must not be one of the mesh's own endpoints
/// (<see cref="Refusal"/>), must be served by this listener (<see cref="IsServedTarget"/>, no open relay) and the peer
/// must be allowed to reach it (<see cref="IsAllowed"/>). The server answers 400 (with the reason) or 401 itself.
/// </summary>
internal interface IInboundTargets
{
    /// <summary>
    /// A <c>host:port</c> authority naming a service (a waypoint or a sandwiched ztunnel is sent the service name):
    /// the endpoint of a workload of that service served by this listener, for service port <paramref name="port"/>;
    /// or null and why not (unknown hostname, no local endpoint, no such port), answered 400.
    /// </summary>
    IPEndPoint? ResolveServiceTarget(IPAddress listenerAddress, string hostname, int port, out string? refusal);

    /// <summary>Null when a tunnel may go to <paramref name="target"/>; otherwise why not (the proxy's own listeners,
    /// its control plane), answered 400 whatever the address.</summary>
    string? Refusal(IPEndPoint target);

    /// <summary>Is ip:port a target this listener serves (a workload at that address on THIS listener)? (no open relay)</summary>
    bool IsServedTarget(IPAddress listenerAddress, IPEndPoint target);

    /// <summary>
    /// Authorization hook, asked once per served CONNECT before anything is sent to the target: may this tunnel
    /// (authenticated peer, source, target) go ahead? false -> 401, and <paramref name="denial"/> (which policy
    /// refused it) goes to the access log.
    /// </summary>
    bool IsAllowed(InboundConnectionInfo info, out string? denial);
}

/// <summary>Told when the server accepts a connection and when that connection ends (the ztunnel gives memory back to
/// the OS after a burst of them). Called from accept and connection threads; must not block.</summary>
internal interface IInboundConnectionCounter
{
    void Opened();

    void Closed();
}

/// <summary>
/// One accepted CONNECT whose target is served here. <see cref="Source"/> is the TCP peer of the HBONE connection
/// (the source ztunnel or waypoint); the original client address, if any, is in <see cref="Forwarded"/>.
/// </summary>
internal sealed record InboundConnectionInfo(
    string PeerIdentity,
    IPEndPoint Source,
    IPEndPoint Destination,
    IPAddress ListenerAddress,
    string? Forwarded,
    string? Baggage,
    string? TraceParent,
    DateTimeOffset StartedAt);

/// <summary>
/// Metrics/event seam. ConnectionOpened is reported for every CONNECT whose target is served here, once its outcome
/// (200, 401 or 503) is known, so the observer can count it under its final response flags; ConnectionClosed
/// follows it once (a tunnel aborted before any outcome gets only ConnectionClosed, with DOWNSTREAM_RESET).
/// Calls come from connection threads and must not block.
/// </summary>
internal interface IInboundObserver
{
    /// <param name="responseFlags">the outcome known at this point: <see cref="ResponseFlags.None"/> (200), <see cref="ResponseFlags.Deny"/> (401) or <see cref="ResponseFlags.Connect"/> (503).</param>
    void ConnectionOpened(InboundConnectionInfo info, string responseFlags);

    /// <param name="responseFlags">one of <see cref="ResponseFlags"/>: None, Deny (401), Connect (503 upstream connect failed), UpstreamReset/DownstreamReset (tunnel torn down).</param>
    void ConnectionClosed(InboundConnectionInfo info, long bytesIn, long bytesOut, string responseFlags);

    /// <summary>A TLS handshake on an inbound listener failed; only that connection was closed.</summary>
    void TlsFailure(IPEndPoint remote, string reason);

    /// <summary>Names the tunnel's ends for its access log line; "-" where the observer does not know them.</summary>
    InboundPeers Describe(InboundConnectionInfo info) => InboundPeers.Unknown;
}

/// <summary>The workloads and service at the ends of an inbound tunnel, as the access log names them.</summary>
internal readonly record struct InboundPeers(string SourceWorkload, string DestinationWorkload, string DestinationIdentity, string DestinationService)
{
    public static InboundPeers Unknown => new(AccessLogEntry.Unknown, AccessLogEntry.Unknown, AccessLogEntry.Unknown, AccessLogEntry.Unknown);
}

internal sealed class NullInboundObserver : IInboundObserver
{
    public static readonly NullInboundObserver Instance = new();

    public void ConnectionOpened(InboundConnectionInfo info, string responseFlags) { }

    public void ConnectionClosed(InboundConnectionInfo info, long bytesIn, long bytesOut, string responseFlags) { }

    public void TlsFailure(IPEndPoint remote, string reason) { }
}

/// <summary>
/// For a proxy that terminates tunnels itself (a waypoint reads the HTTP inside) instead of relaying them to the
/// target over TCP. Asked only for a CONNECT that passed every check of <see cref="IInboundTargets"/>.
/// </summary>
internal interface IInboundTunnelHandler
{
    /// <summary>
    /// Serves one accepted tunnel to its end: answers the CONNECT (200, or e.g. 503 when it cannot be served), then
    /// carries the stream. The caller disposes the stream after this returns. Must not throw for a peer's behaviour.
    /// </summary>
    ValueTask<InboundTunnelResult> ServeAsync(InboundConnectionInfo info, HboneStream stream, CancellationToken aborted);
}

/// <summary>How a tunnel served by an <see cref="IInboundTunnelHandler"/> ended, for the access log and metrics.</summary>
/// <param name="ResponseFlags">One of <see cref="Telemetry.ResponseFlags"/>.</param>
internal readonly record struct InboundTunnelResult(string ResponseFlags, long BytesIn, long BytesOut);

using System.Net;
using Ambient.Ztunnel.Proxy.Relay;

namespace Ambient.Ztunnel.Proxy.Outbound;

/// <summary>
/// Where the app wanted to go, as a front door learned it: exactly one of <see cref="Address"/> (a SOCKS5 IP
/// request, a captured connection's original destination) and <see cref="Host"/> (a SOCKS5 domain name request).
/// </summary>
internal readonly record struct OriginalDestination(IPAddress? Address, string? Host, int Port)
{
    public override string ToString() => Address is not null
        ? new IPEndPoint(Address, Port).ToString()
        : $"{Host}:{Port}";
}

/// <summary>
/// The front door's side of one outbound connection: the app's stream and the protocol step between "connected"
/// and "relaying". The outbound proxy owns everything else. Transparent capture can use this class as it is (the app
/// believes it is already connected, so there is nothing to answer); SOCKS5 overrides <see cref="OnConnectedAsync"/>
/// to send its success reply and forward the bytes the app sent behind its request.
/// </summary>
internal class OutboundClient(IPEndPoint remoteEndPoint, Stream stream)
{
    /// <summary>The app's address (<c>forwarded: for=</c>, the access log's <c>src.addr</c>).</summary>
    public IPEndPoint RemoteEndPoint { get; } = remoteEndPoint;

    /// <summary>The app's bytes, both ways. The front door owns and disposes it.</summary>
    public Stream Stream { get; } = stream;

    /// <summary>How to half-close towards the app when the destination finishes sending; null lets
    /// <see cref="BidirectionalRelay"/> pick by stream type (a NetworkStream is shut down for sending).</summary>
    public virtual Func<ValueTask>? CompleteWrites => null;

    /// <summary>True once <see cref="OnConnectedAsync"/> was called: the front door has said "connected" and must not
    /// answer again whatever the outcome.</summary>
    public bool Connected { get; private set; }

    /// <summary>
    /// Called once the upstream is connected and before any byte is relayed. Bytes written to
    /// <paramref name="upstream"/> here are counted as the app's. A throw ends the connection as a downstream reset.
    /// </summary>
    /// <param name="bound">The local address of a plain TCP upstream; null for a tunnel.</param>
    public ValueTask ConnectedAsync(Stream upstream, IPEndPoint? bound, CancellationToken cancellationToken)
    {
        Connected = true;
        return OnConnectedAsync(upstream, bound, cancellationToken);
    }

    protected virtual ValueTask OnConnectedAsync(Stream upstream, IPEndPoint? bound, CancellationToken cancellationToken) => ValueTask.CompletedTask;
}

/// <summary>Why an outbound connection was not carried, in no front door's terms; each front door maps it to its
/// own answer (a SOCKS5 reply code; for transparent capture, a reset).</summary>
internal enum OutboundError
{
    /// <summary>Connected and relayed; the relay's own ending is in <see cref="OutboundResult.Flags"/>.</summary>
    None = 0,

    /// <summary>Nothing routable: a host that names no service, or a service (or its waypoint) with no healthy endpoint.</summary>
    NoRoute,

    /// <summary>The service does not expose the port, or no endpoint declares its target port.</summary>
    PortNotExposed,

    /// <summary>The destination is one of the mesh's own endpoints (a ztunnel port, istiod).</summary>
    MeshEndpoint,

    /// <summary>The source workload is not (or no longer) in the mesh, so it has no identity to tunnel with.</summary>
    SourceNotInMesh,

    /// <summary>The tunnel's peer refused by policy (HBONE 401).</summary>
    Denied,

    /// <summary>The destination actively refused the TCP connection.</summary>
    ConnectionRefused,

    /// <summary>The destination could not be reached: timeout, no route, a failed tunnel or a non-200 CONNECT answer.</summary>
    Unreachable,
}

/// <summary>The outcome of <see cref="IOutboundProxy.ProxyAsync"/>.</summary>
/// <param name="Flags">One of <see cref="Ambient.Core.Telemetry.ResponseFlags"/>, as the metrics and access log have it.</param>
/// <param name="BytesSent">Bytes from the app to the destination.</param>
/// <param name="BytesReceived">Bytes from the destination to the app.</param>
internal readonly record struct OutboundResult(OutboundError Error, string Flags, long BytesSent, long BytesReceived);

/// <summary>The one outbound entry point every front door (SOCKS5 today, transparent capture next) calls.</summary>
internal interface IOutboundProxy
{
    /// <summary>
    /// Carries one connection from the workload at <paramref name="source"/> to <paramref name="destination"/>:
    /// resolves, connects, calls <see cref="OutboundClient.ConnectedAsync"/>, relays until both directions are done,
    /// then counts and logs it. Returns when the connection is over.
    /// </summary>
    ValueTask<OutboundResult> ProxyAsync(IPAddress source, OutboundClient client, OriginalDestination destination, CancellationToken cancellationToken);
}

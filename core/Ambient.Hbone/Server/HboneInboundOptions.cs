using System.Net;
using System.Net.Sockets;

namespace Ambient.Hbone.Server;

/// <summary>Settings of the inbound HBONE server. Defaults are Istio's.</summary>
internal sealed record HboneInboundOptions
{
    /// <summary>The HBONE port (Istio's): where a proxy's HBONE server listens and where clients dial it.</summary>
    public const int DefaultPort = 15008;

    /// <summary>Port every workload listener binds; 0 picks a free port per listener (tests).</summary>
    public int Port { get; init; } = DefaultPort;

    /// <summary>Upstream (workload) connect timeout; on expiry the CONNECT gets 503.</summary>
    public TimeSpan ConnectTimeout { get; init; } = TimeSpan.FromSeconds(10);

    /// <summary>A client that has not finished the TLS handshake by then is dropped.</summary>
    public TimeSpan HandshakeTimeout { get; init; } = TimeSpan.FromSeconds(10);

    /// <summary>
    /// Opens the upstream socket to the workload. Null = a plain socket connect. The node proxy replaces it when
    /// upstream sockets need SO_MARK or must be created inside the pod's network namespace.
    /// </summary>
    public Func<IPEndPoint, CancellationToken, ValueTask<Socket>>? ConnectUpstream { get; init; }

    /// <summary>
    /// Serves accepted tunnels in place of the TCP relay to the target (<see cref="ConnectUpstream"/> is then unused).
    /// Null = relay (a ztunnel); a waypoint terminates each tunnel itself.
    /// </summary>
    public IInboundTunnelHandler? TunnelHandler { get; init; }

    /// <summary>On dispose, how long open tunnels get to finish before they are cut.</summary>
    public TimeSpan DrainTimeout { get; init; } = TimeSpan.FromSeconds(5);

    /// <summary>
    /// Rapid-reset guard (CVE-2023-44487): an HBONE connection whose client has reset this many CONNECT streams
    /// before their tunnel was up, and more than half of all its streams, is closed with GOAWAY ENHANCE_YOUR_CALM.
    /// </summary>
    public int MaxPrematureResets { get; init; } = 100;

    /// <summary>
    /// HTTP/2 settings of every inbound connection: 200 concurrent streams (Istio's server side), windows and frame
    /// limits as the client's, and the rapid-reset threshold from <see cref="MaxPrematureResets"/>.
    /// </summary>
    public HboneClientOptions Http2 => new()
    {
        MaxStreamsPerConnection = 200,
        MaxPrematureResets = MaxPrematureResets,
        PingInterval = PingInterval,
        PingTimeout = PingTimeout,
        IdleTimeout = IdleTimeout,
    };

    /// <summary>An inbound connection with no tunnel for this long is closed (GOAWAY). Longer than the client pool's
    /// own 5 minutes, so normally the client, which knows when it wants the connection again, closes first.</summary>
    public TimeSpan IdleTimeout { get; init; } = TimeSpan.FromMinutes(10);

    /// <summary>Keepalive PING interval on inbound connections.</summary>
    public TimeSpan PingInterval { get; init; } = TimeSpan.FromSeconds(10);

    /// <summary>An inbound connection whose client does not answer a PING within this time is closed.</summary>
    public TimeSpan PingTimeout { get; init; } = TimeSpan.FromSeconds(20);

    /// <summary>Listen backlog of each workload listener.</summary>
    public int Backlog { get; init; } = 512;
}

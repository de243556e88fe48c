namespace Ambient.Core;

/// <summary>
/// The mesh's port numbers, as Istio's: a ztunnel's in-pod ports and its node-wide admin ports, and istiod's two.
/// The one definition of each: ztunnel's listeners and its tunnel-destination check, istiod-lite's defaults and
/// ambientctl's local mesh all take them from here, so adding a ztunnel listener here also closes it to tunnels.
/// </summary>
internal static class MeshPorts
{
    /// <summary>Node-wide admin: /config_dump.</summary>
    public const int Admin = 15000;

    /// <summary>In the pod: transparent outbound capture (iptables REDIRECT).</summary>
    public const int OutboundCapture = 15001;

    /// <summary>In the pod: plaintext inbound capture.</summary>
    public const int InboundPlaintext = 15006;

    /// <summary>In the pod: HBONE (mutual TLS HTTP/2 CONNECT).</summary>
    public const int Hbone = Ambient.Hbone.Server.HboneInboundOptions.DefaultPort;

    /// <summary>Node-wide: Prometheus /metrics and /stats/prometheus.</summary>
    public const int Metrics = 15020;

    /// <summary>Node-wide: /healthz/ready.</summary>
    public const int Readiness = 15021;

    /// <summary>In the pod: the DNS proxy.</summary>
    public const int Dns = 15053;

    /// <summary>In the pod: SOCKS5 outbound.</summary>
    public const int Socks5 = 15080;

    /// <summary>istiod: CA and xDS (gRPC over TLS).</summary>
    public const int IstiodGrpc = 15012;

    /// <summary>istiod: plain HTTP monitoring and debug endpoints.</summary>
    public const int IstiodMonitoring = 15014;

    /// <summary>What listens on <paramref name="port"/> in a ztunnel with Istio's numbers, or null when none does.</summary>
    public static string? ListenerOn(int port) => port switch
    {
        Admin => "admin",
        OutboundCapture => "outbound capture",
        InboundPlaintext => "inbound plaintext",
        Hbone => "HBONE",
        Metrics => "metrics",
        Readiness => "readiness",
        Dns => "DNS",
        Socks5 => "SOCKS5",
        _ => null,
    };
}

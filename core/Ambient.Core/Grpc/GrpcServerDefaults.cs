using Microsoft.AspNetCore.Server.Kestrel.Core;

namespace Ambient.Core.Grpc;

/// <summary>Limits and Kestrel settings for serving gRPC, kept in one place so every server agrees.</summary>
internal static class GrpcServerDefaults
{
    /// <summary>Largest message either side accepts (gRPC's customary 4 MiB); bigger is RESOURCE_EXHAUSTED.</summary>
    public const int MaxMessageSize = 4 * 1024 * 1024;

    /// <summary>
    /// Applies gRPC-friendly HTTP/2 limits: Kestrel's default windows (768 KB stream / 1 MB connection) would
    /// make one 4 MiB message take several round trips, and xDS keeps one long-lived stream per proxy.
    /// Per-request body size / data-rate limits are lifted by the gRPC endpoints themselves.
    /// </summary>
    public static void ConfigureKestrel(KestrelServerOptions options)
    {
        ArgumentNullException.ThrowIfNull(options);
        var http2 = options.Limits.Http2;
        http2.InitialStreamWindowSize = MaxMessageSize + 1024;
        http2.InitialConnectionWindowSize = 4 * (MaxMessageSize + 1024);
        http2.MaxStreamsPerConnection = 1000;
        // Detect dead peers of idle streams (a node proxy vanishing without FIN).
        http2.KeepAlivePingDelay = TimeSpan.FromSeconds(30);
        http2.KeepAlivePingTimeout = TimeSpan.FromSeconds(20);
    }

    /// <summary>Listener protocols for gRPC: HTTP/2 only (prior knowledge on plaintext, ALPN h2 on TLS).</summary>
    public static void ConfigureListen(ListenOptions listenOptions)
    {
        ArgumentNullException.ThrowIfNull(listenOptions);
        listenOptions.Protocols = HttpProtocols.Http2;
    }
}

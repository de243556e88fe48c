using System.Net.Sockets;
using Ambient.Hbone.Http2;

namespace Ambient.Hbone;

/// <summary>
/// HBONE connection settings. Defaults are Istio ztunnel's; tests shorten the timers. The HTTP/2 ones apply to both
/// roles (a server advertises <see cref="MaxStreamsPerConnection"/> as SETTINGS_MAX_CONCURRENT_STREAMS); the dial and
/// pool ones only to the client. Immutable: a change builds a new pool.
/// </summary>
internal sealed record HboneClientOptions
{
    /// <summary>Our cap on streams per pooled connection; the effective limit is min(this, peer's MAX_CONCURRENT_STREAMS).</summary>
    public int MaxStreamsPerConnection { get; init; } = 100;

    /// <summary>SETTINGS_INITIAL_WINDOW_SIZE we advertise: how much one tunnel may have in flight towards us, which is
    /// also how much a slow local reader can leave buffered per tunnel. 1 MiB keeps a single stream near its loopback
    /// ceiling (bench/run.sh l4) while bounding the node proxy's buffers; 4 MiB cost ~5 MB of peak RSS in the bench.</summary>
    public int InitialStreamWindowSize { get; init; } = 1024 * 1024;

    /// <summary>Connection receive window (raised from 65535 with a WINDOW_UPDATE right after the preface).</summary>
    public int ConnectionWindowSize { get; init; } = 16 * 1024 * 1024;

    /// <summary>SETTINGS_MAX_FRAME_SIZE we advertise (largest frame we accept).</summary>
    public int MaxFrameSize { get; init; } = 1024 * 1024;

    /// <summary>SETTINGS_MAX_HEADER_LIST_SIZE we advertise and enforce on responses.</summary>
    public int MaxHeaderListSize { get; init; } = 16 * 1024;

    /// <summary>How often we send a keepalive PING.</summary>
    public TimeSpan PingInterval { get; init; } = TimeSpan.FromSeconds(10);

    /// <summary>A PING not acknowledged within this time closes the connection (a dead peer or a black-holed path).</summary>
    public TimeSpan PingTimeout { get; init; } = TimeSpan.FromSeconds(20);

    /// <summary>A pooled connection with no streams for this long is closed.</summary>
    public TimeSpan IdleTimeout { get; init; } = TimeSpan.FromMinutes(5);

    /// <summary>TCP connect + TLS handshake budget for one dial.</summary>
    public TimeSpan ConnectTimeout { get; init; } = TimeSpan.FromSeconds(10);

    /// <summary>Server role: streams the client may reset before our answer before the connection counts as a rapid-reset
    /// flood (also needs more than half of its requests; see <see cref="Http2Connection"/>).</summary>
    public int MaxPrematureResets { get; init; } = 100;

    /// <summary>Called on each new socket before connect (e.g. to set SO_MARK 1337 so capture rules skip our own traffic).</summary>
    public Action<Socket>? ConfigureSocket { get; init; }

    /// <summary>Makes the unconnected socket of each dial (e.g. inside a pod's network namespace); null: a plain TCP
    /// socket of the destination's family. <see cref="ConfigureSocket"/> still applies to it.</summary>
    public Func<AddressFamily, CancellationToken, ValueTask<Socket>>? CreateSocket { get; init; }

    /// <summary>Throws naming the first setting outside what RFC 9113 allows.</summary>
    public void Validate()
    {
        if (MaxStreamsPerConnection < 1)
        {
            throw new ArgumentOutOfRangeException(nameof(MaxStreamsPerConnection), MaxStreamsPerConnection, "must be at least 1");
        }
        if (InitialStreamWindowSize < 65_535)
        {
            throw new ArgumentOutOfRangeException(nameof(InitialStreamWindowSize), InitialStreamWindowSize, "must be at least 65535");
        }
        if (ConnectionWindowSize < 65_535)
        {
            throw new ArgumentOutOfRangeException(nameof(ConnectionWindowSize), ConnectionWindowSize, "must be at least 65535");
        }
        if (MaxFrameSize < Http2Frame.DefaultMaxFrameSize || MaxFrameSize > Http2Frame.MaxAllowedFrameSize)
        {
            throw new ArgumentOutOfRangeException(nameof(MaxFrameSize), MaxFrameSize, "must be 16384..16777215 (RFC 9113 section 6.5.2)");
        }
        if (MaxHeaderListSize < 1024)
        {
            throw new ArgumentOutOfRangeException(nameof(MaxHeaderListSize), MaxHeaderListSize, "must be at least 1024");
        }
        if (MaxPrematureResets < 1)
        {
            throw new ArgumentOutOfRangeException(nameof(MaxPrematureResets), MaxPrematureResets, "must be at least 1");
        }
        if (PingInterval <= TimeSpan.Zero || PingTimeout <= TimeSpan.Zero || IdleTimeout <= TimeSpan.Zero || ConnectTimeout <= TimeSpan.Zero)
        {
            throw new ArgumentOutOfRangeException(nameof(PingInterval), "PingInterval, PingTimeout, IdleTimeout and ConnectTimeout must be positive");
        }
    }
}

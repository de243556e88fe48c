using Ambient.Hbone.Relay;

namespace Ambient.Ztunnel.Proxy.Relay;

/// <summary>
/// The SOCKS5 path's entry to the one relay (<see cref="DuplexRelay{TA, TB}"/>): two duplex streams, <c>a</c> the
/// client and <c>b</c> the upstream. Half-close per stream as <see cref="StreamRelayEnd"/> describes; a failure on
/// either side ends both and is reported with the side it came from. The caller owns and disposes both streams.
/// </summary>
internal static class BidirectionalRelay
{
    public const int DefaultBufferSize = DuplexRelay.DefaultBufferSize;

    public static ValueTask<RelayResult> RunAsync(
        Stream a,
        Stream b,
        Func<ValueTask>? completeWritesA = null,
        Func<ValueTask>? completeWritesB = null,
        int bufferSize = DefaultBufferSize,
        CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(a);
        ArgumentNullException.ThrowIfNull(b);
        return DuplexRelay<StreamRelayEnd, StreamRelayEnd>.RunAsync(new(a, completeWritesA), new(b, completeWritesB), bufferSize, cancellationToken);
    }
}

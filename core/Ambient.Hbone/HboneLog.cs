using Ambient.Hbone.Http2;
using Microsoft.Extensions.Logging;

namespace Ambient.Hbone;

internal static partial class HboneLog
{
    [LoggerMessage(1, LogLevel.Debug, "HBONE connection to {Peer} established ({Key})")]
    public static partial void ConnectionOpened(ILogger logger, string peer, HbonePoolKey key);

    [LoggerMessage(2, LogLevel.Debug, "HBONE connection to {Peer} closed: {Reason}")]
    public static partial void ConnectionClosed(ILogger logger, string peer, string reason);

    [LoggerMessage(3, LogLevel.Warning, "HBONE connection to {Peer} failed with {ErrorCode}: {Message}")]
    public static partial void ConnectionError(ILogger logger, string peer, Http2ErrorCode errorCode, string message);

    [LoggerMessage(4, LogLevel.Information, "HBONE peer {Peer} sent GOAWAY last-stream-id={LastStreamId} error={ErrorCode}")]
    public static partial void GoAwayReceived(ILogger logger, string peer, int lastStreamId, Http2ErrorCode errorCode);

    [LoggerMessage(5, LogLevel.Debug, "HBONE peer {Peer} reset stream {StreamId} with {ErrorCode}")]
    public static partial void StreamResetByPeer(ILogger logger, string peer, int streamId, Http2ErrorCode errorCode);

    [LoggerMessage(6, LogLevel.Warning, "HBONE peer {Peer} did not answer a keepalive PING within {Timeout}; closing the connection")]
    public static partial void KeepAliveTimeout(ILogger logger, string peer, TimeSpan timeout);

    [LoggerMessage(7, LogLevel.Warning, "HBONE dial {Key} failed: {Message}")]
    public static partial void DialFailed(ILogger logger, HbonePoolKey key, string message);

    [LoggerMessage(8, LogLevel.Debug, "HBONE connection to {Peer} idle for {Idle}; closing")]
    public static partial void IdleClosed(ILogger logger, string peer, TimeSpan idle);

    [LoggerMessage(9, LogLevel.Debug, "HBONE stream {StreamId} to {Peer} reset by us: {Message}")]
    public static partial void StreamError(ILogger logger, string peer, int streamId, string message);
}

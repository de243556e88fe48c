using System.Net;
using Ambient.Ztunnel.Proxy.Outbound;
using Microsoft.Extensions.Logging;

namespace Ambient.Ztunnel.Proxy.Socks5;

internal static partial class Socks5Log
{
    [LoggerMessage(EventId = 1, Level = LogLevel.Information, Message = "SOCKS5 listener started on {Endpoint}")]
    public static partial void ListenerStarted(ILogger logger, IPEndPoint endpoint);

    [LoggerMessage(EventId = 2, Level = LogLevel.Information, Message = "SOCKS5 listener on {Endpoint} stopped; aborted {LiveConnections} live connections")]
    public static partial void ListenerStopped(ILogger logger, IPEndPoint endpoint, int liveConnections);

    [LoggerMessage(EventId = 3, Level = LogLevel.Warning, Message = "SOCKS5 accept on {Endpoint} failed; retrying")]
    public static partial void AcceptFailed(ILogger logger, IPEndPoint endpoint, Exception exception);

    [LoggerMessage(EventId = 4, Level = LogLevel.Debug, Message = "SOCKS5 client {Client} rejected: {Reason}")]
    public static partial void HandshakeRejected(ILogger logger, IPEndPoint client, string reason);

    [LoggerMessage(EventId = 5, Level = LogLevel.Debug, Message = "SOCKS5 client {Client} dropped: no complete handshake within {Timeout}")]
    public static partial void HandshakeTimedOut(ILogger logger, IPEndPoint client, TimeSpan timeout);

    [LoggerMessage(EventId = 6, Level = LogLevel.Debug, Message = "SOCKS5 client {Client} went away during the handshake")]
    public static partial void ClientGone(ILogger logger, IPEndPoint client, Exception? exception);

    [LoggerMessage(EventId = 7, Level = LogLevel.Debug, Message = "SOCKS5 {Client} -> {Destination}: {Error}, replied {Code}")]
    public static partial void ConnectRefused(ILogger logger, IPEndPoint client, OriginalDestination destination, OutboundError error, Socks5ReplyCode code);

    [LoggerMessage(EventId = 8, Level = LogLevel.Error, Message = "SOCKS5 {Client} -> {Destination}: the outbound proxy failed")]
    public static partial void HandlerFailed(ILogger logger, IPEndPoint client, OriginalDestination destination, Exception exception);

    [LoggerMessage(EventId = 9, Level = LogLevel.Error, Message = "SOCKS5 {Client} -> {Destination}: the outbound proxy reported success without connecting")]
    public static partial void HandlerReturnedNoStream(ILogger logger, IPEndPoint client, OriginalDestination destination);

    [LoggerMessage(EventId = 10, Level = LogLevel.Debug, Message = "SOCKS5 {Client} -> {Destination}: closed, {BytesSent} bytes sent, {BytesReceived} bytes received")]
    public static partial void RelayCompleted(ILogger logger, IPEndPoint client, OriginalDestination destination, long bytesSent, long bytesReceived);

    [LoggerMessage(EventId = 11, Level = LogLevel.Debug, Message = "SOCKS5 {Client} -> {Destination}: ended with {Flags} after {BytesSent} bytes sent, {BytesReceived} bytes received")]
    public static partial void RelayAborted(ILogger logger, IPEndPoint client, OriginalDestination destination, string flags, long bytesSent, long bytesReceived);

    [LoggerMessage(EventId = 12, Level = LogLevel.Error, Message = "SOCKS5 connection from {Client} failed unexpectedly")]
    public static partial void ConnectionFailed(ILogger logger, IPEndPoint? client, Exception exception);
}

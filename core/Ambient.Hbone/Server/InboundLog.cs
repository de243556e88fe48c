using System.Net;
using Microsoft.Extensions.Logging;

namespace Ambient.Hbone.Server;

internal static partial class InboundLog
{
    // EventId 1 (InboundAccess) is the shared access log's: Ambient.Core.Telemetry.AccessLog.

    [LoggerMessage(EventId = 2, EventName = "InboundRejected", Level = LogLevel.Information,
        Message = "inbound rejected src.identity={SrcIdentity} src.addr={SrcAddr} target={Target} status={Status}: {Reason}")]
    public static partial void Rejected(ILogger logger, string srcIdentity, IPEndPoint srcAddr, string target, int status, string reason);

    [LoggerMessage(EventId = 3, EventName = "InboundTlsFailure", Level = LogLevel.Warning,
        Message = "inbound TLS handshake from {Remote} on listener {Listener} failed: {Reason}")]
    public static partial void TlsFailure(ILogger logger, IPEndPoint remote, IPAddress listener, string reason);

    [LoggerMessage(EventId = 4, EventName = "InboundUpstreamConnectFailed", Level = LogLevel.Warning,
        Message = "inbound connect to workload {Target} failed: {Reason}")]
    public static partial void UpstreamConnectFailed(ILogger logger, IPEndPoint target, string reason);

    [LoggerMessage(EventId = 5, EventName = "InboundAcceptFailed", Level = LogLevel.Debug,
        Message = "accept on HBONE listener {Listener} failed: {Error}")]
    public static partial void AcceptFailed(ILogger logger, IPAddress listener, string error);

    [LoggerMessage(EventId = 6, EventName = "InboundObserverFailed", Level = LogLevel.Error,
        Message = "inbound observer threw")]
    public static partial void ObserverFailed(ILogger logger, Exception exception);

    [LoggerMessage(EventId = 10, EventName = "InboundConnectionEstablished", Level = LogLevel.Debug,
        Message = "HBONE connection from {Remote} ({Identity}) on listener {Listener} established")]
    public static partial void ConnectionEstablished(ILogger logger, IPEndPoint remote, string? identity, IPAddress listener);

    [LoggerMessage(EventId = 11, EventName = "InboundHandlerFailed", Level = LogLevel.Error,
        Message = "inbound CONNECT stream {StreamId} from {Remote} failed unexpectedly; the stream was reset")]
    public static partial void HandlerFailed(ILogger logger, int streamId, IPEndPoint remote, Exception exception);

    [LoggerMessage(EventId = 12, EventName = "InboundDraining", Level = LogLevel.Information,
        Message = "HBONE server stopping: GOAWAY sent on {Connections} connections; open tunnels get up to {DrainSeconds} s to finish")]
    public static partial void Draining(ILogger logger, int connections, double drainSeconds);

    [LoggerMessage(EventId = 7, EventName = "InboundListenerAdded", Level = LogLevel.Information,
        Message = "HBONE listener for workload {Workload} on {EndPoint}")]
    public static partial void ListenerAdded(ILogger logger, IPAddress workload, IPEndPoint endPoint);

    [LoggerMessage(EventId = 8, EventName = "InboundListenerRemoved", Level = LogLevel.Information,
        Message = "HBONE listener for workload {Workload} removed")]
    public static partial void ListenerRemoved(ILogger logger, IPAddress workload);
}

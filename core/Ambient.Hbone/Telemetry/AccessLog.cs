using Microsoft.Extensions.Logging;

namespace Ambient.Hbone.Telemetry;

/// <summary>Which way a connection crosses the proxy, as the access log's <c>direction=</c> spells it.</summary>
internal enum TrafficDirection
{
    Inbound,
    Outbound,
}

/// <summary>
/// One connection as the access log reports it, with Istio ztunnel's field names; "-" stands for unknown.
/// </summary>
/// <param name="SourceAddress">The app's (outbound) or the tunnel peer's (inbound) address.</param>
/// <param name="DestinationAddress">Where the proxy connected: the HBONE peer (pod, waypoint or gateway) or, for plain
/// TCP and inbound, the workload itself.</param>
/// <param name="HboneAddress">The CONNECT <c>:authority</c>; "-" for plain TCP.</param>
/// <param name="BytesSent">Bytes from the source towards the destination.</param>
/// <param name="BytesReceived">Bytes from the destination back to the source.</param>
/// <param name="Flags">One of <see cref="ResponseFlags"/>.</param>
/// <param name="Error">Why the connection failed, when it did.</param>
internal readonly record struct AccessLogEntry(
    TrafficDirection Direction,
    string SourceAddress,
    string SourceWorkload,
    string SourceIdentity,
    string DestinationAddress,
    string HboneAddress,
    string DestinationService,
    string DestinationWorkload,
    string DestinationIdentity,
    long BytesSent,
    long BytesReceived,
    TimeSpan Duration,
    string Flags,
    string? Error = null)
{
    public const string Unknown = "-";
}

/// <summary>
/// The access log: one line per connection, when it ends (also for refused and failed ones), in ONE format both
/// ways, so a line reads the same whichever proxy wrote it. The event names tell the directions apart for filters.
/// </summary>
internal static partial class AccessLog
{
    private const string Format =
        "access src.addr={SrcAddr} src.workload={SrcWorkload} src.identity={SrcIdentity} dst.addr={DstAddr} " +
        "dst.hbone_addr={DstHboneAddr} dst.service={DstService} dst.workload={DstWorkload} dst.identity={DstIdentity} " +
        "direction={Direction} bytes_sent={BytesSent} bytes_recv={BytesRecv} duration={DurationMs}ms flags={Flags} error={Error}";

    public static void Write(ILogger logger, in AccessLogEntry e)
    {
        if (!logger.IsEnabled(LogLevel.Information))
        {
            return;
        }
        var durationMs = (long)e.Duration.TotalMilliseconds;
        var error = e.Error is null ? AccessLogEntry.Unknown : LogText.Clip(e.Error, 200);
        if (e.Direction == TrafficDirection.Inbound)
        {
            Inbound(logger, e.SourceAddress, e.SourceWorkload, e.SourceIdentity, e.DestinationAddress, e.HboneAddress,
                e.DestinationService, e.DestinationWorkload, e.DestinationIdentity, "inbound", e.BytesSent, e.BytesReceived, durationMs, e.Flags, error);
        }
        else
        {
            Outbound(logger, e.SourceAddress, e.SourceWorkload, e.SourceIdentity, e.DestinationAddress, e.HboneAddress,
                e.DestinationService, e.DestinationWorkload, e.DestinationIdentity, "outbound", e.BytesSent, e.BytesReceived, durationMs, e.Flags, error);
        }
    }

    [LoggerMessage(EventId = 1, EventName = "InboundAccess", Level = LogLevel.Information, Message = Format)]
    private static partial void Inbound(ILogger logger, string srcAddr, string srcWorkload, string srcIdentity, string dstAddr,
        string dstHboneAddr, string dstService, string dstWorkload, string dstIdentity, string direction, long bytesSent, long bytesRecv,
        long durationMs, string flags, string error);

    [LoggerMessage(EventId = 2, EventName = "OutboundAccess", Level = LogLevel.Information, Message = Format)]
    private static partial void Outbound(ILogger logger, string srcAddr, string srcWorkload, string srcIdentity, string dstAddr,
        string dstHboneAddr, string dstService, string dstWorkload, string dstIdentity, string direction, long bytesSent, long bytesRecv,
        long durationMs, string flags, string error);
}

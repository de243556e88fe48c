using Microsoft.Extensions.Logging;

namespace Ambient.Istiod.Ca;

internal static partial class CaLog
{
    [LoggerMessage(EventId = 1001, Level = LogLevel.Information,
        Message = "Issued certificate for {Identity} to {Caller}: serial {Serial}, expires {NotAfter:u}")]
    public static partial void CertificateIssued(ILogger logger, string identity, string caller, string serial, DateTimeOffset notAfter);

    [LoggerMessage(EventId = 1002, Level = LogLevel.Warning,
        Message = "Refused certificate request ({Kind}) from {Caller}: {Reason}")]
    public static partial void RequestRefused(ILogger logger, CaErrorKind kind, string caller, string reason);
}

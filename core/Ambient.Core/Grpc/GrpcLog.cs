using Microsoft.Extensions.Logging;

namespace Ambient.Core.Grpc;

/// <summary>Structured logs of the gRPC layer (source-generated: no boxing or formatting unless enabled).</summary>
internal static partial class GrpcLog
{
    [LoggerMessage(EventId = 1, Level = LogLevel.Error, Message = "gRPC handler for {Path} from {Peer} threw an unexpected exception")]
    public static partial void HandlerFailed(ILogger logger, string path, string peer, Exception exception);

    [LoggerMessage(EventId = 2, Level = LogLevel.Debug, Message = "gRPC call {Path} from {Peer} ended with {Status}: {Detail}")]
    public static partial void CallFailed(ILogger logger, string path, string peer, GrpcStatusCode status, string detail);

    [LoggerMessage(EventId = 3, Level = LogLevel.Debug, Message = "gRPC call {Path} exceeded its deadline of {Timeout}")]
    public static partial void DeadlineExceeded(ILogger logger, string path, TimeSpan timeout);

    [LoggerMessage(EventId = 4, Level = LogLevel.Debug, Message = "gRPC call {Path} was cancelled by the client")]
    public static partial void CancelledByClient(ILogger logger, string path);

    [LoggerMessage(EventId = 5, Level = LogLevel.Warning, Message = "Ignoring malformed grpc-timeout '{Value}' on {Path}")]
    public static partial void BadTimeout(ILogger logger, string value, string path);

    [LoggerMessage(EventId = 6, Level = LogLevel.Information, Message = "Rejected request to {Path}: {Reason}")]
    public static partial void Rejected(ILogger logger, string path, string reason);

    [LoggerMessage(EventId = 7, Level = LogLevel.Debug, Message = "No gRPC method at {Path}")]
    public static partial void Unimplemented(ILogger logger, string path);
}

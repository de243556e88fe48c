namespace Ambient.Core.Grpc;

/// <summary>gRPC status codes (grpc/doc/statuscodes.md); the numbers are on the wire in <c>grpc-status</c>.</summary>
internal enum GrpcStatusCode
{
    OK = 0,
    Cancelled = 1,
    Unknown = 2,
    InvalidArgument = 3,
    DeadlineExceeded = 4,
    NotFound = 5,
    AlreadyExists = 6,
    PermissionDenied = 7,
    ResourceExhausted = 8,
    FailedPrecondition = 9,
    Aborted = 10,
    OutOfRange = 11,
    Unimplemented = 12,
    Internal = 13,
    Unavailable = 14,
    DataLoss = 15,
    Unauthenticated = 16,
}

/// <summary>
/// A non-OK gRPC status. Handlers throw it to end a call with that status; the client throws it when a call ends
/// with a non-OK status. <see cref="Detail"/> travels as <c>grpc-message</c>.
/// </summary>
internal sealed class GrpcException : Exception
{
    public GrpcException(GrpcStatusCode status, string detail)
        : base(FormatMessage(status, detail))
    {
        Status = status;
        Detail = detail;
    }

    public GrpcException(GrpcStatusCode status, string detail, Exception? innerException)
        : base(FormatMessage(status, detail), innerException)
    {
        Status = status;
        Detail = detail;
    }

    public GrpcStatusCode Status { get; }

    public string Detail { get; }

    private static string FormatMessage(GrpcStatusCode status, string detail) =>
        $"gRPC status {status} ({(int)status}): {detail}";
}

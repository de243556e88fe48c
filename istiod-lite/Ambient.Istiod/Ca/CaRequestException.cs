namespace Ambient.Istiod.Ca;

/// <summary>Why a certificate request was refused; each kind maps to one gRPC status.</summary>
internal enum CaErrorKind
{
    /// <summary>gRPC UNAUTHENTICATED (16): the caller is unknown or may not hold the identity it asked for.</summary>
    Unauthenticated,

    /// <summary>gRPC INVALID_ARGUMENT (3): the request itself is malformed (CSR, identity string, metadata type).</summary>
    InvalidArgument,

    /// <summary>gRPC PERMISSION_DENIED (7): the caller is known (Kubernetes mode) but may not obtain that identity.</summary>
    PermissionDenied,

    /// <summary>gRPC UNAVAILABLE (14): the caller could not be checked (the Kubernetes API did not answer); retry.</summary>
    Unavailable,
}

/// <summary>A refused CreateCertificate call; the message is safe to return to the caller.</summary>
internal sealed class CaRequestException(CaErrorKind kind, string message, Exception? inner = null) : Exception(message, inner)
{
    public CaErrorKind Kind { get; } = kind;

    /// <summary>The gRPC status code for <see cref="Kind"/>.</summary>
    public int GrpcStatusCode => Kind switch
    {
        CaErrorKind.Unauthenticated => 16,
        CaErrorKind.InvalidArgument => 3,
        CaErrorKind.PermissionDenied => 7,
        CaErrorKind.Unavailable => 14,
        _ => 2, // UNKNOWN
    };
}

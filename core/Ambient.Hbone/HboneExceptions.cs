using Ambient.Hbone.Http2;

namespace Ambient.Hbone;

/// <summary>
/// An HBONE tunnel or connection failed. <see cref="IsRetryable"/> is true when the peer provably did not process the
/// stream (GOAWAY above its last stream id, REFUSED_STREAM), so the same CONNECT may be sent again on another connection.
/// </summary>
internal class HboneException(string message, bool isRetryable = false, Http2ErrorCode errorCode = Http2ErrorCode.NO_ERROR, Exception? inner = null)
    : IOException(message, inner)
{
    public bool IsRetryable { get; } = isRetryable;

    /// <summary>The HTTP/2 error code involved (from RST_STREAM/GOAWAY, or the one we sent); NO_ERROR when none.</summary>
    public Http2ErrorCode ErrorCode { get; } = errorCode;
}

/// <summary>
/// The peer answered the CONNECT with a non-200 status (as Istio's ztunnel: 400 bad target, 401 denied by policy, 503 upstream
/// unreachable). Callers map the status to their own response flags.
/// </summary>
internal sealed class HboneConnectException(int statusCode, string authority, string peer)
    : HboneException($"HBONE CONNECT {authority} via {peer} was answered with status {statusCode}")
{
    public int StatusCode { get; } = statusCode;

    public string Authority { get; } = authority;
}

/// <summary>
/// The peer answered in full (its END_STREAM came) and then reset the stream with NO_ERROR: RFC 9113 section 8.1's
/// "stop sending the request", not a failure. Only our sending ends; what it sent stays readable to its end.
/// </summary>
internal sealed class HboneSendStoppedException(string message) : HboneException(message);

namespace Ambient.Hbone.Http2;

/// <summary>
/// A connection error (RFC 9113 section 5.4.1): the connection must send GOAWAY with <see cref="ErrorCode"/> and close.
/// </summary>
internal sealed class Http2ConnectionException(Http2ErrorCode errorCode, string message)
    : Exception($"HTTP/2 connection error {errorCode}: {message}")
{
    public Http2ErrorCode ErrorCode { get; } = errorCode;
}

/// <summary>
/// A stream error (RFC 9113 section 5.4.2): the connection sends RST_STREAM for <see cref="StreamId"/> and carries on.
/// </summary>
internal class Http2StreamException(int streamId, Http2ErrorCode errorCode, string message)
    : Exception($"HTTP/2 stream {streamId} error {errorCode}: {message}")
{
    public int StreamId { get; } = streamId;

    public Http2ErrorCode ErrorCode { get; } = errorCode;
}

/// <summary>
/// A decoded header list exceeded the SETTINGS_MAX_HEADER_LIST_SIZE we advertised. The whole block was still decoded,
/// so the HPACK dynamic table is in sync and only the stream needs resetting.
/// </summary>
internal sealed class Http2HeaderListTooLargeException(int streamId, int limit)
    : Http2StreamException(streamId, Http2ErrorCode.PROTOCOL_ERROR,
        $"header list exceeds the {limit}-byte limit (SETTINGS_MAX_HEADER_LIST_SIZE)")
{
    public int Limit { get; } = limit;
}

namespace Ambient.Hbone.Http2;

/// <summary>
/// The one piece of frame sequencing state RFC 9113 section 6.10 imposes: after a HEADERS or PUSH_PROMISE without
/// END_HEADERS, the next frame on the connection MUST be a CONTINUATION of the same stream; a CONTINUATION at any other
/// time is a connection error. Call <see cref="OnFrame"/> for every frame the reader returns, before acting on it.
/// </summary>
internal struct Http2ContinuationTracker
{
    private int _streamId;

    /// <summary>True while a header block is open; its stream id is <see cref="StreamId"/>.</summary>
    public readonly bool ExpectingContinuation => _streamId != 0;

    public readonly int StreamId => _streamId;

    public void OnFrame(in Http2Frame frame)
    {
        if (_streamId != 0)
        {
            if (frame.Type != Http2FrameType.CONTINUATION || frame.StreamId != _streamId)
            {
                throw new Http2ConnectionException(Http2ErrorCode.PROTOCOL_ERROR,
                    $"expected CONTINUATION on stream {_streamId}, got {frame.Type} on stream {frame.StreamId}");
            }
            if (frame.EndHeaders)
            {
                _streamId = 0;
            }
            return;
        }

        if (frame.Type == Http2FrameType.CONTINUATION)
        {
            throw new Http2ConnectionException(Http2ErrorCode.PROTOCOL_ERROR,
                $"CONTINUATION on stream {frame.StreamId} without a preceding HEADERS or PUSH_PROMISE");
        }
        if (frame.Type is Http2FrameType.HEADERS or Http2FrameType.PUSH_PROMISE && !frame.EndHeaders)
        {
            _streamId = frame.StreamId;
        }
    }
}

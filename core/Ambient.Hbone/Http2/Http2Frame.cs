namespace Ambient.Hbone.Http2;

/// <summary>
/// The 9-byte frame header (RFC 9113 section 4.1). A plain value: the payload stays in the caller's buffer.
/// </summary>
internal readonly record struct Http2Frame(int PayloadLength, Http2FrameType Type, Http2Flags Flags, int StreamId)
{
    public const int HeaderLength = 9;

    /// <summary>SETTINGS_MAX_FRAME_SIZE initial value and lower bound (2^14).</summary>
    public const int DefaultMaxFrameSize = 16_384;

    /// <summary>SETTINGS_MAX_FRAME_SIZE upper bound (2^24 - 1).</summary>
    public const int MaxAllowedFrameSize = 16_777_215;

    /// <summary>Largest flow-control window and WINDOW_UPDATE increment (2^31 - 1).</summary>
    public const uint MaxWindowSize = 0x7FFF_FFFF;

    /// <summary>The client connection preface, RFC 9113 section 3.4: "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".</summary>
    public static ReadOnlySpan<byte> ClientPreface => "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"u8;

    public bool EndStream => (Flags & Http2Flags.END_STREAM) != 0 && Type is Http2FrameType.DATA or Http2FrameType.HEADERS;

    public bool Ack => (Flags & Http2Flags.ACK) != 0 && Type is Http2FrameType.SETTINGS or Http2FrameType.PING;

    public bool EndHeaders => (Flags & Http2Flags.END_HEADERS) != 0;

    public bool Padded => (Flags & Http2Flags.PADDED) != 0;

    public bool HasPriority => (Flags & Http2Flags.PRIORITY) != 0;

    public override string ToString() => $"{Type} stream={StreamId} length={PayloadLength} flags=0x{(byte)Flags:x2}";
}

/// <summary>One SETTINGS entry (RFC 9113 section 6.5.1).</summary>
internal readonly record struct Http2Setting(Http2SettingsParameter Parameter, uint Value);

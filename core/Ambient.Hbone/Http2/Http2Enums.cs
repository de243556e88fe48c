namespace Ambient.Hbone.Http2;

// Member names follow the RFC 9113 registry names so code and wire traces grep alike (Kestrel does the same).
#pragma warning disable CA1707

/// <summary>Frame types, RFC 9113 section 6. Values outside this list are extension frames and are ignored.</summary>
internal enum Http2FrameType : byte
{
    DATA = 0x0,
    HEADERS = 0x1,
    PRIORITY = 0x2,
    RST_STREAM = 0x3,
    SETTINGS = 0x4,
    PUSH_PROMISE = 0x5,
    PING = 0x6,
    GOAWAY = 0x7,
    WINDOW_UPDATE = 0x8,
    CONTINUATION = 0x9,
}

/// <summary>Frame flags. The same bit means different things per frame type (END_STREAM on DATA/HEADERS, ACK on SETTINGS/PING).</summary>
[Flags]
internal enum Http2Flags : byte
{
    NONE = 0x0,
    END_STREAM = 0x1,
    ACK = 0x1,
    END_HEADERS = 0x4,
    PADDED = 0x8,
    PRIORITY = 0x20,
}

/// <summary>Error codes, RFC 9113 section 7.</summary>
internal enum Http2ErrorCode : uint
{
    NO_ERROR = 0x0,
    PROTOCOL_ERROR = 0x1,
    INTERNAL_ERROR = 0x2,
    FLOW_CONTROL_ERROR = 0x3,
    SETTINGS_TIMEOUT = 0x4,
    STREAM_CLOSED = 0x5,
    FRAME_SIZE_ERROR = 0x6,
    REFUSED_STREAM = 0x7,
    CANCEL = 0x8,
    COMPRESSION_ERROR = 0x9,
    CONNECT_ERROR = 0xa,
    ENHANCE_YOUR_CALM = 0xb,
    INADEQUATE_SECURITY = 0xc,
    HTTP_1_1_REQUIRED = 0xd,
}

/// <summary>SETTINGS parameters, RFC 9113 section 6.5.2. Unknown identifiers must be ignored.</summary>
internal enum Http2SettingsParameter : ushort
{
    SETTINGS_HEADER_TABLE_SIZE = 0x1,
    SETTINGS_ENABLE_PUSH = 0x2,
    SETTINGS_MAX_CONCURRENT_STREAMS = 0x3,
    SETTINGS_INITIAL_WINDOW_SIZE = 0x4,
    SETTINGS_MAX_FRAME_SIZE = 0x5,
    SETTINGS_MAX_HEADER_LIST_SIZE = 0x6,
}
#pragma warning restore CA1707

using System.Buffers;
using System.Globalization;
using System.Text;

namespace Ambient.Core.Grpc;

/// <summary>
/// Header names, content types and the small text encodings of gRPC over HTTP/2
/// (grpc/doc/PROTOCOL-HTTP2.md). Shared by the server and the client so both sides agree byte for byte.
/// </summary>
internal static class GrpcProtocol
{
    public const string ContentType = "application/grpc";
    public const string ContentTypeProto = "application/grpc+proto";
    public const string StatusHeader = "grpc-status";
    public const string MessageHeader = "grpc-message";
    public const string TimeoutHeader = "grpc-timeout";
    public const string EncodingHeader = "grpc-encoding";
    public const string AcceptEncodingHeader = "grpc-accept-encoding";
    public const string IdentityEncoding = "identity";
    public const string UserAgent = "ambient-grpc/1.0";

    /// <summary>The 5-byte Length-Prefixed-Message header: compressed flag + 4-byte big-endian length.</summary>
    public const int HeaderSize = 5;

    /// <summary>
    /// True for <c>application/grpc</c> and <c>application/grpc+proto</c>, with optional parameters
    /// (<c>application/grpc; charset=utf-8</c>). Other subtypes (e.g. +json) are codecs we do not speak.
    /// </summary>
    public static bool IsGrpcProtoContentType(string? contentType)
    {
        if (contentType is null)
        {
            return false;
        }

        var span = contentType.AsSpan();
        var semicolon = span.IndexOf(';');
        if (semicolon >= 0)
        {
            span = span[..semicolon];
        }

        span = span.Trim();
        return span.Equals(ContentType, StringComparison.OrdinalIgnoreCase)
            || span.Equals(ContentTypeProto, StringComparison.OrdinalIgnoreCase);
    }

    /// <summary>True when the content type is any gRPC flavour (used to tell gRPC callers from stray HTTP requests).</summary>
    public static bool IsGrpcContentType(string? contentType) =>
        contentType is not null && contentType.StartsWith(ContentType, StringComparison.OrdinalIgnoreCase);

    // Timeout → "grpc-timeout" TimeoutValue TimeoutUnit
    // TimeoutValue → {positive integer as ASCII string of at most 8 digits}
    // TimeoutUnit → Hour → "H" / Minute → "M" / Second → "S" / Millisecond → "m" / Microsecond → "u" / Nanosecond → "n"

    /// <summary>Parses a <c>grpc-timeout</c> value; false when it is malformed (callers then ignore it).</summary>
    public static bool TryParseTimeout(ReadOnlySpan<char> value, out TimeSpan timeout)
    {
        timeout = default;
        if (value.Length < 2 || value.Length > 9)
        {
            return false;
        }

        long amount = 0;
        var digits = value[..^1];
        foreach (var c in digits)
        {
            if (c < '0' || c > '9')
            {
                return false;
            }

            amount = (amount * 10) + (c - '0');
        }

        long ticks;
        switch (value[^1])
        {
            case 'H': ticks = amount * TimeSpan.TicksPerHour; break;
            case 'M': ticks = amount * TimeSpan.TicksPerMinute; break;
            case 'S': ticks = amount * TimeSpan.TicksPerSecond; break;
            case 'm': ticks = amount * TimeSpan.TicksPerMillisecond; break;
            case 'u': ticks = amount * 10; break;
            case 'n': ticks = (amount + 99) / 100; break; // round up so 1n is not "no time at all"
            default: return false;
        }

        timeout = TimeSpan.FromTicks(ticks);
        return true;
    }

    /// <summary>
    /// Formats a positive timeout with the finest unit that fits in 8 digits, rounding up so the server never
    /// sees a shorter deadline than the client meant.
    /// </summary>
    public static string FormatTimeout(TimeSpan timeout)
    {
        const long MaxValue = 99_999_999;
        var ticks = Math.Max(timeout.Ticks, 1);
        var micros = CeilDiv(ticks, 10);
        if (micros <= MaxValue)
        {
            return micros.ToString(CultureInfo.InvariantCulture) + "u";
        }

        var millis = CeilDiv(ticks, TimeSpan.TicksPerMillisecond);
        if (millis <= MaxValue)
        {
            return millis.ToString(CultureInfo.InvariantCulture) + "m";
        }

        var seconds = CeilDiv(ticks, TimeSpan.TicksPerSecond);
        if (seconds <= MaxValue)
        {
            return seconds.ToString(CultureInfo.InvariantCulture) + "S";
        }

        var minutes = CeilDiv(ticks, TimeSpan.TicksPerMinute);
        if (minutes <= MaxValue)
        {
            return minutes.ToString(CultureInfo.InvariantCulture) + "M";
        }

        return Math.Min(CeilDiv(ticks, TimeSpan.TicksPerHour), MaxValue).ToString(CultureInfo.InvariantCulture) + "H";
    }

    private static long CeilDiv(long value, long divisor) => (value + divisor - 1) / divisor;

    // grpc-message: "Percent-Encoded" of the UTF-8 bytes of the message. Unreserved (sent as is) is
    // %x20-%x7E except "%" (%x25); everything else is "%" followed by two upper-case hex digits.

    /// <summary>Percent-encodes a status message for the <c>grpc-message</c> header.</summary>
    public static string EncodeMessage(string message)
    {
        var needsEncoding = false;
        foreach (var c in message)
        {
            if (c < 0x20 || c > 0x7E || c == '%')
            {
                needsEncoding = true;
                break;
            }
        }

        if (!needsEncoding)
        {
            return message;
        }

        var byteCount = Encoding.UTF8.GetByteCount(message);
        var rented = ArrayPool<byte>.Shared.Rent(byteCount);
        try
        {
            var bytes = rented.AsSpan(0, Encoding.UTF8.GetBytes(message, rented));
            var builder = new StringBuilder(byteCount * 3);
            foreach (var b in bytes)
            {
                if (b >= 0x20 && b <= 0x7E && b != (byte)'%')
                {
                    builder.Append((char)b);
                }
                else
                {
                    builder.Append('%').Append(HexUpper(b >> 4)).Append(HexUpper(b & 0xF));
                }
            }

            return builder.ToString();
        }
        finally
        {
            ArrayPool<byte>.Shared.Return(rented);
        }
    }

    /// <summary>
    /// Decodes a <c>grpc-message</c> value. Per the spec a malformed escape is kept as literal text rather than
    /// failing the call: the status code is what matters, the message is best effort.
    /// </summary>
    public static string DecodeMessage(string? value)
    {
        if (string.IsNullOrEmpty(value))
        {
            return string.Empty;
        }

        if (!value.Contains('%'))
        {
            return value;
        }

        var rented = ArrayPool<byte>.Shared.Rent(value.Length * 3);
        try
        {
            var length = 0;
            for (var i = 0; i < value.Length; i++)
            {
                var c = value[i];
                if (c == '%' && i + 2 < value.Length && TryHex(value[i + 1], out var hi) && TryHex(value[i + 2], out var lo))
                {
                    rented[length++] = (byte)((hi << 4) | lo);
                    i += 2;
                }
                else
                {
                    // Keep anything else (including stray non-ASCII a sloppy peer sent raw) as its UTF-8 bytes.
                    length += Encoding.UTF8.GetBytes(value.AsSpan(i, char.IsHighSurrogate(c) && i + 1 < value.Length ? 2 : 1), rented.AsSpan(length));
                    if (char.IsHighSurrogate(c) && i + 1 < value.Length)
                    {
                        i++;
                    }
                }
            }

            return Encoding.UTF8.GetString(rented, 0, length);
        }
        finally
        {
            ArrayPool<byte>.Shared.Return(rented);
        }
    }

    private static char HexUpper(int nibble) => (char)(nibble < 10 ? '0' + nibble : 'A' + nibble - 10);

    private static bool TryHex(char c, out int value)
    {
        value = c switch
        {
            >= '0' and <= '9' => c - '0',
            >= 'a' and <= 'f' => c - 'a' + 10,
            >= 'A' and <= 'F' => c - 'A' + 10,
            _ => -1,
        };
        return value >= 0;
    }

    /// <summary>Parses a <c>grpc-status</c> header value; unknown or malformed values map to UNKNOWN (spec).</summary>
    public static GrpcStatusCode ParseStatus(string? value)
    {
        if (value is not null
            && int.TryParse(value, NumberStyles.None, CultureInfo.InvariantCulture, out var code)
            && code >= 0 && code <= (int)GrpcStatusCode.Unauthenticated)
        {
            return (GrpcStatusCode)code;
        }

        return GrpcStatusCode.Unknown;
    }

    /// <summary>The <c>grpc-status</c> header text for a code, without allocating for the known range.</summary>
    public static string StatusText(GrpcStatusCode code) => code switch
    {
        GrpcStatusCode.OK => "0",
        GrpcStatusCode.Cancelled => "1",
        GrpcStatusCode.Unknown => "2",
        GrpcStatusCode.InvalidArgument => "3",
        GrpcStatusCode.DeadlineExceeded => "4",
        GrpcStatusCode.NotFound => "5",
        GrpcStatusCode.AlreadyExists => "6",
        GrpcStatusCode.PermissionDenied => "7",
        GrpcStatusCode.ResourceExhausted => "8",
        GrpcStatusCode.FailedPrecondition => "9",
        GrpcStatusCode.Aborted => "10",
        GrpcStatusCode.OutOfRange => "11",
        GrpcStatusCode.Unimplemented => "12",
        GrpcStatusCode.Internal => "13",
        GrpcStatusCode.Unavailable => "14",
        GrpcStatusCode.DataLoss => "15",
        GrpcStatusCode.Unauthenticated => "16",
        _ => ((int)code).ToString(CultureInfo.InvariantCulture),
    };

    /// <summary>
    /// Maps a non-200 HTTP status to a gRPC status, from grpc/doc/http-grpc-status-mapping.md. Used when a
    /// proxy or a non-gRPC server answered instead of a gRPC server.
    /// </summary>
    public static GrpcStatusCode FromHttpStatus(int httpStatus) => httpStatus switch
    {
        400 => GrpcStatusCode.Internal,
        401 => GrpcStatusCode.Unauthenticated,
        403 => GrpcStatusCode.PermissionDenied,
        404 => GrpcStatusCode.Unimplemented,
        429 or 502 or 503 or 504 => GrpcStatusCode.Unavailable,
        _ => GrpcStatusCode.Unknown,
    };

    /// <summary>The message gRPC implementations use for an oversized message, naming size and limit.</summary>
    public static string MessageTooLarge(string direction, long size, int limit) =>
        $"{direction} message larger than max ({size.ToString(CultureInfo.InvariantCulture)} vs. {limit.ToString(CultureInfo.InvariantCulture)})";
}

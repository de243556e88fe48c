using System.Buffers.Binary;
using System.Text;

namespace Ambient.TestCommon;

/// <summary>
/// HTTP/2 bytes for driving a server through a tool that only pipes bytes (openssl s_client): a positive sign that the
/// server accepted a TLS connection and speaks HTTP/2 on it, which an exit code or a closed socket cannot give.
/// </summary>
public static class Http2Probe
{
    /// <summary>FRAME_SIZE_ERROR (RFC 9113 section 7).</summary>
    public const uint FrameSizeError = 6;

    /// <summary>
    /// The client connection preface, then a SETTINGS frame 5 bytes long (not a multiple of 6): a server that serves
    /// HTTP/2 on the connection answers with GOAWAY FRAME_SIZE_ERROR and closes it (RFC 9113 section 6.5); one that
    /// refused the TLS connection sends nothing at all.
    /// </summary>
    public static byte[] PrefaceThenMalformedSettings { get; } = [.. "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"u8, 0, 0, 5, 4, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0];

    /// <summary>
    /// The error code of the first GOAWAY frame in <paramref name="received"/> (what a tool printed of the server's
    /// bytes, decoded as Latin-1 so each char is one byte), or null when there is none. Text never holds the NUL bytes
    /// a frame header of a connection-level frame carries, so s_client's own messages around the data do not match.
    /// </summary>
    public static uint? GoAwayError(string received)
    {
        var bytes = Encoding.Latin1.GetBytes(received);
        for (var i = 0; i + 17 <= bytes.Length; i++)
        {
            var length = (bytes[i] << 16) | (bytes[i + 1] << 8) | bytes[i + 2];
            if (bytes[i + 3] == 7 && bytes[i + 4] == 0 && length >= 8 && BinaryPrimitives.ReadUInt32BigEndian(bytes.AsSpan(i + 5)) == 0)
            {
                return BinaryPrimitives.ReadUInt32BigEndian(bytes.AsSpan(i + 13));
            }
        }
        return null;
    }
}

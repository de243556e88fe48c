using System.Net.Sockets;
using System.Text;

namespace Ambient.LoadGen.Client;

/// <summary>
/// Reads HTTP/1.1 responses (status line, headers with Content-Length, body) off one connection, keeping surplus
/// bytes for the next (pipelined) response. Only what the echo server sends is understood.
/// </summary>
internal sealed class ResponseReader(Socket socket, int bufferSize = 64 * 1024)
{
    private readonly byte[] _buffer = new byte[bufferSize];
    private int _start;
    private int _end;

    /// <summary>Reads one whole response; returns its body length. Throws on a non-200 or a closed connection.</summary>
    public async ValueTask<long> ReadResponseAsync(CancellationToken ct)
    {
        var length = await ReadHeadAsync(ct).ConfigureAwait(false);
        var remaining = length;
        var buffered = (int)Math.Min(remaining, _end - _start);
        _start += buffered;
        remaining -= buffered;
        while (remaining > 0)
        {
            var n = await socket.ReceiveAsync(_buffer.AsMemory(0, (int)Math.Min(_buffer.Length, remaining)), SocketFlags.None, ct).ConfigureAwait(false);
            if (n == 0)
            {
                throw new IOException("connection closed mid-body");
            }
            remaining -= n;
        }
        if (_start == _end)
        {
            _start = _end = 0;
        }
        return length;
    }

    /// <summary>Reads the head and returns Content-Length; body bytes that arrived with it stay buffered.</summary>
    public async ValueTask<long> ReadHeadAsync(CancellationToken ct)
    {
        while (true)
        {
            var span = _buffer.AsSpan(_start, _end - _start);
            var headEnd = span.IndexOf("\r\n\r\n"u8);
            if (headEnd >= 0)
            {
                var head = span[..headEnd];
                if (!head.StartsWith("HTTP/1.1 200"u8))
                {
                    var lineEnd = head.IndexOf("\r\n"u8);
                    throw new IOException($"unexpected response: {Encoding.ASCII.GetString(lineEnd < 0 ? head : head[..lineEnd])}");
                }
                _start += headEnd + 4;
                return ContentLength(head);
            }
            if (_start > 0)
            {
                Buffer.BlockCopy(_buffer, _start, _buffer, 0, _end - _start);
                _end -= _start;
                _start = 0;
            }
            if (_end == _buffer.Length)
            {
                throw new IOException("response head too large");
            }
            var n = await socket.ReceiveAsync(_buffer.AsMemory(_end), SocketFlags.None, ct).ConfigureAwait(false);
            if (n == 0)
            {
                throw new IOException("connection closed before a response");
            }
            _end += n;
        }
    }

    /// <summary>Body bytes already buffered after <see cref="ReadHeadAsync"/>; consumes them.</summary>
    public int TakeBuffered()
    {
        var n = _end - _start;
        _start = _end = 0;
        return n;
    }

    private static long ContentLength(ReadOnlySpan<byte> head)
    {
        // Header names are case-insensitive: a proxy in HTTP mode (haproxy) may send "content-length".
        var rest = head;
        while (rest.IndexOf("\r\n"u8) is var e && e >= 0)
        {
            rest = rest[(e + 2)..];
            var end = rest.IndexOf("\r\n"u8);
            var line = end < 0 ? rest : rest[..end];
            if (line.Length > "Content-Length:"u8.Length && Ascii.EqualsIgnoreCase(line[.."Content-Length:"u8.Length], "Content-Length:"u8))
            {
                var value = line["Content-Length:"u8.Length..].Trim((byte)' ');
                return System.Buffers.Text.Utf8Parser.TryParse(value, out long length, out var used) && used == value.Length
                    ? length : throw new IOException("bad Content-Length");
            }
        }
        throw new IOException("response without Content-Length");
    }
}

using System.Buffers;
using System.Net;
using System.Net.Sockets;
using System.Text;

namespace Ambient.LoadGen.Echo;

/// <summary>
/// A small HTTP/1.1 keep-alive server, the benchmark's "echo pod". Routes:
/// <c>POST /echo</c> answers 200 with the request body; <c>GET /bulk?n=N</c> answers 200 with N zero bytes streamed
/// (the single-stream throughput pump); anything else answers 200 "ok". <c>Connection: close</c> closes after the
/// answer, server side first, so TIME_WAIT lands here and not on the client's bound pod address.
/// Pipelined requests are answered in order. Bodies must carry Content-Length (no chunked: the generator never sends it).
/// </summary>
internal sealed class EchoServer : IAsyncDisposable
{
    private const int BufferSize = 64 * 1024;
    private const int BulkChunk = 256 * 1024;
    private static readonly byte[] Zeros = new byte[BulkChunk];
    private static readonly byte[] HeaderEnd = "\r\n\r\n"u8.ToArray();

    private readonly Socket _listen;
    private readonly CancellationTokenSource _stop = new();
    private readonly Task _accept;

    private EchoServer(Socket listen)
    {
        _listen = listen;
        _accept = AcceptLoopAsync();
    }

    public IPEndPoint LocalEndPoint => (IPEndPoint)_listen.LocalEndPoint!;

    public static EchoServer Start(IPEndPoint endpoint)
    {
        var s = new Socket(endpoint.AddressFamily, SocketType.Stream, ProtocolType.Tcp);
        try
        {
            s.Bind(endpoint);
            s.Listen(1024);
        }
        catch (SocketException e)
        {
            s.Dispose();
            throw new IOException($"echo server cannot listen on {endpoint}: {e.SocketErrorCode}", e);
        }
        return new EchoServer(s);
    }

    private async Task AcceptLoopAsync()
    {
        while (!_stop.IsCancellationRequested)
        {
            Socket client;
            try
            {
                client = await _listen.AcceptAsync(_stop.Token).ConfigureAwait(false);
            }
            catch (Exception e) when (e is OperationCanceledException or ObjectDisposedException)
            {
                return;
            }
            catch (SocketException)
            {
                await Task.Delay(10).ConfigureAwait(false);
                continue;
            }
            _ = ServeAsync(client);
        }
    }

    private async Task ServeAsync(Socket socket)
    {
        await Task.Yield();
        socket.NoDelay = true;
        var buffer = ArrayPool<byte>.Shared.Rent(BufferSize);
        var output = ArrayPool<byte>.Shared.Rent(BufferSize + 512);
        int start = 0, end = 0;
        try
        {
            while (true)
            {
                var headerEnd = buffer.AsSpan(start, end - start).IndexOf(HeaderEnd);
                if (headerEnd < 0)
                {
                    if (start > 0)
                    {
                        Buffer.BlockCopy(buffer, start, buffer, 0, end - start);
                        end -= start;
                        start = 0;
                    }
                    if (end == buffer.Length)
                    {
                        return; // headers larger than 64 KiB: not a client of ours
                    }
                    var n = await socket.ReceiveAsync(buffer.AsMemory(end), SocketFlags.None, _stop.Token).ConfigureAwait(false);
                    if (n == 0)
                    {
                        return;
                    }
                    end += n;
                    continue;
                }
                var head = buffer.AsSpan(start, headerEnd);
                var request = Parse(head);
                start += headerEnd + 4;
                if (request.Kind == RouteKind.Echo)
                {
                    await EchoAsync(socket, buffer, output, start, end, request.ContentLength, request.Close).ConfigureAwait(false);
                    var buffered = Math.Min(end - start, (int)Math.Min(request.ContentLength, int.MaxValue));
                    start += buffered;
                }
                else
                {
                    // Bodies of other routes are not expected; skip what is buffered of them.
                    var skip = (int)Math.Min(request.ContentLength, end - start);
                    start += skip;
                    await SkipAsync(socket, buffer, request.ContentLength - skip).ConfigureAwait(false);
                    if (request.Kind == RouteKind.Bulk)
                    {
                        await BulkAsync(socket, output, request.BulkBytes, request.Close).ConfigureAwait(false);
                    }
                    else
                    {
                        var len = WriteHead(output, 2, request.Close);
                        "ok"u8.CopyTo(output.AsSpan(len));
                        await SendAllAsync(socket, output.AsMemory(0, len + 2)).ConfigureAwait(false);
                    }
                }
                if (start == end)
                {
                    start = end = 0;
                }
                if (request.Close)
                {
                    socket.Shutdown(SocketShutdown.Send);
                    // Wait for the client's FIN so our close does not turn into a reset.
                    while (await socket.ReceiveAsync(buffer.AsMemory(), SocketFlags.None, _stop.Token).ConfigureAwait(false) > 0)
                    {
                    }
                    return;
                }
            }
        }
        catch (Exception e) when (e is SocketException or OperationCanceledException or ObjectDisposedException or IOException)
        {
            // The client went away (the throughput pump is cut mid-body on purpose).
        }
        finally
        {
            ArrayPool<byte>.Shared.Return(buffer);
            ArrayPool<byte>.Shared.Return(output);
            socket.Dispose();
        }
    }

    private async Task EchoAsync(Socket socket, byte[] buffer, byte[] output, int start, int end, long contentLength, bool close)
    {
        var headLength = WriteHead(output, contentLength, close);
        var buffered = (int)Math.Min(end - start, contentLength);
        if (buffered == contentLength && headLength + buffered <= output.Length)
        {
            // The common case (1 KB bodies): one send for head and body.
            Buffer.BlockCopy(buffer, start, output, headLength, buffered);
            await SendAllAsync(socket, output.AsMemory(0, headLength + buffered)).ConfigureAwait(false);
            return;
        }
        await SendAllAsync(socket, output.AsMemory(0, headLength)).ConfigureAwait(false);
        await SendAllAsync(socket, buffer.AsMemory(start, buffered)).ConfigureAwait(false);
        var remaining = contentLength - buffered;
        while (remaining > 0)
        {
            var n = await socket.ReceiveAsync(output.AsMemory(0, (int)Math.Min(output.Length, remaining)), SocketFlags.None, _stop.Token).ConfigureAwait(false);
            if (n == 0)
            {
                throw new IOException("client closed mid-body");
            }
            await SendAllAsync(socket, output.AsMemory(0, n)).ConfigureAwait(false);
            remaining -= n;
        }
    }

    private async Task SkipAsync(Socket socket, byte[] scratch, long remaining)
    {
        while (remaining > 0)
        {
            var n = await socket.ReceiveAsync(scratch.AsMemory(0, (int)Math.Min(scratch.Length, remaining)), SocketFlags.None, _stop.Token).ConfigureAwait(false);
            if (n == 0)
            {
                throw new IOException("client closed mid-body");
            }
            remaining -= n;
        }
    }

    private async Task BulkAsync(Socket socket, byte[] output, long bytes, bool close)
    {
        var headLength = WriteHead(output, bytes, close);
        if (headLength + bytes <= output.Length)
        {
            // Small answers (the L7 benchmark's 1 KiB): head and body in one send, as a tuned server would.
            output.AsSpan(headLength, (int)bytes).Clear();
            await SendAllAsync(socket, output.AsMemory(0, headLength + (int)bytes)).ConfigureAwait(false);
            return;
        }
        await SendAllAsync(socket, output.AsMemory(0, headLength)).ConfigureAwait(false);
        while (bytes > 0)
        {
            var chunk = (int)Math.Min(Zeros.Length, bytes);
            await SendAllAsync(socket, Zeros.AsMemory(0, chunk)).ConfigureAwait(false);
            bytes -= chunk;
        }
    }

    private async ValueTask SendAllAsync(Socket socket, ReadOnlyMemory<byte> data)
    {
        while (!data.IsEmpty)
        {
            var n = await socket.SendAsync(data, SocketFlags.None, _stop.Token).ConfigureAwait(false);
            data = data[n..];
        }
    }

    private static int WriteHead(byte[] output, long contentLength, bool close)
    {
        var text = close
            ? $"HTTP/1.1 200 OK\r\nContent-Length: {contentLength}\r\nConnection: close\r\n\r\n"
            : $"HTTP/1.1 200 OK\r\nContent-Length: {contentLength}\r\n\r\n";
        return Encoding.ASCII.GetBytes(text, output);
    }

    internal enum RouteKind { Ok, Echo, Bulk }

    internal readonly record struct Request(RouteKind Kind, long ContentLength, long BulkBytes, bool Close);

    /// <summary>Request line and the two headers we care about (Content-Length, Connection); the rest is ignored.</summary>
    internal static Request Parse(ReadOnlySpan<byte> head)
    {
        var lineEnd = head.IndexOf("\r\n"u8);
        var line = lineEnd < 0 ? head : head[..lineEnd];
        var kind = RouteKind.Ok;
        long bulk = 0;
        if (line.StartsWith("POST /echo"u8))
        {
            kind = RouteKind.Echo;
        }
        else if (line.StartsWith("GET /bulk?n="u8))
        {
            var digits = line["GET /bulk?n="u8.Length..];
            var space = digits.IndexOf((byte)' ');
            if (space > 0 && long.TryParse(digits[..space], System.Globalization.NumberStyles.None, System.Globalization.CultureInfo.InvariantCulture, out var n))
            {
                kind = RouteKind.Bulk;
                bulk = n;
            }
        }
        long contentLength = 0;
        var close = false;
        var rest = lineEnd < 0 ? [] : head[(lineEnd + 2)..];
        while (!rest.IsEmpty)
        {
            var e = rest.IndexOf("\r\n"u8);
            var header = e < 0 ? rest : rest[..e];
            rest = e < 0 ? [] : rest[(e + 2)..];
            var colon = header.IndexOf((byte)':');
            if (colon <= 0)
            {
                continue;
            }
            var name = header[..colon];
            var value = header[(colon + 1)..].Trim((byte)' ');
            if (Ascii.EqualsIgnoreCase(name, "content-length"u8))
            {
                long.TryParse(value, System.Globalization.NumberStyles.None, System.Globalization.CultureInfo.InvariantCulture, out contentLength);
            }
            else if (Ascii.EqualsIgnoreCase(name, "connection"u8) && Ascii.EqualsIgnoreCase(value, "close"u8))
            {
                close = true;
            }
        }
        return new Request(kind, contentLength, bulk, close);
    }

    public async ValueTask DisposeAsync()
    {
        await _stop.CancelAsync().ConfigureAwait(false);
        _listen.Dispose();
        await _accept.ConfigureAwait(false);
    }
}

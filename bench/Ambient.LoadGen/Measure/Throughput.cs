using System.Diagnostics;
using System.Net.Sockets;
using System.Text;
using Ambient.LoadGen.Client;

namespace Ambient.LoadGen.Measure;

/// <summary>
/// Single-stream throughput: one connection, <c>GET /bulk?n=2^40</c>, and the response body is read as fast as it
/// comes (server -> client direction, i.e. the tunnel's download path). Bytes are counted for
/// <c>duration</c> after a <c>warmup</c> (TCP windows and the JIT settle), then the connection is cut.
/// </summary>
internal static class Throughput
{
    private const int ReadBuffer = 256 * 1024;

    public static async Task<double> RunGbpsAsync(Target target, TimeSpan warmup, TimeSpan duration, CancellationToken ct)
    {
        using var socket = await target.ConnectAsync(ct).ConfigureAwait(false);
        socket.ReceiveBufferSize = 4 * 1024 * 1024;
        var request = Encoding.ASCII.GetBytes($"GET /bulk?n={1L << 40} HTTP/1.1\r\nHost: {target.SocksHost ?? "echo"}\r\n\r\n");
        await socket.SendAsync(request, SocketFlags.None, ct).ConfigureAwait(false);
        var reader = new ResponseReader(socket);
        await reader.ReadHeadAsync(ct).ConfigureAwait(false);
        reader.TakeBuffered();
        var buffer = new byte[ReadBuffer];
        var begin = Stopwatch.GetTimestamp();
        var measureFrom = begin + (long)(warmup.TotalSeconds * Stopwatch.Frequency);
        var end = measureFrom + (long)(duration.TotalSeconds * Stopwatch.Frequency);
        long counted = 0;
        long now;
        while ((now = Stopwatch.GetTimestamp()) < end)
        {
            var n = await socket.ReceiveAsync(buffer, SocketFlags.None, ct).ConfigureAwait(false);
            if (n == 0)
            {
                throw new IOException("bulk stream ended early");
            }
            if (now >= measureFrom)
            {
                counted += n;
            }
        }
        var seconds = (double)(now - measureFrom) / Stopwatch.Frequency;
        // Cut the stream with a reset rather than reading 1 TiB: linger 0 discards what is in flight at once.
        socket.LingerState = new LingerOption(true, 0);
        return counted * 8 / seconds / 1e9;
    }
}

using System.Diagnostics;
using System.Net.Sockets;
using System.Text;
using Ambient.LoadGen.Client;

namespace Ambient.LoadGen.Measure;

/// <summary>
/// New connections per second, closed loop: <c>workers</c> loops each connect (through SOCKS5 when the target says
/// so), send one <c>GET /</c> with <c>Connection: close</c>, read the answer and the server's close, and start again.
/// Connections completed after the warmup count.
/// </summary>
internal static class ConnectionRate
{
    public static async Task<(double PerSecond, long Completed, long AllCompleted, long Errors)> RunAsync(Target target, int workers, TimeSpan warmup, TimeSpan duration, CancellationToken ct)
    {
        var request = Encoding.ASCII.GetBytes($"GET / HTTP/1.1\r\nHost: {target.SocksHost ?? "echo"}\r\nConnection: close\r\n\r\n");
        var start = Stopwatch.GetTimestamp();
        var measureFrom = start + (long)(warmup.TotalSeconds * Stopwatch.Frequency);
        var end = measureFrom + (long)(duration.TotalSeconds * Stopwatch.Frequency);
        long completed = 0, all = 0, errors = 0;
        var tasks = new Task[workers];
        for (var w = 0; w < workers; w++)
        {
            tasks[w] = Task.Run(async () =>
            {
                var scratch = new byte[512];
                while (Stopwatch.GetTimestamp() < end)
                {
                    try
                    {
                        using var socket = await target.ConnectAsync(ct).ConfigureAwait(false);
                        await socket.SendAsync(request, SocketFlags.None, ct).ConfigureAwait(false);
                        var reader = new ResponseReader(socket, 4096);
                        await reader.ReadResponseAsync(ct).ConfigureAwait(false);
                        // The server closes first (Connection: close); wait for its FIN so TIME_WAIT stays on its side.
                        while (await socket.ReceiveAsync(scratch, SocketFlags.None, ct).ConfigureAwait(false) > 0)
                        {
                        }
                        Interlocked.Increment(ref all);
                        if (Stopwatch.GetTimestamp() is var t && t >= measureFrom && t < end)
                        {
                            Interlocked.Increment(ref completed);
                        }
                    }
                    catch (Exception e) when (e is IOException or SocketException)
                    {
                        Interlocked.Increment(ref errors);
                        if (errors > 1000)
                        {
                            throw new IOException($"too many connection errors through {target}: {e.Message}", e);
                        }
                    }
                }
            }, ct);
        }
        await Task.WhenAll(tasks).ConfigureAwait(false);
        return (completed / duration.TotalSeconds, completed, all, errors);
    }
}

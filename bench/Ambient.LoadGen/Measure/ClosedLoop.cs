using System.Diagnostics;
using System.Net.Sockets;
using Ambient.LoadGen.Client;

namespace Ambient.LoadGen.Measure;

/// <summary>
/// Closed-loop maximum rate: <c>connections</c> keep-alive connections, each sending the next request as soon as the
/// previous answer has been read (no pipelining), as fast as the path allows. Requests completed after a
/// <c>warmup</c> are counted for <c>duration</c>. The request bytes and each connection's read buffer are allocated
/// once; the loop itself allocates nothing per request.
/// </summary>
internal static class ClosedLoop
{
    internal sealed record Result(double RequestsPerSecond, long Requests, long RequestsIncludingWarmup);

    public static async Task<Result> RunAsync(Target target, byte[] request, int connections, TimeSpan warmup, TimeSpan duration, CancellationToken ct)
    {
        var sockets = new Socket[connections];
        try
        {
            for (var i = 0; i < connections; i++)
            {
                sockets[i] = await target.ConnectAsync(ct).ConfigureAwait(false);
            }
            var begin = Stopwatch.GetTimestamp();
            var measureFrom = begin + (long)(warmup.TotalSeconds * Stopwatch.Frequency);
            var end = measureFrom + (long)(duration.TotalSeconds * Stopwatch.Frequency);
            var counted = new long[connections];
            var all = new long[connections];
            var workers = new Task[connections];
            for (var c = 0; c < connections; c++)
            {
                var conn = c;
                workers[c] = Task.Run(async () =>
                {
                    var socket = sockets[conn];
                    var reader = new ResponseReader(socket, 16 * 1024);
                    while (true)
                    {
                        var now = Stopwatch.GetTimestamp();
                        if (now >= end)
                        {
                            return;
                        }
                        await socket.SendAsync(request, SocketFlags.None, ct).ConfigureAwait(false);
                        await reader.ReadResponseAsync(ct).ConfigureAwait(false);
                        all[conn]++;
                        if (Stopwatch.GetTimestamp() is var done && done >= measureFrom && done < end)
                        {
                            counted[conn]++;
                        }
                    }
                }, ct);
            }
            await Task.WhenAll(workers).ConfigureAwait(false);
            long sum = 0, sumAll = 0;
            for (var c = 0; c < connections; c++)
            {
                sum += counted[c];
                sumAll += all[c];
            }
            return new Result(sum / duration.TotalSeconds, sum, sumAll);
        }
        finally
        {
            foreach (var s in sockets)
            {
                s?.Dispose();
            }
        }
    }
}

using System.Diagnostics;
using System.Net.Sockets;
using System.Runtime.InteropServices;
using System.Text;
using Ambient.LoadGen.Client;

namespace Ambient.LoadGen.Measure;

internal sealed record LatencyResult(double P50Ms, double P90Ms, double P99Ms, double P999Ms, double MaxMs, long Requests, double AchievedRps, double MeanSendLagUs)
{
    /// <summary>Every measured latency (Stopwatch ticks, sorted), so the report can pool runs; not written to the JSON.</summary>
    [System.Text.Json.Serialization.JsonIgnore]
    public long[] SortedTicks { get; init; } = [];
}

/// <summary>
/// Open-loop latency at a fixed rate, corrected for coordinated omission the way wrk2 does it: request i is DUE at
/// t0 + i/rate whatever happened before, and its latency runs from that intended time to the end of its response.
/// A stalled server therefore shows up as the queueing delay every later request really suffers, instead of as a
/// pause in sending. Requests go round-robin over the connections and are pipelined (HTTP/1.1): the sender never
/// waits for an answer. One sender thread sleeps until each due time with clock_nanosleep(TIMER_ABSTIME) (sub-ms,
/// no spinning: the proxies under test need the other core); one receiver loop per connection.
/// </summary>
internal static partial class OpenLoopLatency
{
    public static Task<LatencyResult> RunAsync(Target target, int rate, int connections, int bodyBytes,
        TimeSpan warmup, TimeSpan duration, CancellationToken ct) =>
        RunAsync(target, BuildRequest(target, bodyBytes), rate, connections, warmup, duration, ct);

    /// <summary>The same, sending <paramref name="request"/> (one whole HTTP/1.1 request) every time.</summary>
    public static async Task<LatencyResult> RunAsync(Target target, byte[] request, int rate, int connections,
        TimeSpan warmup, TimeSpan duration, CancellationToken ct)
    {
        var sockets = new Socket[connections];
        try
        {
            for (var i = 0; i < connections; i++)
            {
                sockets[i] = await target.ConnectAsync(ct).ConfigureAwait(false);
            }
            var total = (int)((warmup + duration).TotalSeconds * rate);
            var warmupCount = (int)(warmup.TotalSeconds * rate);
            var latencies = new long[total];
            var t0 = Stopwatch.GetTimestamp() + Stopwatch.Frequency / 20;
            var interval = (double)Stopwatch.Frequency / rate;
            long received = 0;
            var receivers = new Task[connections];
            for (var c = 0; c < connections; c++)
            {
                var conn = c;
                receivers[c] = Task.Run(async () =>
                {
                    var reader = new ResponseReader(sockets[conn]);
                    // Request i went to connection i % connections; responses come back in order.
                    for (var i = conn; i < total; i += connections)
                    {
                        await reader.ReadResponseAsync(ct).ConfigureAwait(false);
                        var done = Stopwatch.GetTimestamp();
                        latencies[i] = done - (t0 + (long)(i * interval));
                        Interlocked.Increment(ref received);
                    }
                }, ct);
            }
            double lagSum = 0;
            Exception? sendError = null;
            var sender = new Thread(() =>
            {
                try
                {
                    for (var i = 0; i < total; i++)
                    {
                        var intended = t0 + (long)(i * interval);
                        SleepUntil(intended);
                        lagSum += Stopwatch.GetTimestamp() - intended;
                        var c = i % connections;
                        var sent = 0;
                        while (sent < request.Length)
                        {
                            sent += sockets[c].Send(request, sent, request.Length - sent, SocketFlags.None);
                        }
                    }
                }
                catch (Exception e) when (e is SocketException or ObjectDisposedException)
                {
                    sendError = e;
                }
            }) { IsBackground = true, Name = "open-loop sender", Priority = ThreadPriority.AboveNormal };
            sender.Start();
            var all = Task.WhenAll(receivers);
            var deadline = warmup + duration + TimeSpan.FromSeconds(15);
            if (await Task.WhenAny(all, Task.Delay(deadline, ct)).ConfigureAwait(false) != all)
            {
                throw new IOException($"latency run through {target}: only {Interlocked.Read(ref received)} of {total} responses within {deadline.TotalSeconds:F0} s");
            }
            await all.ConfigureAwait(false);
            sender.Join();
            if (sendError is not null)
            {
                throw new IOException($"latency run through {target}: send failed: {sendError.Message}", sendError);
            }
            var measured = latencies.AsSpan(warmupCount).ToArray();
            Array.Sort(measured);
            var lastDue = t0 + (long)((total - 1) * interval);
            return new LatencyResult(
                Ms(Percentile(measured, 0.50)), Ms(Percentile(measured, 0.90)), Ms(Percentile(measured, 0.99)), Ms(Percentile(measured, 0.999)),
                Ms(measured[^1]), measured.Length,
                (total - 1) / ((double)(lastDue - t0) / Stopwatch.Frequency),
                lagSum / total / Stopwatch.Frequency * 1e6) { SortedTicks = measured };
        }
        finally
        {
            foreach (var s in sockets)
            {
                s?.Dispose();
            }
        }
    }

    private static byte[] BuildRequest(Target target, int bodyBytes)
    {
        var head = Encoding.ASCII.GetBytes($"POST /echo HTTP/1.1\r\nHost: {target.SocksHost ?? "echo"}\r\nContent-Type: application/octet-stream\r\nContent-Length: {bodyBytes}\r\n\r\n");
        var request = new byte[head.Length + bodyBytes];
        head.CopyTo(request, 0);
        for (var i = 0; i < bodyBytes; i++)
        {
            request[head.Length + i] = (byte)('a' + i % 26);
        }
        return request;
    }

    internal static long Percentile(long[] sorted, double q) => sorted[Math.Min(sorted.Length - 1, (int)Math.Ceiling(q * sorted.Length) - 1)];

    internal static double Ms(long ticks) => (double)ticks / Stopwatch.Frequency * 1000;

    private static void SleepUntil(long timestamp)
    {
        // Stopwatch on Linux is CLOCK_MONOTONIC in nanoseconds, so the due time is an absolute clock_nanosleep deadline.
        if (OperatingSystem.IsLinux() && Stopwatch.Frequency == 1_000_000_000)
        {
            var ts = new Timespec { Seconds = timestamp / 1_000_000_000, Nanoseconds = timestamp % 1_000_000_000 };
            while (ClockNanosleep(ClockMonotonic, TimerAbstime, ref ts, IntPtr.Zero) == Eintr)
            {
            }
            return;
        }
        while (Stopwatch.GetTimestamp() is var now && now < timestamp)
        {
            var ms = (int)((timestamp - now) * 1000 / Stopwatch.Frequency);
            Thread.Sleep(Math.Max(ms - 1, 0));
        }
    }

    private const int ClockMonotonic = 1;
    private const int TimerAbstime = 1;
    private const int Eintr = 4;

    [StructLayout(LayoutKind.Sequential)]
    private struct Timespec
    {
        public long Seconds;
        public long Nanoseconds;
    }

    [LibraryImport("libc", EntryPoint = "clock_nanosleep")]
    private static partial int ClockNanosleep(int clock, int flags, ref Timespec request, IntPtr remain);
}

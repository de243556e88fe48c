using System.Text;
using System.Text.RegularExpressions;
using Ambient.Dataplane.Hosting;
using Microsoft.Extensions.Logging;

namespace Ambient.Ztunnel.Tests.Hosting;

/// <summary>The proxies' console logs (<see cref="ProxyProcess.CreateConsoleLogging"/>): the simple console format,
/// every line in order, written in batches, and never a wait for stdout on the logging thread.</summary>
public sealed partial class ConsoleLoggingTests
{
    private static readonly TimeSpan Timeout = TimeSpan.FromSeconds(30);

    [Fact]
    public void Lines_keep_the_console_format_and_their_order_and_are_all_written_by_dispose()
    {
        var output = new LockedMemoryStream();
        var factory = ProxyProcess.CreateConsoleLogging(output, out _);
        var logger = factory.CreateLogger("Ambient.Test.Category");
        const int Threads = 3, PerThread = 2000;
        var threads = new Thread[Threads];
        for (var t = 0; t < Threads; t++)
        {
            var thread = t;
            threads[t] = new Thread(() =>
            {
                for (var i = 0; i < PerThread; i++)
                {
                    LogLine(logger, thread, i);
                }
            });
            threads[t].Start();
        }
        foreach (var thread in threads)
        {
            thread.Join();
        }
        logger.LogWarning(new InvalidOperationException("boom\nsecond line"), "failed {What}", "here");
        factory.Dispose();
        // A line logged after the dispose (a task still running while the process exits) is written all the same.
        logger.LogInformation("late");

        var lines = output.Text().Split('\n', StringSplitOptions.RemoveEmptyEntries);
        Assert.Equal(Threads * PerThread + 2, lines.Length);
        var next = new int[Threads];
        for (var n = 0; n < Threads * PerThread; n++)
        {
            var match = LineFormat().Match(lines[n]);
            Assert.True(match.Success, $"line {n} is not in the console format: {lines[n]}");
            var thread = int.Parse(match.Groups[1].Value, System.Globalization.CultureInfo.InvariantCulture);
            Assert.Equal(next[thread]++, int.Parse(match.Groups[2].Value, System.Globalization.CultureInfo.InvariantCulture));
        }
        // An exception stays on the line (single-line format), after the message.
        Assert.Matches(@"^\d\d:\d\d:\d\d\.\d{3} warn: Ambient\.Test\.Category\[0\] failed here System\.InvalidOperationException: boom second line$", lines[^2]);
        Assert.EndsWith("info: Ambient.Test.Category[0] late", lines[^1]);
    }

    [Fact]
    public void The_forwarders_per_request_lines_are_left_out_and_its_warnings_kept()
    {
        // YARP's forwarder (the waypoint's) logs "Proxying to ..." and "Received HTTP/1.1 response 200." at
        // Information for every request: two lines per request beside the access log, formatted on the request path.
        var output = new LockedMemoryStream();
        var factory = ProxyProcess.CreateConsoleLogging(output, out _);
        var forwarder = factory.CreateLogger("Yarp.ReverseProxy.Forwarder.HttpForwarder");
        forwarder.LogInformation("Proxying to http://10.0.0.1:8080/ HTTP/1.1 RequestVersionExact no-streaming");
        forwarder.LogWarning("Request: An error was encountered before receiving a response.");
        factory.Dispose();

        var lines = output.Text().Split('\n', StringSplitOptions.RemoveEmptyEntries);
        Assert.Single(lines);
        Assert.Contains("warn: Yarp.ReverseProxy.Forwarder.HttpForwarder", lines[0], StringComparison.Ordinal);
    }

    [Fact]
    public async Task Logging_never_waits_for_a_stdout_nobody_reads_and_the_lines_follow_once_it_moves()
    {
        // 10,000 lines: the console logger would block the caller at its 2,500-line queue.
        var output = new StalledStream();
        var factory = ProxyProcess.CreateConsoleLogging(output, out _);
        var logger = factory.CreateLogger("Ambient.Test.Category");
        var logging = Task.Run(() =>
        {
            for (var i = 0; i < 10_000; i++)
            {
                LogLine(logger, 0, i);
            }
        });
        await logging.WaitAsync(Timeout, TestContext.Current.CancellationToken);

        output.Release();
        factory.Dispose();
        var lines = output.Text().Split('\n', StringSplitOptions.RemoveEmptyEntries);
        Assert.Equal(10_000, lines.Length);
        Assert.EndsWith("t0 line 9999", lines[^1]);
    }

    [Fact]
    public void Past_its_bound_a_stalled_stdout_costs_lines_and_says_how_many()
    {
        var output = new StalledStream();
        var factory = ProxyProcess.CreateConsoleLogging(output, out var sink);
        var logger = factory.CreateLogger("Ambient.Test.Category");
        var line = new string('x', 1000);
        // Twice the bound: the batch the writer took before stdout stalled does not count against it.
        var count = 2 * BatchedConsoleLoggerProvider.MaxPendingBytes / line.Length;
        for (var i = 0; i < count; i++)
        {
            logger.LogInformation("{Line}", line);
        }

        output.Release();
        sink.Flush();
        logger.LogInformation("after");
        factory.Dispose();
        var text = output.Text();
        Assert.Matches(@"\n\d+ log lines were dropped: stdout was not read while 4 MiB of lines waited\n[^\n]+info: Ambient\.Test\.Category\[0\] after\n$", text);
    }

    [LoggerMessage(EventId = 7, Level = LogLevel.Information, Message = "t{Thread} line {Line}")]
    private static partial void LogLine(ILogger logger, int thread, int line);

    [GeneratedRegex(@"^\d\d:\d\d:\d\d\.\d{3} info: Ambient\.Test\.Category\[7\] t(\d) line (\d+)$")]
    private static partial Regex LineFormat();

    private class LockedMemoryStream : Stream
    {
        private readonly MemoryStream _bytes = new();

        public string Text()
        {
            lock (_bytes)
            {
                return Encoding.UTF8.GetString(_bytes.ToArray());
            }
        }

        public override void Write(byte[] buffer, int offset, int count)
        {
            lock (_bytes)
            {
                _bytes.Write(buffer, offset, count);
            }
        }

        public override bool CanRead => false;
        public override bool CanSeek => false;
        public override bool CanWrite => true;
        public override long Length => throw new NotSupportedException();
        public override long Position { get => throw new NotSupportedException(); set => throw new NotSupportedException(); }
        public override void Flush()
        {
        }
        public override int Read(byte[] buffer, int offset, int count) => throw new NotSupportedException();
        public override long Seek(long offset, SeekOrigin origin) => throw new NotSupportedException();
        public override void SetLength(long value) => throw new NotSupportedException();
    }

    /// <summary>A stdout pipe nobody reads: writes block until <see cref="Release"/>.</summary>
    private sealed class StalledStream : LockedMemoryStream
    {
        private readonly ManualResetEventSlim _released = new();

        public void Release() => _released.Set();

        public override void Write(byte[] buffer, int offset, int count)
        {
            _released.Wait();
            base.Write(buffer, offset, count);
        }
    }
}

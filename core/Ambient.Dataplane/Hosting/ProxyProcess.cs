using System.Runtime.InteropServices;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging.Console;

namespace Ambient.Dataplane.Hosting;

/// <summary>
/// What every proxy executable does around its proxy: console logs in one format, and a stop signal. SIGTERM (what
/// a kubelet or a supervisor sends) and SIGINT are cancelled here rather than left to the runtime, which would end
/// the process as soon as the ProcessExit handlers return: Main then gets to dispose the proxy, and the HBONE side
/// drains its tunnels (GOAWAY, up to the drain timeout) before the process exits.
/// </summary>
internal sealed class ProxyProcess : IDisposable
{
    // Lives as long as the process (never disposed): ProcessExit may fire after Main returns.
    private readonly CancellationTokenSource _stop = new();
    private readonly PosixSignalRegistration _terminate;
    private readonly PosixSignalRegistration _interrupt;

    public ProxyProcess()
    {
        _terminate = PosixSignalRegistration.Create(PosixSignal.SIGTERM, Stop);
        _interrupt = PosixSignalRegistration.Create(PosixSignal.SIGINT, Stop);
        AppDomain.CurrentDomain.ProcessExit += (_, _) => _stop.Cancel();
    }

    /// <summary>
    /// Runs a proxy executable's life: console logs, start, one line saying where it serves, then until SIGTERM or
    /// SIGINT; the proxy is disposed (and drains) before this returns. Exit code 0, or 1 when it cannot start for
    /// an I/O reason (a file it needs, a port in use), reported as <c>name: reason</c>.
    /// </summary>
    public static async Task<int> RunAsync<TProxy>(string name, Func<ILoggerFactory, CancellationToken, Task<TProxy>> start, Func<TProxy, string> banner)
        where TProxy : IAsyncDisposable
    {
        using var loggerFactory = CreateConsoleLogging(Console.OpenStandardOutput(), out var consoleLogs);
        using var process = new ProxyProcess();
        try
        {
            var proxy = await start(loggerFactory, process.Stopping).ConfigureAwait(false);
            await using (proxy.ConfigureAwait(false))
            {
                // After the lines logged while starting, as before.
                consoleLogs.Flush();
                Console.WriteLine(banner(proxy));
                await process.WaitForStopAsync().ConfigureAwait(false);
            }
            return 0;
        }
        catch (IOException e)
        {
            Console.Error.WriteLine($"{name}: {e.Message}");
            return 1;
        }
    }

    /// <summary>Cancelled by SIGTERM, SIGINT or process exit.</summary>
    public CancellationToken Stopping => _stop.Token;

    /// <summary>Completes (without throwing) once the process is asked to stop.</summary>
    public Task WaitForStopAsync() => Task.Delay(Timeout.Infinite, _stop.Token).ContinueWith(static _ => { }, TaskScheduler.Default);

    /// <summary>
    /// Single-line console logs with timestamps; ASP.NET Core's and YARP's own only from warnings up. The lines are the simple
    /// console formatter's, written to <paramref name="output"/> in batches by <paramref name="sink"/> (see
    /// <see cref="BatchedConsoleLoggerProvider"/>) instead of one write per line by the console logger.
    /// </summary>
    internal static ILoggerFactory CreateConsoleLogging(Stream output, out BatchedConsoleLoggerProvider sink)
    {
        BatchedConsoleLoggerProvider? created = null;
        var factory = LoggerFactory.Create(l =>
        {
            l.AddSimpleConsole(o => { o.SingleLine = true; o.TimestampFormat = "HH:mm:ss.fff "; });
            l.AddFilter("Microsoft.AspNetCore", LogLevel.Warning);
            // YARP's forwarder (the waypoint's) writes two Information lines per request ("Proxying to", "Received
            // response") beside our access log line, formatted on the request path (in a perf profile of the waypoint at
            // 1000 req/s the first line alone was 2.7% of its CPU).
            l.AddFilter("Yarp", LogLevel.Warning);
            // The console logger's formatter stays (registered by AddSimpleConsole); its provider gives way to ours.
            for (var i = l.Services.Count - 1; i >= 0; i--)
            {
                if (l.Services[i].ServiceType == typeof(ILoggerProvider) && l.Services[i].ImplementationType == typeof(ConsoleLoggerProvider))
                {
                    l.Services.RemoveAt(i);
                }
            }
            l.Services.AddSingleton<ILoggerProvider>(services =>
                created = new BatchedConsoleLoggerProvider(SimpleFormatter(services.GetServices<ConsoleFormatter>()), output));
        });
        sink = created ?? throw new InvalidOperationException("the logger factory did not create its console sink");
        return factory;
    }

    private static ConsoleFormatter SimpleFormatter(IEnumerable<ConsoleFormatter> formatters)
    {
        foreach (var formatter in formatters)
        {
            if (formatter.Name == ConsoleFormatterNames.Simple)
            {
                return formatter;
            }
        }
        throw new InvalidOperationException("the simple console formatter is not registered");
    }

    private void Stop(PosixSignalContext context)
    {
        context.Cancel = true;
        _stop.Cancel();
    }

    public void Dispose()
    {
        _terminate.Dispose();
        _interrupt.Dispose();
    }
}

using System.Runtime.InteropServices;

namespace Ambient.Ztunnel;

internal static class Program
{
    private const string InlineSocketCompletions = "DOTNET_SYSTEM_NET_SOCKETS_INLINE_COMPLETIONS";

    // Wiring only; see NodeProxy.
    private static async Task<int> Main(string[] args)
    {
        // Socket completions run on the epoll threads (one per core) instead of being queued to the thread pool: a
        // proxy does a little work per read and write, so the hop was most of its cost (bench/run.sh l4: CPU per
        // request down by a third, P99 down by 40% at 1000 req/s). The runtime reads this once, at the first socket
        // operation, so it must be set before any. An explicit setting (e.g. 0) wins.
        if (Environment.GetEnvironmentVariable(InlineSocketCompletions) is null)
            Environment.SetEnvironmentVariable(InlineSocketCompletions, "1");
        var options = ZtunnelOptions.TryParse(args, out var error);
        if (options is null)
        {
            Console.Error.WriteLine(error);
            return 2;
        }
        using var loggerFactory = LoggerFactory.Create(l =>
        {
            l.AddSimpleConsole(o => { o.SingleLine = true; o.TimestampFormat = "HH:mm:ss.fff "; });
            l.AddFilter("Microsoft.AspNetCore", LogLevel.Warning);
        });
        // Lives as long as the process: ProcessExit may fire after Main returns.
        var stop = new CancellationTokenSource();
        // SIGTERM (what a kubelet or a supervisor sends) and SIGINT are cancelled here rather than left to the runtime,
        // which would end the process as soon as the ProcessExit handlers return: Main then gets to dispose the proxy,
        // and the HBONE side drains its tunnels (GOAWAY, up to the drain timeout) before the process exits.
        void Stop(PosixSignalContext context)
        {
            context.Cancel = true;
            stop.Cancel();
        }
        using var terminate = PosixSignalRegistration.Create(PosixSignal.SIGTERM, Stop);
        using var interrupt = PosixSignalRegistration.Create(PosixSignal.SIGINT, Stop);
        AppDomain.CurrentDomain.ProcessExit += (_, _) => stop.Cancel();
        try
        {
            await using var proxy = await NodeProxy.StartAsync(options, loggerFactory, stop.Token);
            Console.WriteLine($"ztunnel {options.Node}: admin http://{proxy.Admin.AdminEndpoint}, metrics http://{proxy.Admin.MetricsEndpoint}/metrics, ready http://{proxy.Admin.ReadinessEndpoint}/healthz/ready");
            await Task.Delay(Timeout.Infinite, stop.Token).ContinueWith(_ => { }, TaskScheduler.Default);
            return 0;
        }
        catch (IOException e)
        {
            Console.Error.WriteLine($"ztunnel: {e.Message}");
            return 1;
        }
    }
}

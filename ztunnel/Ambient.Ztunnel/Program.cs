namespace Ambient.Ztunnel;

internal static class Program
{
    // Wiring only; see NodeProxy.
    private static async Task<int> Main(string[] args)
    {
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
        Console.CancelKeyPress += (_, e) => { e.Cancel = true; stop.Cancel(); };
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

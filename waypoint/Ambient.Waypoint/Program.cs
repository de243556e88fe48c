using System.Runtime.InteropServices;

namespace Ambient.Waypoint;

internal static class Program
{
    // Wiring only; see WaypointProxy.
    private static async Task<int> Main(string[] args)
    {
        var options = WaypointOptions.TryParse(args, out var error);
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
        // SIGTERM/SIGINT end Main normally, so the proxy is disposed and its tunnels drain (as the ztunnel does).
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
            await using var proxy = await WaypointProxy.StartAsync(options, loggerFactory, stop.Token);
            Console.WriteLine($"waypoint {options.Namespace}/{options.Name} ({options.Identity}): hbone {proxy.HboneEndpoint}, ready http://{proxy.AdminEndpoint}/healthz/ready");
            await Task.Delay(Timeout.Infinite, stop.Token).ContinueWith(_ => { }, TaskScheduler.Default);
            return 0;
        }
        catch (IOException e)
        {
            Console.Error.WriteLine($"waypoint: {e.Message}");
            return 1;
        }
    }
}

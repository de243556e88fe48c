using Ambient.Dataplane.Hosting;

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
        // SIGTERM/SIGINT end the run normally, so the proxy is disposed and its tunnels drain.
        return await ProxyProcess.RunAsync("waypoint", (logs, stopping) => WaypointProxy.StartAsync(options, logs, stopping),
            proxy => $"waypoint {options.Namespace}/{options.Name} ({options.Identity}): hbone {proxy.HboneEndpoint}, ready http://{proxy.AdminEndpoint}/healthz/ready");
    }
}

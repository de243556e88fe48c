using Ambient.Dataplane.Hosting;

namespace Ambient.Waypoint;

internal static class Program
{
    private const string InlineSocketCompletions = "DOTNET_SYSTEM_NET_SOCKETS_INLINE_COMPLETIONS";

    // Wiring only; see WaypointProxy.
    private static async Task<int> Main(string[] args)
    {
        // Socket completions run on the epoll thread instead of hopping to the thread pool. A request through the
        // waypoint is a chain of short async steps over sockets and each hop cost a futex wake-up (about 38% of the
        // waypoint's CPU was kernel time); in one l7 bench run on a busy host it used 21 cpu-s per 100k requests
        // against 37 without. Nothing on its socket paths blocks (the console log is written by its own thread). Read once when
        // the socket engine starts, so it is set before the first socket; an explicit setting wins.
        if (Environment.GetEnvironmentVariable(InlineSocketCompletions) is null)
        {
            Environment.SetEnvironmentVariable(InlineSocketCompletions, "1");
        }
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

using Ambient.Dataplane.Hosting;

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
        return await ProxyProcess.RunAsync("ztunnel", (logs, stopping) => NodeProxy.StartAsync(options, logs, stopping),
            proxy => $"ztunnel {options.Node}: admin http://{proxy.Admin.AdminEndpoint}, metrics http://{proxy.Admin.MetricsEndpoint}/metrics, ready http://{proxy.Admin.ReadinessEndpoint}/healthz/ready");
    }
}

using Ambient.Dataplane.Hosting;

namespace Ambient.Ztunnel;

internal static class Program
{
    private const string InlineSocketCompletions = "DOTNET_SYSTEM_NET_SOCKETS_INLINE_COMPLETIONS";
    private const string SocketThreadCount = "DOTNET_SYSTEM_NET_SOCKETS_THREAD_COUNT";
    private const string WorkerThreads = "ZTUNNEL_WORKER_THREADS";

    // Wiring only; see NodeProxy.
    private static async Task<int> Main(string[] args)
    {
        // Socket completions run on the epoll threads (one per core) instead of being queued to the thread pool: a
        // proxy does a little work per read and write, so the hop was most of its cost (bench/run.sh l4: CPU per
        // request down by a third, P99 down by 40% at 1000 req/s). The runtime reads this once, at the first socket
        // operation, so it must be set before any. An explicit setting (e.g. 0) wins.
        if (Environment.GetEnvironmentVariable(InlineSocketCompletions) is null)
            Environment.SetEnvironmentVariable(InlineSocketCompletions, "1");
        // With inline completions those epoll threads are the proxy's workers. Like Istio's ztunnel (ZTUNNEL_WORKER_THREADS,
        // default 2) the node proxy keeps to a bounded share of the node it shares with the workloads: half its cores,
        // one or two. On a 2-core node that is one, and there it pays: with one per ztunnel instead of two, bench/run.sh
        // l7 measured the mesh's CPU per request at max down from ~17 to 13-15 cpu-s per 100k and its max req/s from
        // 0.45-0.50x the haproxy pair's to 0.56-0.67x (fewer threads contending with the apps and each other for the
        // cores); bench/run.sh l4 stayed where it was. An explicit DOTNET_SYSTEM_NET_SOCKETS_THREAD_COUNT wins.
        if (Environment.GetEnvironmentVariable(SocketThreadCount) is null)
        {
            var workers = WorkerThreadCount(Environment.GetEnvironmentVariable(WorkerThreads), Environment.ProcessorCount, out var workersError);
            if (workers is null)
            {
                Console.Error.WriteLine(workersError);
                return 2;
            }
            Environment.SetEnvironmentVariable(SocketThreadCount, workers.Value.ToString(System.Globalization.CultureInfo.InvariantCulture));
        }
        var options = ZtunnelOptions.TryParse(args, out var error);
        if (options is null)
        {
            Console.Error.WriteLine(error);
            return 2;
        }
        return await ProxyProcess.RunAsync("ztunnel", (logs, stopping) => NodeProxy.StartAsync(options, logs, stopping),
            proxy => $"ztunnel {options.Node}: admin http://{proxy.Admin.AdminEndpoint}, metrics http://{proxy.Admin.MetricsEndpoint}/metrics, ready http://{proxy.Admin.ReadinessEndpoint}/healthz/ready");
    }

    /// <summary>The worker (epoll) thread count: <paramref name="configured"/> (ZTUNNEL_WORKER_THREADS) when set, else half
    /// the cores, one or two. Null with an error naming the variable when it is set to anything but a positive integer.</summary>
    internal static int? WorkerThreadCount(string? configured, int processorCount, out string? error)
    {
        error = null;
        if (configured is null)
        {
            return Math.Clamp(processorCount / 2, 1, 2);
        }
        if (int.TryParse(configured, System.Globalization.NumberStyles.None, System.Globalization.CultureInfo.InvariantCulture, out var count) && count is > 0 and <= 1024)
        {
            return count;
        }
        // Echoed short: the value is the operator's, but a huge one should not flood the log.
        var shown = configured.Length <= 32 ? configured : configured[..32] + "...";
        error = $"{WorkerThreads}='{shown}': expected a whole number of threads from 1 to 1024";
        return null;
    }
}

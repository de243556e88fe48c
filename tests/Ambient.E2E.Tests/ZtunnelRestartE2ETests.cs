using System.Diagnostics;

namespace Ambient.E2E.Tests;

/// <summary>
/// The destination node's ztunnel is SIGKILLed: traffic from node A to the pod on node C never notices; traffic to the
/// pod on node B fails while B's ztunnel is gone, and works again once ambientctl has restarted it.
/// </summary>
public sealed class ZtunnelRestartE2ETests : IAsyncLifetime
{
    private MeshRun? _mesh;
    private MeshRun Mesh => _mesh!;

    public async ValueTask InitializeAsync()
    {
        _mesh = await MeshRun.UpAsync("zrestart", ns =>
            MeshYaml.Namespace(ns) + MeshYaml.ServiceAccount(ns, "client")
            + MeshYaml.Sleep(ns, "client", "client", "zr-a")
            + MeshYaml.Echo(ns, "echo-b", "default", "zr-b")
            + MeshYaml.Echo(ns, "echo-c", "default", "zr-c"));
    }

    [Fact]
    public async Task DestinationZtunnelKilled_OtherNodesUnaffected_ItsPodsServedAgainAfterRestart()
    {
        var ct = TestContext.Current.CancellationToken;
        var client = Mesh.Pod("client");
        var toB = $"http://echo-b.{Mesh.Namespace}.svc.cluster.local/b";
        var toC = $"http://echo-c.{Mesh.Namespace}.svc.cluster.local/c";
        using var kept = MeshRun.ClientIn(client, keepAlive: true);
        using var fresh = MeshRun.ClientIn(client, keepAlive: false);
        using var probe = MeshRun.ClientIn(client, keepAlive: false);
        Assert.Equal("echo-b", await probe.GetAsync(toB, ct));
        Assert.Equal("echo-c", await kept.GetAsync(toC, ct));

        var nodeB = Mesh.Ztunnel("zr-b");
        var clock = Stopwatch.StartNew();
        List<(TimeSpan At, string? Error)> keptResults, freshResults;
        Mesh.ReadState();
        await using (var keptLoop = new MeshRun.TrafficLoop(kept, toC, "echo-c", clock))
        await using (var freshLoop = new MeshRun.TrafficLoop(fresh, toC, "echo-c", clock))
        {
            await Task.Delay(300, ct);
            MeshRun.Kill9(nodeB);

            // Gone for real: nothing answers on echo-b's HBONE address, so B's pod is unreachable from A.
            await Assert.ThrowsAnyAsync<Exception>(() => probe.GetAsync(toB, ct));

            var restarted = await Mesh.WaitForRestartAsync(nodeB.Name, nodeB.Pid, TimeSpan.FromSeconds(15));
            await MeshRun.EventuallyAsync(() => MeshRun.HttpOkAsync($"http://{restarted.Address}:15021/healthz/ready"), TimeSpan.FromSeconds(15),
                () => Task.FromResult($"restarted {restarted.Name} (pid {restarted.Pid}) never became ready:\n{MeshRun.ReadLog(restarted)}"));

            // Node A's pooled HBONE connection to the dead node must not stick: a new connection reaches B's pod again.
            string? last = null;
            await MeshRun.EventuallyAsync(async () =>
            {
                try
                {
                    return await probe.GetAsync(toB, ct) == "echo-b";
                }
                catch (Exception e) when (e is HttpRequestException or TaskCanceledException)
                {
                    last = e.Message;
                    return false;
                }
            }, TimeSpan.FromSeconds(10), () => Task.FromResult($"echo-b unreachable after {restarted.Name} restarted: {last}"));
            for (var i = 0; i < 5; i++) Assert.Equal("echo-b", await probe.GetAsync(toB, ct));
            keptResults = keptLoop.Results;
            freshResults = freshLoop.Results;
        }

        foreach (var (name, results) in new[] { ("kept-alive", keptResults), ("new-connection", freshResults) })
        {
            var failures = results.Where(r => r.Error is not null).ToList();
            Assert.True(failures.Count == 0, $"{failures.Count} of {results.Count} {name} requests to node C failed, e.g.: {failures.FirstOrDefault().Error}");
            Assert.True(results.Count > 5, $"only {results.Count} {name} requests to node C ran during the outage");
        }
        Assert.Equal(1, kept.Connections);

        // The new process counts the traffic it serves as the destination, with the client's identity.
        var metrics = await MeshRun.MetricsAsync(Mesh.Ztunnel("zr-b"));
        Assert.True(MeshRun.Sum(metrics, "istio_tcp_connections_opened_total", "reporter=\"destination\"",
            $"source_principal=\"{Mesh.Spiffe("client")}\"", "connection_security_policy=\"mutual_tls\"") >= 6,
            $"the restarted ztunnel did not count the requests it served:\n{metrics}");
    }

    public ValueTask DisposeAsync()
    {
        _mesh?.Dispose();
        return ValueTask.CompletedTask;
    }
}

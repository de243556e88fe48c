using System.Diagnostics;

namespace Ambient.E2E.Tests;

/// <summary>
/// istiod-lite is SIGKILLed while traffic flows: the ztunnels keep their last config and certificates, so neither the
/// kept-alive connection nor new connections see a single failure while it is down; ambientctl starts it again and
/// the ztunnels reconnect to it (a config change made afterwards reaches them).
/// </summary>
public sealed class IstiodOutageE2ETests : IAsyncLifetime
{
    private MeshRun? _mesh;
    private MeshRun Mesh => _mesh!;

    public async ValueTask InitializeAsync()
    {
        _mesh = await MeshRun.UpAsync("istiod", ns =>
            MeshYaml.Namespace(ns) + MeshYaml.ServiceAccount(ns, "client")
            + MeshYaml.Sleep(ns, "client", "client", "outage-a") + MeshYaml.Echo(ns, "echo", "default", "outage-b"));
    }

    [Fact]
    public async Task IstiodKilledMidTraffic_NoRequestFails_ThenItComesBackAndPushesAgain()
    {
        var ct = TestContext.Current.CancellationToken;
        var client = Mesh.Pod("client");
        var url = $"http://echo.{Mesh.Namespace}.svc.cluster.local/outage";
        var ready = $"http://{Mesh.Control}:15014/ready";
        using var kept = MeshRun.ClientIn(client, keepAlive: true);
        using var fresh = MeshRun.ClientIn(client, keepAlive: false);
        // Warm up: both identities have their certificates before istiod goes away.
        Assert.Equal("echo", await kept.GetAsync(url, ct));
        Assert.Equal("echo", await fresh.GetAsync(url, ct));

        var clock = Stopwatch.StartNew();
        TimeSpan killedAt, backAt;
        List<(TimeSpan At, string? Error)> keptResults, freshResults;
        var istiod = Mesh.Get("istiod");
        await using (var keptLoop = new MeshRun.TrafficLoop(kept, url, "echo", clock))
        await using (var freshLoop = new MeshRun.TrafficLoop(fresh, url, "echo", clock))
        {
            await Task.Delay(500, ct);
            MeshRun.Kill9(istiod);
            killedAt = clock.Elapsed;
            Assert.False(await MeshRun.HttpOkAsync(ready), "istiod-lite still answers after SIGKILL");

            // ambientctl restarts it like a kubelet would (1 s back-off), with the same CA root and node tokens.
            var restarted = await Mesh.WaitForRestartAsync("istiod", istiod.Pid, TimeSpan.FromSeconds(15));
            await MeshRun.EventuallyAsync(() => MeshRun.HttpOkAsync(ready), TimeSpan.FromSeconds(15),
                () => Task.FromResult($"restarted istiod-lite (pid {restarted.Pid}) never became ready:\n{MeshRun.ReadLog(restarted)}"));
            backAt = clock.Elapsed;
            Assert.True(Mesh.Get("istiod").Restarts >= 1);
            await Task.Delay(500, ct);
            keptResults = keptLoop.Results;
            freshResults = freshLoop.Results;
        }

        foreach (var (name, results) in new[] { ("kept-alive", keptResults), ("new-connection", freshResults) })
        {
            var failures = results.Where(r => r.Error is not null).ToList();
            Assert.True(failures.Count == 0, $"{failures.Count} of {results.Count} {name} requests failed, e.g. at {failures.FirstOrDefault().At}: {failures.FirstOrDefault().Error}");
            var whileDown = results.Count(r => r.At > killedAt && r.At < backAt);
            Assert.True(whileDown > 0, $"no {name} request completed while istiod-lite was down ({killedAt} - {backAt})");
        }
        // The kept-alive client really kept one connection through all of it; the other opened one per request.
        Assert.Equal(1, kept.Connections);
        Assert.True(fresh.Connections > 2, $"the new-connection client opened only {fresh.Connections} connections");

        // Back for real: the ztunnels reconnected to the new istiod-lite, so a Service added now reaches them.
        File.AppendAllText(Path.Combine(Mesh.ConfigFolder, "mesh.yaml"), $$"""

            ---
            apiVersion: v1
            kind: Service
            metadata: {name: echo-after, namespace: {{Mesh.Namespace}}}
            spec:
              selector: {app: echo}
              ports: [{name: http, port: 80, targetPort: http}]
            """);
        string? last = null;
        await MeshRun.EventuallyAsync(async () =>
        {
            try
            {
                return await fresh.GetAsync($"http://echo-after.{Mesh.Namespace}.svc.cluster.local/", ct) == "echo";
            }
            catch (Exception e) when (e is HttpRequestException or TaskCanceledException)
            {
                last = e.Message;
                return false;
            }
        }, TimeSpan.FromSeconds(15), () => Task.FromResult($"a Service added after the restart never reached the client's ztunnel: {last}"));
    }

    public ValueTask DisposeAsync()
    {
        _mesh?.Dispose();
        return ValueTask.CompletedTask;
    }
}

using System.Diagnostics;
using System.Net;
using System.Text.Json;
using Ambient.TestCommon;

namespace Ambient.E2E.Tests;

/// <summary>
/// `ambientctl local up --detach` on a small folder, real processes throughout: traffic from a meshed pod through its
/// ztunnel's SOCKS5 port reaches a meshed echo on the other node, both ztunnels report it as mutual_tls with the
/// SPIFFE identities, then `local down` stops everything. Every process is killed by pid in Dispose, even on failure.
/// </summary>
public sealed class LocalMeshE2ETests : IDisposable
{
    private readonly TempDir _dir = new();
    private readonly string _home;
    private readonly string _ns = "e2e" + Guid.NewGuid().ToString("N")[..6];
    // Addresses of its own, so a mesh the user left running (127.0.0.1, 127.0.1.x) does not get in the way.
    private readonly MeshAddresses _addresses = MeshAddresses.PickFree();

    public LocalMeshE2ETests()
    {
        _home = Path.Combine(_dir.Path, "home");
        _dir.Write("mesh/mesh.yaml", MeshYaml.Namespace(_ns) + MeshYaml.ServiceAccount(_ns, "client")
            + MeshYaml.Sleep(_ns, "client", "client", "e2e-node-a") + MeshYaml.Echo(_ns, "echo", "default", "e2e-node-b"));
    }

    [Fact]
    public async Task LocalUpDetach_TrafficIsMutualTls_ThenDownStopsEverything()
    {
        var up = await RunCtlAsync(TimeSpan.FromSeconds(120), "local", "up", "-f", Path.Combine(_dir.Path, "mesh"), "--detach", "--network", "loopback", "--control-address", _addresses.Control);
        Assert.True(up.Code == 0, $"local up failed ({up.Code}):\n{up.Output}");
        var state = ReadState();
        var client = state.Components.Single(c => c.Name == $"pod-{_ns}-client");
        var nodes = state.Components.Where(c => c.Kind == "ztunnel").Select(c => c.Address!).ToList();
        Assert.Equal([_addresses.Node(1), _addresses.Node(2)], nodes.Order(StringComparer.Ordinal));

        using var handler = new SocketsHttpHandler { Proxy = new WebProxy($"socks5://{client.Address}:15080"), UseProxy = true, PooledConnectionLifetime = TimeSpan.Zero };
        using var http = new HttpClient(handler) { Timeout = TimeSpan.FromSeconds(10) };
        using var request = new HttpRequestMessage(HttpMethod.Get, $"http://echo.{_ns}.svc.cluster.local/e2e") { Headers = { ConnectionClose = true } };
        using var response = await http.SendAsync(request, TestContext.Current.CancellationToken);
        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        using var json = JsonDocument.Parse(await response.Content.ReadAsStringAsync(TestContext.Current.CancellationToken));
        Assert.Equal("echo", json.RootElement.GetProperty("pod").GetString());

        string metrics = "";
        var deadline = Stopwatch.StartNew();
        using var plain = new HttpClient(new SocketsHttpHandler { UseProxy = false });
        while (deadline.Elapsed < TimeSpan.FromSeconds(10))
        {
            metrics = "";
            foreach (var node in nodes) metrics += await plain.GetStringAsync($"http://{node}:15020/metrics", TestContext.Current.CancellationToken);
            if (metrics.Contains("reporter=\"destination\"", StringComparison.Ordinal)) break;
            await Task.Delay(200, TestContext.Current.CancellationToken);
        }
        var lines = metrics.Split('\n').Where(l => l.StartsWith("istio_tcp_connections_opened_total{", StringComparison.Ordinal)).ToList();
        foreach (var reporter in new[] { "source", "destination" })
        {
            Assert.Contains(lines, l => l.Contains($"reporter=\"{reporter}\"", StringComparison.Ordinal)
                && l.Contains($"source_principal=\"spiffe://cluster.local/ns/{_ns}/sa/client\"", StringComparison.Ordinal)
                && l.Contains($"destination_principal=\"spiffe://cluster.local/ns/{_ns}/sa/default\"", StringComparison.Ordinal)
                && l.Contains("connection_security_policy=\"mutual_tls\"", StringComparison.Ordinal));
        }

        var down = await RunCtlAsync(TimeSpan.FromSeconds(30), "local", "down");
        Assert.True(down.Code == 0, down.Output);
        foreach (var c in state.Components)
        {
            Assert.True(!Alive(c.Pid, c.StartTicks), $"{c.Name} (pid {c.Pid}) still runs after local down");
        }
        Assert.False(File.Exists(Path.Combine(_home, "local.json")));
    }

    private sealed record Component(string Name, string Kind, int Pid, long StartTicks, string? Address);
    private sealed record State(int SupervisorPid, long SupervisorStartTicks, List<Component> Components);

    private State ReadState() => JsonSerializer.Deserialize<State>(File.ReadAllText(Path.Combine(_home, "local.json")),
        new JsonSerializerOptions { PropertyNamingPolicy = JsonNamingPolicy.CamelCase })!;

    private static bool Alive(int pid, long startTicks) => MeshRun.Alive(pid, startTicks);

    private Task<(int Code, string Output)> RunCtlAsync(TimeSpan timeout, params string[] args) => MeshRun.CtlAsync(_home, _addresses, timeout, args);

    public void Dispose()
    {
        // Whatever happened, nothing this test started may outlive it: every recorded process, by pid.
        var file = Path.Combine(_home, "local.json");
        if (File.Exists(file))
        {
            var state = ReadState();
            foreach (var (pid, ticks) in state.Components.Select(c => (c.Pid, c.StartTicks)).Append((state.SupervisorPid, state.SupervisorStartTicks)))
            {
                if (pid == 0 || !Alive(pid, ticks)) continue;
                try { using var p = Process.GetProcessById(pid); p.Kill(entireProcessTree: true); p.WaitForExit(5000); } catch (ArgumentException) { } catch (InvalidOperationException) { }
            }
        }
        _dir.Dispose();
    }
}

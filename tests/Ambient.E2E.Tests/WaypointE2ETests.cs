using System.Diagnostics;
using System.Net.Sockets;
using System.Text;
using System.Text.Json;
using Ambient.TestCommon;

namespace Ambient.E2E.Tests;

/// <summary>
/// The waypoint on a running local mesh, real processes throughout: `waypoint apply --enroll-namespace --wait` takes
/// effect live (requests traverse the waypoint, the destination sees the waypoint's identity), a TCP Service port is
/// relayed, the waypoint is restarted under traffic by the supervisor, `waypoint delete` sends traffic direct again;
/// and hostile HTTP/1.1 sent to it through the mesh gets an error without crashing it or harming its neighbours.
/// </summary>
public sealed class WaypointE2ETests
{
    private static readonly TimeSpan Propagation = TimeSpan.FromSeconds(30);

    private static string Yaml(string ns) =>
        MeshYaml.Namespace(ns) + MeshYaml.ServiceAccount(ns, "client") + MeshYaml.ServiceAccount(ns, "echo")
        + MeshYaml.Sleep(ns, "client", "client", "wp-node-a") + MeshYaml.Echo(ns, "echo", "echo", "wp-node-b")
        // The same pod behind a port that is not HTTP by name or appProtocol: the waypoint relays it as TCP.
        + MeshYaml.Service("echo-tcp", ns, "echo", 9000, "http", portName: "tcp-echo");

    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    [Fact]
    public async Task ApplyLive_TrafficTraversesTheWaypoint_TcpRelayed_RestartUnderTraffic_DeleteGoesDirect()
    {
        using var run = await MeshRun.UpAsync("wp", Yaml);
        var ns = run.Namespace;
        var url = $"http://echo.{ns}.svc.cluster.local";
        using var client = MeshRun.ClientIn(run.Pod("client"), keepAlive: false);
        Assert.Equal("echo", await client.GetAsync(url + "/before", Ct));

        var apply = await run.CtlAsync(TimeSpan.FromSeconds(90), "waypoint", "apply", "-n", ns, "--enroll-namespace", "--wait");
        Assert.True(apply.Code == 0, $"waypoint apply failed ({apply.Code}):\n{apply.Output}");
        var waypoint = run.ReadState().Components.Single(c => c.Kind == "waypoint");
        Assert.StartsWith($"pod-{ns}-waypoint-", waypoint.Name, StringComparison.Ordinal);

        // Requests go through the waypoint once the ztunnel has the Service's waypoint: its access log names the client.
        var clientId = run.Spiffe("client");
        var waypointId = run.Spiffe("waypoint");
        var destination = run.Ztunnel("wp-node-b");
        string? lastError = null;
        var fromWaypointBefore = MeshRun.Sum(await MeshRun.MetricsAsync(destination), "istio_tcp_connections_opened_total",
            "reporter=\"destination\"", $"source_principal=\"{waypointId}\"");
        await MeshRun.EventuallyAsync(async () =>
        {
            var path = "/via-" + Guid.NewGuid().ToString("N")[..8];
            if (await TryGetAsync(client, url + path) is { } error)
            {
                lastError = error;
                return false;
            }
            // The waypoint's HBONE access line: the tunnel came from the client's identity.
            return MeshRun.ReadLog(waypoint).Contains("src.identity=" + clientId, StringComparison.Ordinal);
        }, Propagation, () => Task.FromResult($"no request reached the waypoint (last error: {lastError}); its log:\n" + MeshRun.ReadLog(waypoint)));
        // The destination ztunnel sees the waypoint's identity (the waypoint opens HBONE to the pod as itself).
        await MeshRun.EventuallyAsync(async () => MeshRun.Sum(await MeshRun.MetricsAsync(destination), "istio_tcp_connections_opened_total",
                "reporter=\"destination\"", $"source_principal=\"{waypointId}\"") > fromWaypointBefore,
            TimeSpan.FromSeconds(10), async () => "no connection from the waypoint's identity:\n" + await MeshRun.MetricsAsync(destination));

        // `get` shows the waypoint's status from istiod-lite.
        var get = await run.CtlAsync(TimeSpan.FromSeconds(30), "get", "gtw", "waypoint", "-n", ns, "-o", "json");
        Assert.True(get.Code == 0, get.Output);
        using (var doc = JsonDocument.Parse(get.Output[get.Output.IndexOf('{', StringComparison.Ordinal)..]))
        {
            var conditions = doc.RootElement.GetProperty("status").GetProperty("conditions").EnumerateArray()
                .Select(c => c.GetProperty("type").GetString() + "=" + c.GetProperty("status").GetString()).ToList();
            Assert.Contains("Programmed=True", conditions);
            Assert.Contains("Accepted=True", conditions);
        }

        // A TCP port is relayed by the waypoint: it answers, and the destination sees one more connection from the waypoint.
        var tcpBefore = MeshRun.Sum(await MeshRun.MetricsAsync(destination), "istio_tcp_connections_opened_total",
            "reporter=\"destination\"", $"source_principal=\"{waypointId}\"");
        var tcpPath = "/tcp-" + Guid.NewGuid().ToString("N")[..8];
        Assert.Equal("echo", await client.GetAsync($"http://echo-tcp.{ns}.svc.cluster.local:9000{tcpPath}", Ct));
        await MeshRun.EventuallyAsync(async () => MeshRun.Sum(await MeshRun.MetricsAsync(destination), "istio_tcp_connections_opened_total",
                "reporter=\"destination\"", $"source_principal=\"{waypointId}\"") > tcpBefore,
            TimeSpan.FromSeconds(10), async () => "the TCP port did not go through the waypoint:\n" + await MeshRun.MetricsAsync(destination));

        // Restart under traffic: SIGKILL the waypoint; the supervisor starts it again and requests succeed again.
        var clock = Stopwatch.StartNew();
        TimeSpan killedAt, restartedAt;
        List<(TimeSpan At, string? Error)> results;
        await using (var traffic = new MeshRun.TrafficLoop(client, url + "/loop", "echo", clock))
        {
            await Task.Delay(1500, Ct);
            killedAt = clock.Elapsed;
            MeshRun.Kill9(waypoint);
            waypoint = await run.WaitForRestartAsync(waypoint.Name, waypoint.Pid, TimeSpan.FromSeconds(60));
            restartedAt = clock.Elapsed;
            await MeshRun.EventuallyAsync(() => Task.FromResult(traffic.Results.Count(r => r.At > restartedAt && r.Error is null) >= 5),
                TimeSpan.FromSeconds(30), () => Task.FromResult("requests did not resume after the restart:\n" + Describe(traffic.Results)));
            await Task.Delay(2000, Ct);
            results = traffic.Results;
        }
        var failures = results.Count(r => r.Error is not null);
        var lastFailure = results.LastOrDefault(r => r.Error is not null).At;
        Assert.True(results.Count(r => r.At < killedAt && r.Error is null) > 0, "no request succeeded before the kill:\n" + Describe(results));
        // Failures only in the window the waypoint was down (plus the ztunnel's reconnect); none from 5 s after it is back.
        Assert.True(failures == 0 || lastFailure < restartedAt + TimeSpan.FromSeconds(5),
            $"{failures} failures, the last at {lastFailure.TotalSeconds:0.0}s (killed at {killedAt.TotalSeconds:0.0}s, back at {restartedAt.TotalSeconds:0.0}s):\n{Describe(results)}");
        var after = results.Where(r => r.At > restartedAt + TimeSpan.FromSeconds(5)).ToList();
        Assert.True(after.Count == 0 || after.All(r => r.Error is null), Describe(after));

        // Delete: traffic goes direct again (the destination sees the client's identity, the waypoint no request).
        var delete = await run.CtlAsync(TimeSpan.FromSeconds(30), "waypoint", "delete", "waypoint", "-n", ns);
        Assert.True(delete.Code == 0, delete.Output);
        await MeshRun.EventuallyAsync(async () =>
        {
            var fromClient = MeshRun.Sum(await MeshRun.MetricsAsync(destination), "istio_tcp_connections_opened_total",
                "reporter=\"destination\"", $"source_principal=\"{clientId}\"");
            try
            {
                Assert.Equal("echo", await client.GetAsync(url + "/direct", Ct));
            }
            catch (HttpRequestException)
            {
                return false; // the waypoint going away while the ztunnel still sends to it
            }
            return MeshRun.Sum(await MeshRun.MetricsAsync(destination), "istio_tcp_connections_opened_total",
                "reporter=\"destination\"", $"source_principal=\"{clientId}\"") > fromClient;
        }, Propagation, async () => "traffic did not go direct after waypoint delete:\n" + await MeshRun.MetricsAsync(destination));
    }

    [Fact]
    public async Task HostileHttp_ThroughTheMesh_ErrorsWithoutCrashingTheWaypointOrHarmingNeighbours()
    {
        using var run = await MeshRun.UpAsync("wph", Yaml);
        var ns = run.Namespace;
        var host = $"echo.{ns}.svc.cluster.local";
        var apply = await run.CtlAsync(TimeSpan.FromSeconds(90), "waypoint", "apply", "-n", ns, "--enroll-namespace", "--wait");
        Assert.True(apply.Code == 0, $"waypoint apply failed ({apply.Code}):\n{apply.Output}");
        var waypoint = run.ReadState().Components.Single(c => c.Kind == "waypoint");
        var clientPod = run.Pod("client");
        using var client = MeshRun.ClientIn(clientPod, keepAlive: false);
        string? lastError = null;
        await MeshRun.EventuallyAsync(async () =>
        {
            lastError = await TryGetAsync(client, $"http://{host}/warm");
            return lastError is null && MeshRun.ReadLog(waypoint).Contains("src.identity=" + run.Spiffe("client"), StringComparison.Ordinal);
        }, Propagation, () => Task.FromResult($"no request reached the waypoint (last error: {lastError}):\n" + MeshRun.ReadLog(waypoint)));

        // Request smuggling: Content-Length and Transfer-Encoding together. RFC 9112 section 6.1: reject it (400), or
        // read the body as chunked and close the connection after the response; either way one response, the
        // connection closed, and the request hidden after the body never reaches the echo.
        var smuggle = await RawAsync(clientPod, host, 80,
            $"POST / HTTP/1.1\r\nHost: {host}\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\nGET /smuggled HTTP/1.1\r\nHost: {host}\r\n\r\n");
        Assert.True(smuggle.Response.StartsWith("HTTP/1.1 400", StringComparison.Ordinal) || smuggle.Response.StartsWith("HTTP/1.1 200", StringComparison.Ordinal),
            "CL+TE answered:\n" + smuggle.Response);
        Assert.True(smuggle.Closed, "the connection stayed open after CL+TE:\n" + smuggle.Response);
        Assert.Equal(1, Count(smuggle.Response, "HTTP/1.1 "));

        // A header line without a colon, and a request line that is not one.
        var malformed = await RawAsync(clientPod, host, 80, $"GET / HTTP/1.1\r\nHost: {host}\r\nno colon here\r\n\r\n");
        Assert.StartsWith("HTTP/1.1 400", malformed.Response, StringComparison.Ordinal);
        var garbage = await RawAsync(clientPod, host, 80, "\u0001\u0002 NOT HTTP AT ALL\r\n\r\n");
        Assert.True(garbage.Response.Length == 0 || garbage.Response.StartsWith("HTTP/1.1 400", StringComparison.Ordinal), garbage.Response);

        // Oversized headers: 431 (or 400).
        var big = await RawAsync(clientPod, host, 80, $"GET / HTTP/1.1\r\nHost: {host}\r\nX-Big: {new string('a', 128 * 1024)}\r\n\r\n");
        Assert.True(big.Response.StartsWith("HTTP/1.1 431", StringComparison.Ordinal) || big.Response.StartsWith("HTTP/1.1 400", StringComparison.Ordinal),
            "oversized headers answered:\n" + big.Response);

        // No crash: the same process, and the next request on another connection is fine.
        var now = run.ReadState().Components.Single(c => c.Kind == "waypoint");
        Assert.Equal(waypoint.Pid, now.Pid);
        Assert.True(MeshRun.Alive(now.Pid, now.StartTicks));
        Assert.Equal("echo", await client.GetAsync($"http://{host}/after", Ct));
        var ok = await RawAsync(clientPod, host, 80, $"GET /raw-after HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n");
        Assert.StartsWith("HTTP/1.1 200", ok.Response, StringComparison.Ordinal);
        // The smuggled request never reached the echo.
        Assert.DoesNotContain("/smuggled", MeshRun.ReadLog(run.Pod("echo")), StringComparison.Ordinal);
    }

    private static string RouteYaml(string ns) =>
        MeshYaml.Namespace(ns) + MeshYaml.ServiceAccount(ns, "client") + MeshYaml.ServiceAccount(ns, "echo")
        + MeshYaml.Sleep(ns, "client", "client", "wp-node-a")
        + MeshYaml.Pod("echo-v1", ns, "wp-node-b", "echo", "echo", "v1") + MeshYaml.Pod("echo-v2", ns, "wp-node-b", "echo", "echo", "v2")
        + MeshYaml.Service("echo", ns, "echo", 80, "http", portName: "http")
        + VersionService(ns, "v1") + VersionService(ns, "v2") + $$$"""
        apiVersion: gateway.networking.k8s.io/v1
        kind: HTTPRoute
        metadata: {name: echo-versions, namespace: {{{ns}}}}
        spec:
          parentRefs: [{group: "", kind: Service, name: echo, port: 80}]
          rules:
          - matches: [{headers: [{name: x-version, value: v2}]}]
            backendRefs: [{name: echo-v2, port: 80}]
          - matches: [{path: {type: Exact, value: /routed-v1}}]
            backendRefs: [{name: echo-v1, port: 80}]
          - matches: [{path: {type: PathPrefix, value: /split}}]
            backendRefs: [{name: echo-v1, port: 80, weight: 90}, {name: echo-v2, port: 80, weight: 10}]
        ---

        """;

    private static string VersionService(string ns, string version) => $$$"""
        apiVersion: v1
        kind: Service
        metadata: {name: echo-{{{version}}}, namespace: {{{ns}}}}
        spec:
          selector: {app: echo, version: {{{version}}}}
          ports: [{name: http, port: 80, targetPort: http}]
        ---

        """;

    [Fact]
    public async Task HttpRoute_SplitsNinetyTen_MatchesAHeader_AndUnmatchedGoesToTheService()
    {
        using var run = await MeshRun.UpAsync("wpr", RouteYaml);
        var ns = run.Namespace;
        var apply = await run.CtlAsync(TimeSpan.FromSeconds(90), "waypoint", "apply", "-n", ns, "--enroll-namespace", "--wait");
        Assert.True(apply.Code == 0, $"waypoint apply failed ({apply.Code}):\n{apply.Output}");
        var url = $"http://echo.{ns}.svc.cluster.local";
        // Routes apply once the ztunnel sends to the waypoint and the waypoint knows the port speaks HTTP and has the
        // route. Until then the waypoint relays the tunnel as TCP and a kept-alive connection sticks to one pod, which
        // can look like a header match; so the probe opens a connection per request and needs both rules to hold
        // (chance of passing by luck: 2^-20).
        using (var probe = MeshRun.ClientIn(run.Pod("client"), keepAlive: false))
        {
            await MeshRun.EventuallyAsync(async () =>
            {
                for (var i = 0; i < 10; i++)
                {
                    try
                    {
                        if (await probe.GetAsync(url + "/h", Ct, ("x-version", "v2")) != "echo-v2") return false;
                        if (await probe.GetAsync(url + "/routed-v1", Ct) != "echo-v1") return false;
                    }
                    catch (HttpRequestException)
                    {
                        return false;
                    }
                }
                return true;
            }, Propagation, () => Task.FromResult("the header and exact-path rules never decided every request"));
        }

        // Opened after routing is live, so this kept-alive connection is served as HTTP and routed per request.
        using var client = MeshRun.ClientIn(run.Pod("client"), keepAlive: true);
        var split = new Dictionary<string, int>();
        for (var i = 0; i < 200; i++)
        {
            var pod = await client.GetAsync(url + "/split/" + i, Ct);
            split[pod] = split.GetValueOrDefault(pod) + 1;
        }
        var v1 = split.GetValueOrDefault("echo-v1");
        Assert.True(v1 is >= 165 and <= 195, "90/10 split of 200 gave " + string.Join(", ", split.Select(p => p.Key + "=" + p.Value)));
        Assert.Equal(200, v1 + split.GetValueOrDefault("echo-v2"));

        // No rule matches /other without the header: the Service's own endpoints, both versions.
        var unmatched = new HashSet<string>();
        for (var i = 0; i < 40 && unmatched.Count < 2; i++) unmatched.Add(await client.GetAsync(url + "/other", Ct));
        Assert.Equal(["echo-v1", "echo-v2"], unmatched.Order(StringComparer.Ordinal));
    }

    /// <summary>null when the echo answered, else what went wrong (while config propagates, errors are expected).</summary>
    private static async Task<string?> TryGetAsync(MeshRun.PodClient client, string url)
    {
        try
        {
            var pod = await client.GetAsync(url, Ct);
            return pod == "echo" ? null : "answered by " + pod;
        }
        catch (HttpRequestException e)
        {
            return e.Message + (e.InnerException is { } i ? " <- " + i.Message : "");
        }
    }

    private static int Count(string text, string what)
    {
        var n = 0;
        for (var i = text.IndexOf(what, StringComparison.Ordinal); i >= 0; i = text.IndexOf(what, i + what.Length, StringComparison.Ordinal)) n++;
        return n;
    }

    private static string Describe(IEnumerable<(TimeSpan At, string? Error)> results) =>
        string.Join('\n', results.Select(r => $"{r.At.TotalSeconds:0.00}s {r.Error ?? "ok"}"));

    /// <summary>
    /// Sends <paramref name="request"/> as raw bytes from inside a pod (a SOCKS5 CONNECT by name on its ztunnel's port)
    /// and reads what comes back until the peer closes (Closed) or 5 s pass.
    /// </summary>
    private static async Task<(string Response, bool Closed)> RawAsync(MeshRun.Component pod, string host, int port, string request)
    {
        using var socket = new Socket(SocketType.Stream, ProtocolType.Tcp) { NoDelay = true };
        await socket.ConnectAsync(System.Net.IPAddress.Parse(pod.Address!), 15080, Ct);
        await using var stream = new NetworkStream(socket, ownsSocket: false);
        await stream.WriteAsync(new byte[] { 5, 1, 0 }, Ct);
        var reply = new byte[2];
        await stream.ReadExactlyAsync(reply, Ct);
        Assert.Equal(new byte[] { 5, 0 }, reply);
        var name = Encoding.ASCII.GetBytes(host);
        var connect = new List<byte> { 5, 1, 0, 3, (byte)name.Length };
        connect.AddRange(name);
        connect.Add((byte)(port >> 8));
        connect.Add((byte)port);
        await stream.WriteAsync(connect.ToArray(), Ct);
        var head = new byte[10];
        await stream.ReadExactlyAsync(head, Ct);
        Assert.True(head[1] == 0, $"SOCKS5 CONNECT {host}:{port} refused ({head[1]})");
        try
        {
            await stream.WriteAsync(Encoding.Latin1.GetBytes(request), Ct);
        }
        catch (IOException)
        {
            // The peer may answer and close before reading all of an oversized request.
        }
        var received = new MemoryStream();
        var buffer = new byte[16 * 1024];
        using var timeout = CancellationTokenSource.CreateLinkedTokenSource(Ct);
        timeout.CancelAfter(TimeSpan.FromSeconds(5));
        var closed = false;
        try
        {
            while (true)
            {
                var n = await stream.ReadAsync(buffer, timeout.Token);
                if (n == 0)
                {
                    closed = true;
                    break;
                }
                received.Write(buffer, 0, n);
            }
        }
        catch (OperationCanceledException) when (!Ct.IsCancellationRequested) { }
        catch (IOException)
        {
            closed = true; // reset
        }
        return (Encoding.Latin1.GetString(received.ToArray()), closed);
    }
}

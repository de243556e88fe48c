using System.Collections.Concurrent;
using System.Diagnostics;
using System.Globalization;
using System.Net;
using System.Net.Sockets;
using Ambient.TestCommon;
using static Ambient.E2E.Tests.NetnsLocalMeshE2ETests;

namespace Ambient.E2E.Tests;

/// <summary>
/// A ztunnel's life in netns mode, on one mesh (an enrolled client on node-a, an enrolled raw TCP echo on node-b, a
/// sleep pod outside the mesh on node-b): `local restart ztunnel` upgrades both nodes' ztunnels while long-lived
/// connections echo every 50 ms and a new connection starts every 10 ms, all from the client's namespace through
/// capture, HBONE and the echo's capture - not one fails (the new ztunnel takes over the pods' listening sockets before
/// the old one stops accepting, and the old one drains); a ztunnel that is down fails its pods' outbound connections
/// closed (refused, and a listener at the destination sees nothing) and they recover when it is back; with the node
/// agent down (ambientctl killed) running pods keep their capture; and `local down` then leaves the host as it was.
/// Needs root, iproute2, iptables and python3. Names carry the network id "u" + this process's id.
/// </summary>
public sealed class NetnsZtunnelUpgradeE2ETests
{
    private static readonly string NetworkId = "u" + Environment.ProcessId.ToString(CultureInfo.InvariantCulture);
    private const string Python = "/usr/bin/python3";
    private const int EchoPort = 9000;
    private const int OutsidePort = 7777;
    private static readonly TimeSpan Ctl = TimeSpan.FromSeconds(90);
    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    private static string Yaml(string ns) =>
        MeshYaml.Namespace(ns) + MeshYaml.ServiceAccount(ns, "client") + MeshYaml.ServiceAccount(ns, "echo")
        + MeshYaml.Sleep(ns, "client", "client", "node-a") + $$$"""
            apiVersion: v1
            kind: Pod
            metadata: {name: tcp-echo, namespace: {{{ns}}}, labels: {app: tcp-echo}}
            spec:
              nodeName: node-b
              serviceAccountName: echo
              containers:
                - name: echo
                  command: ["{{{Python}}}", "{{{RepoPaths.Interop("tcp_echo_server.py")}}}"]
                  ports: [{name: tcp, containerPort: {{{EchoPort}}}}]
            ---

            """
        + MeshYaml.Namespace(ns + "-out", dataplaneMode: null) + MeshYaml.ServiceAccount(ns + "-out", "outsider")
        + MeshYaml.Sleep(ns + "-out", "outsider", "outsider", "node-b");

    private static string[] UpArgs(Ranges ranges) =>
        ["--network", "netns", "--pod-cidr", ranges.PodCidr, "--service-cidr", ranges.ServiceCidr, "--network-id", NetworkId];

    [Fact]
    public async Task Upgrade_drops_no_connection_a_down_ztunnel_fails_closed_a_down_agent_keeps_capture_and_down_leaves_nothing()
    {
        RequireRootAndTools();
        var ranges = Ranges.Pick();
        var before = HostSnapshot.Take();
        MeshRun? run = null;
        try
        {
            run = await MeshRun.UpAsync("upg", Yaml, network: UpArgs(ranges));
            var pods = PodsOf(run);
            var client = pods["client"];
            var echo = new IPEndPoint(IPAddress.Parse(pods["tcp-echo"].Address), EchoPort);
            await WaitForEchoAsync(client, echo);

            // (1) The upgrade of both nodes, under load.
            var oldA = run.Ztunnel("node-a");
            var oldB = run.Ztunnel("node-b");
            await using (var load = Load.Start(client, echo, longLived: 4))
            {
                await Task.Delay(1000, Ct);
                var restart = await run.CtlAsync(Ctl, "local", "restart", "ztunnel");
                Assert.True(restart.Code == 0, restart.Output);
                TestContext.Current.TestOutputHelper?.WriteLine(restart.Output);
                // The new ones serve the new connections while the old ones still carry the long-lived ones.
                await Task.Delay(1500, Ct);
                Assert.True(MeshRun.Alive(oldA.Pid, oldA.StartTicks) || MeshRun.Alive(oldB.Pid, oldB.StartTicks) || load.LongLivedEnded,
                    "both old ztunnels exited while long-lived connections were open: they did not drain");
                var result = await load.StopAsync();
                TestContext.Current.TestOutputHelper?.WriteLine(result.ToString());
                Assert.True(result.Failures.Count == 0, $"{result.Failures.Count} failures across the upgrade:\n{string.Join("\n", result.Failures.Take(20))}");
                Assert.True(result.NewConnections > 100, $"only {result.NewConnections} new connections ran");
                Assert.True(result.LongLivedEchoes > 4 * 20, $"only {result.LongLivedEchoes} echoes on the long-lived connections");
            }
            // With their connections closed, the old ones finish draining and exit; the new ones serve.
            var newA = run.Ztunnel("node-a");
            var newB = run.Ztunnel("node-b");
            Assert.NotEqual(oldA.Pid, newA.Pid);
            Assert.NotEqual(oldB.Pid, newB.Pid);
            await MeshRun.EventuallyAsync(() => Task.FromResult(!MeshRun.Alive(oldA.Pid, oldA.StartTicks) && !MeshRun.Alive(oldB.Pid, oldB.StartTicks)),
                TimeSpan.FromSeconds(20), () => Task.FromResult("an old ztunnel did not exit once its connections were closed"));
            Assert.True(MeshRun.Alive(newA.Pid, newA.StartTicks) && MeshRun.Alive(newB.Pid, newB.StartTicks), "a new ztunnel is not running");
            Assert.Equal("ping", await EchoOnceAsync(client, echo, "ping"));
            Assert.Contains("handed over by the ztunnel it replaces", MeshRun.ReadLog(newA), StringComparison.Ordinal);

            // (2) node-a's ztunnel down: the client's connections are refused - captured, never sent in plaintext (a
            // listener in the outsider pod, reachable only by passthrough, sees none) - and work again once it is back.
            using var outside = PodNetns.CreateSocketIn("/var/run/netns/" + pods["outsider"].Netns, AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
            outside.Bind(new IPEndPoint(IPAddress.Parse(pods["outsider"].Address), OutsidePort));
            outside.Listen(16);
            var outsideEndpoint = (IPEndPoint)outside.LocalEndPoint!;
            var accepted = 0;
            var held = new ConcurrentBag<Socket>(); // kept open: a close would reach the client as an end of stream
            _ = Task.Run(async () =>
            {
                while (true)
                {
                    try
                    {
                        held.Add(await outside.AcceptAsync());
                        Interlocked.Increment(ref accepted);
                    }
                    catch (Exception e) when (e is SocketException or ObjectDisposedException)
                    {
                        return;
                    }
                }
            }, CancellationToken.None);
            var reachable = await TryConnectAsync(client, outsideEndpoint);
            Assert.True(reachable is null, $"the outsider's listener is not reachable from the client with its ztunnel up: {reachable}");
            await MeshRun.EventuallyAsync(() => Task.FromResult(Volatile.Read(ref accepted) == 1), TimeSpan.FromSeconds(5), () => Task.FromResult("the outsider's listener saw no connection"));
            var current = run.Ztunnel("node-a");
            MeshRun.Kill9(current);
            var refused = 0;
            var clock = Stopwatch.StartNew();
            while (clock.Elapsed < TimeSpan.FromMilliseconds(500))
            {
                var error = await TryConnectAsync(client, outsideEndpoint);
                Assert.True(error is not null, "a connection from an enrolled pod went through with its ztunnel down");
                refused++;
                await Task.Delay(20, Ct);
            }
            await Task.Delay(200, Ct);
            Assert.Equal(1, Volatile.Read(ref accepted));
            TestContext.Current.TestOutputHelper?.WriteLine($"{refused} connections refused with node-a's ztunnel down; the outsider saw none");
            await MeshRun.EventuallyAsync(async () => await TryConnectAsync(client, outsideEndpoint) is null && await TryEchoAsync(client, echo),
                TimeSpan.FromSeconds(30), () => Task.FromResult("the client's connections did not recover once its ztunnel was back"));

            // (3) The node agents down (ambientctl killed): the ztunnels keep their pods, the pods keep their capture.
            var state = run.ReadState();
            MeshRun.Kill9(new MeshRun.Component("supervisor", "ambientctl", state.SupervisorPid, state.SupervisorStartTicks, null, null, "", 0));
            await Task.Delay(500, Ct);
            var mtlsBefore = await MutualTlsAtEchoAsync(run);
            Assert.Equal("still", await EchoOnceAsync(client, echo, "still"));
            await MeshRun.EventuallyAsync(async () => await MutualTlsAtEchoAsync(run) > mtlsBefore, TimeSpan.FromSeconds(10),
                () => Task.FromResult("with the node agent down the client's connection was not carried over mTLS"));

            foreach (var socket in held) socket.Dispose();

            // (4) `local down` after that SIGKILL: no process, namespace, link or rule left.
            var down = await run.CtlAsync(Ctl, "local", "down");
            Assert.True(down.Code == 0, down.Output);
            foreach (var c in state.Components) Assert.False(MeshRun.Alive(c.Pid, c.StartTicks), $"{c.Name} (pid {c.Pid}) outlived `local down`");
            HostSnapshot.Take().AssertSameAs(before);
        }
        finally
        {
            await CleanUpAsync(run);
        }
    }

    private static async Task<long> MutualTlsAtEchoAsync(MeshRun run) =>
        MeshRun.Sum(await MeshRun.MetricsAsync(run.Ztunnel("node-b")), "istio_tcp_connections_opened_total",
            "connection_security_policy=\"mutual_tls\"", "reporter=\"destination\"");

    private static Socket ClientSocket(PodInNetns pod)
    {
        var socket = PodNetns.CreateSocketIn("/var/run/netns/" + pod.Netns, AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
        socket.NoDelay = true;
        return socket;
    }

    private static async Task WaitForEchoAsync(PodInNetns client, IPEndPoint echo) =>
        await MeshRun.EventuallyAsync(() => TryEchoAsync(client, echo), TimeSpan.FromSeconds(30),
            () => Task.FromResult($"the client cannot reach the echo at {echo}"));

    private static async Task<bool> TryEchoAsync(PodInNetns client, IPEndPoint echo)
    {
        try
        {
            return await EchoOnceAsync(client, echo, "probe") == "probe";
        }
        catch (Exception e) when (e is SocketException or IOException or OperationCanceledException)
        {
            return false;
        }
    }

    /// <summary>One connection from the pod: connect, send <paramref name="text"/>, read as much back.</summary>
    private static async Task<string> EchoOnceAsync(PodInNetns client, IPEndPoint echo, string text)
    {
        using var socket = ClientSocket(client);
        using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(5));
        await socket.ConnectAsync(echo, timeout.Token);
        var bytes = System.Text.Encoding.ASCII.GetBytes(text);
        await socket.SendAsync(bytes, timeout.Token);
        var back = new byte[bytes.Length];
        for (var read = 0; read < back.Length;)
        {
            var n = await socket.ReceiveAsync(back.AsMemory(read), timeout.Token);
            if (n == 0) throw new IOException($"the echo closed after {read} bytes");
            read += n;
        }
        return System.Text.Encoding.ASCII.GetString(back);
    }

    /// <summary>Connects from the pod and closes; null on success, else why it failed.</summary>
    private static async Task<string?> TryConnectAsync(PodInNetns client, IPEndPoint target)
    {
        using var socket = ClientSocket(client);
        using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(3));
        try
        {
            await socket.ConnectAsync(target, timeout.Token);
            // Captured connections are accepted by the ztunnel first: a refusal then shows as the reset that follows.
            var probe = new byte[1];
            socket.Blocking = false;
            await Task.Delay(100, CancellationToken.None);
            try
            {
                var n = socket.Receive(probe);
                return n == 0 ? "closed at once" : null;
            }
            catch (SocketException e) when (e.SocketErrorCode == SocketError.WouldBlock)
            {
                return null;
            }
        }
        catch (Exception e) when (e is SocketException or OperationCanceledException)
        {
            return e.Message;
        }
    }

    internal sealed record LoadResult(int NewConnections, long LongLivedEchoes, IReadOnlyList<string> Failures)
    {
        public override string ToString() => $"{NewConnections} new connections, {LongLivedEchoes} long-lived echoes, {Failures.Count} failures";
    }

    /// <summary>Long-lived connections echoing every 50 ms and a new connection every 10 ms, from the client pod.</summary>
    private sealed class Load : IAsyncDisposable
    {
        private readonly PodInNetns _client;
        private readonly IPEndPoint _echo;
        private readonly CancellationTokenSource _stop = new();
        private readonly ConcurrentQueue<string> _failures = new();
        private readonly List<Task> _longLived = [];
        private readonly ConcurrentDictionary<Task, byte> _short = new();
        private Task _starter = Task.CompletedTask;
        private int _newConnections;
        private long _echoes;
        private int _longLivedEnded;

        private Load(PodInNetns client, IPEndPoint echo)
        {
            _client = client;
            _echo = echo;
        }

        public bool LongLivedEnded => Volatile.Read(ref _longLivedEnded) > 0;

        public static Load Start(PodInNetns client, IPEndPoint echo, int longLived)
        {
            var load = new Load(client, echo);
            for (var i = 0; i < longLived; i++)
            {
                var index = i;
                load._longLived.Add(Task.Run(() => load.LongLivedAsync(index)));
            }
            load._starter = Task.Run(load.StartNewConnectionsAsync);
            return load;
        }

        private async Task LongLivedAsync(int index)
        {
            try
            {
                using var socket = ClientSocket(_client);
                await socket.ConnectAsync(_echo, _stop.Token);
                var message = new byte[32];
                var back = new byte[32];
                for (var seq = 0; !_stop.IsCancellationRequested; seq++)
                {
                    System.Text.Encoding.ASCII.GetBytes($"stream {index} message {seq,10}".PadRight(32)).CopyTo(message, 0);
                    using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(5));
                    await socket.SendAsync(message, timeout.Token);
                    for (var read = 0; read < back.Length;)
                    {
                        var n = await socket.ReceiveAsync(back.AsMemory(read), timeout.Token);
                        if (n == 0) throw new IOException($"closed by the peer after {seq} echoes");
                        read += n;
                    }
                    if (!back.AsSpan().SequenceEqual(message)) throw new IOException($"echo {seq} differs");
                    Interlocked.Increment(ref _echoes);
                    try
                    {
                        await Task.Delay(50, _stop.Token);
                    }
                    catch (OperationCanceledException)
                    {
                        break;
                    }
                }
                socket.Shutdown(SocketShutdown.Both);
            }
            catch (Exception e) when (e is SocketException or IOException or OperationCanceledException)
            {
                _failures.Enqueue($"{DateTime.UtcNow:HH:mm:ss.fff} long-lived {index}: {e.Message}");
            }
            finally
            {
                Interlocked.Increment(ref _longLivedEnded);
            }
        }

        private async Task StartNewConnectionsAsync()
        {
            var timer = new PeriodicTimer(TimeSpan.FromMilliseconds(10));
            while (await timer.WaitForNextTickAsync(CancellationToken.None) && !_stop.IsCancellationRequested)
            {
                var n = Interlocked.Increment(ref _newConnections);
                var task = Task.Run(() => NewConnectionAsync(n));
                _short[task] = 0;
                _ = task.ContinueWith(t => _short.TryRemove(t, out _), TaskScheduler.Default);
            }
        }

        private async Task NewConnectionAsync(int n)
        {
            try
            {
                var text = $"new {n}";
                var back = await EchoOnceAsync(_client, _echo, text);
                if (back != text) throw new IOException($"echoed '{back}'");
            }
            catch (Exception e) when (e is SocketException or IOException or OperationCanceledException)
            {
                _failures.Enqueue($"{DateTime.UtcNow:HH:mm:ss.fff} new connection {n}: {e.Message}");
            }
        }

        public async Task<LoadResult> StopAsync()
        {
            await _stop.CancelAsync();
            await _starter;
            await Task.WhenAll(_longLived);
            await Task.WhenAll(_short.Keys);
            return new LoadResult(Volatile.Read(ref _newConnections), Interlocked.Read(ref _echoes), [.. _failures]);
        }

        public async ValueTask DisposeAsync()
        {
            if (!_stop.IsCancellationRequested) await StopAsync();
            _stop.Dispose();
        }
    }
}

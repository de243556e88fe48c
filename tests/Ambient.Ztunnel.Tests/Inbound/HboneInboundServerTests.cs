using System.Diagnostics;
using System.Net;
using System.Net.Sockets;
using Ambient.Hbone.Server;
using Ambient.TestCommon;

namespace Ambient.Ztunnel.Tests.Inbound;

/// <summary>
/// The inbound HBONE server against an independent HTTP/2 client (python3-h2 over Python's ssl), on loopback.
/// </summary>
public class HboneInboundServerTests
{
    private const int OneMiB = 1024 * 1024;

    [Fact]
    public async Task Connect_Echoes_One_MiB_Intact_With_Half_Close()
    {
        await using var env = await InboundTestEnvironment.StartAsync();

        var r = await env.ConnectAsync(env.EchoAuthority, OneMiB, extra:
        [
            "--header", "forwarded=for=\"10.0.0.9:4242\"",
            "--header", "baggage=k8s.namespace.name=client-ns",
            "--header", "traceparent=00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
        ]);

        Assert.Null(r.Error);
        Assert.Equal(200, r.Status);
        Assert.Equal(OneMiB, r.EchoedLen);
        Assert.Equal(InboundTestEnvironment.PatternSha256(OneMiB), r.EchoedSha256);

        var closed = await WaitForAsync(env, o => o.Closed.Count == 1 ? o.Closed[0] : default);
        Assert.Equal("-", closed.Flags);
        Assert.Equal(OneMiB, closed.In);
        Assert.Equal(OneMiB, closed.Out);
        Assert.Equal("spiffe://cluster.local/ns/client-ns/sa/client", closed.Info.PeerIdentity);
        Assert.Equal(env.Echo.EndPoint, closed.Info.Destination);
        Assert.Equal("for=\"10.0.0.9:4242\"", closed.Info.Forwarded);
        Assert.Equal("k8s.namespace.name=client-ns", closed.Info.Baggage);
        Assert.Equal("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01", closed.Info.TraceParent);
        Assert.Single(env.Observer.Read(o => o.Opened.ToList()));
        Assert.Contains(env.Logs.Entries, e => e.EventId.Name == "InboundAccess"
            && e.Message.Contains("src.identity=spiffe://cluster.local/ns/client-ns/sa/client", StringComparison.Ordinal)
            && e.Message.Contains($"bytes_sent={OneMiB} bytes_recv={OneMiB}", StringComparison.Ordinal)
            && e.Message.Contains("flags=-", StringComparison.Ordinal));
        Assert.Empty(env.Observer.Read(o => o.TlsFailures.ToList()));
    }

    [Fact]
    public async Task Target_Not_Served_By_This_Listener_Is_400()
    {
        await using var env = await InboundTestEnvironment.StartAsync();

        // A real, reachable address that simply is not a workload of this listener: no open relay.
        using var other = new EchoServer();
        var r = await env.ConnectAsync(other.EndPoint.ToString(), 10);

        Assert.Equal(400, r.Status);
        Assert.Contains("not a workload served", r.Body, StringComparison.Ordinal);
        Assert.Equal(0, other.Accepted);
        Assert.Empty(env.Observer.Read(o => o.Opened.ToList()));
    }

    [Theory]
    [InlineData("example.com:80")]
    [InlineData("127.0.0.1")]
    [InlineData("127.0.0.1:0")]
    [InlineData("127.0.0.1:70000")]
    [InlineData("127.1:80")]
    [InlineData("[::1]")]
    public async Task Bad_Authority_Is_400_With_Reason(string authority)
    {
        await using var env = await InboundTestEnvironment.StartAsync();

        var r = await env.ConnectAsync(authority, 10);

        Assert.True(400 == r.Status, r.Raw);
        Assert.Contains("authority", r.Body, StringComparison.Ordinal);
        Assert.Equal(0, env.Echo.Accepted);
    }

    [Fact]
    public async Task Service_Hostname_Authority_Reaches_The_Local_Workload_Of_That_Service()
    {
        await using var env = await InboundTestEnvironment.StartAsync();
        env.Targets.ServeService(InboundTestEnvironment.Workload, "echo.demo.svc.cluster.local", 80, env.Echo.EndPoint);

        var r = await env.ConnectAsync("echo.demo.svc.cluster.local:80", 1000);

        Assert.True(200 == r.Status, r.Raw);
        Assert.Equal(1000, r.EchoedLen);
        var closed = await WaitForAsync(env, o => o.Closed.Count == 1 ? o.Closed[0] : default);
        Assert.Equal("-", closed.Flags);
        Assert.Equal(env.Echo.EndPoint, closed.Info.Destination);
        Assert.Equal(env.Echo.EndPoint, Assert.Single(env.Targets.AuthorizationCalls).Target);
    }

    [Fact]
    public async Task Unknown_Service_Hostname_Is_400_With_Reason()
    {
        await using var env = await InboundTestEnvironment.StartAsync();
        env.Targets.ServeService(InboundTestEnvironment.Workload, "echo.demo.svc.cluster.local", 80, env.Echo.EndPoint);

        var unknown = await env.ConnectAsync("other.demo.svc.cluster.local:80", 10);
        var wrongPort = await env.ConnectAsync("echo.demo.svc.cluster.local:81", 10);

        Assert.Equal(400, unknown.Status);
        Assert.Contains("not a known service hostname", unknown.Body, StringComparison.Ordinal);
        Assert.Equal(400, wrongPort.Status);
        Assert.Equal(0, env.Echo.Accepted);
        Assert.Empty(env.Observer.Read(o => o.Opened.ToList()));
    }

    [Fact]
    public async Task Service_Hostname_Resolving_To_A_Ztunnel_Port_Is_Still_Refused()
    {
        await using var env = await InboundTestEnvironment.StartAsync();
        // A service whose target port is the ztunnel's readiness port: the refusal applies to where the tunnel would go.
        env.Targets.ServeService(InboundTestEnvironment.Workload, "sneaky.demo.svc.cluster.local", 80, new IPEndPoint(IPAddress.Loopback, 15021));
        env.Targets.Serve(InboundTestEnvironment.Workload, new IPEndPoint(IPAddress.Loopback, 15021));

        var r = await env.ConnectAsync("sneaky.demo.svc.cluster.local:80", 10);

        Assert.Equal(400, r.Status);
        Assert.Contains("ztunnel port", r.Body, StringComparison.Ordinal);
        Assert.Empty(env.Targets.AuthorizationCalls);
    }

    [Fact]
    public async Task Get_Instead_Of_Connect_Is_400()
    {
        await using var env = await InboundTestEnvironment.StartAsync();

        var r = await env.ConnectAsync(env.EchoAuthority, 0, extra: ["--method", "GET"]);

        Assert.Equal(400, r.Status);
        Assert.Contains("CONNECT", r.Body, StringComparison.Ordinal);
        Assert.Equal(0, env.Echo.Accepted);
    }

    [Fact]
    public async Task Unreachable_Target_Is_503_Quickly()
    {
        // Default 10 s connect timeout: a refused connect must answer long before it.
        await using var env = await InboundTestEnvironment.StartAsync();
        using var refusing = RefusingLoopbackSocket();
        var closedPort = (IPEndPoint)refusing.LocalEndPoint!;
        env.Targets.Serve(InboundTestEnvironment.Workload, closedPort);

        var r = await env.ConnectAsync(closedPort.ToString(), 10);

        Assert.Equal(503, r.Status);
        var closed = await WaitForAsync(env, o => o.Closed.Count == 1 ? o.Closed[0] : default);
        Assert.Equal("CONNECT", closed.Flags);
        var elapsed = env.Observer.Read(o => o.ClosedAt[0]) - closed.Info.StartedAt;
        Assert.True(elapsed < TimeSpan.FromSeconds(3), $"503 took {elapsed}");
    }

    [Fact]
    public async Task Upstream_Connect_Timeout_Is_503_After_The_Configured_Timeout()
    {
        var connectTimeout = TimeSpan.FromMilliseconds(500);
        await using var env = await InboundTestEnvironment.StartAsync(new HboneInboundOptions
        {
            Port = 0,
            ConnectTimeout = connectTimeout,
            DrainTimeout = TimeSpan.FromSeconds(1),
            // A connector that never completes stands in for a black-holed pod (loopback never drops SYNs).
            ConnectUpstream = async (_, ct) =>
            {
                await Task.Delay(Timeout.Infinite, ct);
                throw new InvalidOperationException("unreachable");
            },
        });

        var sw = Stopwatch.StartNew();
        var r = await env.ConnectAsync(env.EchoAuthority, 10);

        Assert.Equal(503, r.Status);
        Assert.InRange(sw.Elapsed, connectTimeout, TimeSpan.FromSeconds(8));
    }

    [Fact]
    public async Task Denied_By_Authorization_Is_401()
    {
        await using var env = await InboundTestEnvironment.StartAsync();
        env.Targets.Allow = (peer, _) => peer != "spiffe://cluster.local/ns/client-ns/sa/client";

        var r = await env.ConnectAsync(env.EchoAuthority, 10);

        Assert.Equal(401, r.Status);
        Assert.Equal(0, env.Echo.Accepted);
        var call = Assert.Single(env.Targets.AuthorizationCalls);
        Assert.Equal(env.Echo.EndPoint, call.Target);
        var closed = await WaitForAsync(env, o => o.Closed.Count == 1 ? o.Closed[0] : default);
        Assert.Equal("DENY", closed.Flags);
    }

    [Fact]
    public async Task Workload_Half_Close_First_Ends_The_Response_While_The_Client_Keeps_Sending()
    {
        await using var env = await InboundTestEnvironment.StartAsync();
        const int len = 200 * 1024;
        var received = new TaskCompletionSource<long>(TaskCreationOptions.RunContinuationsAsynchronously);
        using var greeter = new ScriptedServer(async (s, ct) =>
        {
            // Say hello, half-close, then keep reading the client's bytes until its END_STREAM arrives as EOF.
            await s.SendAsync("hello"u8.ToArray(), SocketFlags.None, ct);
            s.Shutdown(SocketShutdown.Send);
            var buffer = new byte[16 * 1024];
            long total = 0;
            int n;
            while ((n = await s.ReceiveAsync(buffer, SocketFlags.None, ct)) > 0)
                total += n;
            received.TrySetResult(total);
        });
        env.Targets.Serve(InboundTestEnvironment.Workload, greeter.EndPoint);

        var r = await env.ConnectAsync(greeter.EndPoint.ToString(), len, extra: ["--idle", "1"]);

        Assert.Null(r.Error);
        Assert.Equal(200, r.Status);
        Assert.False(r.Reset);
        Assert.Equal(5, r.EchoedLen);
        var closed = await WaitForAsync(env, o => o.Closed.Count == 1 ? o.Closed[0] : default);
        Assert.True(len == await received.Task.WaitAsync(TimeSpan.FromSeconds(10), TestContext.Current.CancellationToken), closed.Flags + r.Raw);
        Assert.Equal("-", closed.Flags);
        Assert.Equal(len, closed.In);
        Assert.Equal(5, closed.Out);
    }

    [Fact]
    public async Task Workload_Reset_Resets_The_Stream()
    {
        await using var env = await InboundTestEnvironment.StartAsync();
        using var resetter = new ScriptedServer(async (s, ct) =>
        {
            await Task.Delay(300, ct);
            s.LingerState = new LingerOption(true, 0); // close with RST
            s.Close();
        });
        env.Targets.Serve(InboundTestEnvironment.Workload, resetter.EndPoint);

        var r = await env.ConnectAsync(resetter.EndPoint.ToString(), 1000, extra: ["--idle", "2"]);

        Assert.Equal(200, r.Status);
        Assert.True(r.Reset, r.Raw);
        var closed = await WaitForAsync(env, o => o.Closed.Count == 1 ? o.Closed[0] : default);
        Assert.Equal("UPSTREAM_RESET", closed.Flags);
        var again = await env.ConnectAsync(env.EchoAuthority, 100);
        Assert.Equal(200, again.Status);
    }

    [Fact]
    public async Task Client_Reset_After_Its_Half_Close_Resets_The_Silent_Workload_Connection()
    {
        // The client sends, half-closes, then resets while the workload says nothing: no direction is reading the
        // stream at that moment, yet the workload connection must end (with a TCP RST) and the tunnel be logged.
        await using var env = await InboundTestEnvironment.StartAsync();
        var workloadSaw = new TaskCompletionSource<string>(TaskCreationOptions.RunContinuationsAsynchronously);
        using var silent = new ScriptedServer(async (s, ct) =>
        {
            var buffer = new byte[4096];
            long total = 0;
            try
            {
                int n;
                while ((n = await s.ReceiveAsync(buffer, SocketFlags.None, ct)) > 0)
                    total += n;
                // EOF is the client's END_STREAM. Stay silent (sending would let the relay notice by itself) and
                // watch for the RST: after a FIN, Linux records it as the socket's pending error (EPIPE).
                var deadline = DateTime.UtcNow.AddSeconds(5);
                while (DateTime.UtcNow < deadline)
                {
                    if ((int)s.GetSocketOption(SocketOptionLevel.Socket, SocketOptionName.Error)! != 0)
                    {
                        workloadSaw.TrySetResult($"reset after {total} bytes");
                        return;
                    }
                    await Task.Delay(20, ct);
                }
                workloadSaw.TrySetResult($"still open 5 s after {total} bytes");
            }
            catch (SocketException e)
            {
                workloadSaw.TrySetResult($"{e.SocketErrorCode} after {total} bytes");
            }
        });
        env.Targets.Serve(InboundTestEnvironment.Workload, silent.EndPoint);

        var r = await env.ConnectAsync(silent.EndPoint.ToString(), 1000, extra: ["--reset-after", "0.5", "--timeout", "5"]);

        Assert.Equal(200, r.Status);
        string seen = await workloadSaw.Task.WaitAsync(TimeSpan.FromSeconds(10), TestContext.Current.CancellationToken);
        Assert.Equal("reset after 1000 bytes", seen);
        var closed = await WaitForAsync(env, o => o.Closed.Count == 1 ? o.Closed[0] : default);
        Assert.Equal("DOWNSTREAM_RESET", closed.Flags);
        Assert.Equal(1000, closed.In);
    }

    /// <summary>
    /// Bound, never listening: connects to it get RST. Keep it for the test's length - a port bound and closed again
    /// may be taken by any other process meanwhile and then accept.
    /// </summary>
    private static Socket RefusingLoopbackSocket()
    {
        var s = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
        s.Bind(new IPEndPoint(IPAddress.Loopback, 0));
        return s;
    }

    internal static async Task<T> WaitForAsync<T>(InboundTestEnvironment env, Func<RecordingObserver, T> probe)
    {
        // The observer is told after the response went out, so the client can finish first.
        var deadline = DateTime.UtcNow.AddSeconds(10);
        while (true)
        {
            var value = env.Observer.Read(probe);
            if (!EqualityComparer<T>.Default.Equals(value, default))
                return value;
            if (DateTime.UtcNow > deadline)
                Assert.Fail("observer was not called in time");
            await Task.Delay(20);
        }
    }
}

using System.Diagnostics;
using System.Net;
using System.Net.Sockets;
using Ambient.Ztunnel.DnsProxy;
using Microsoft.Extensions.Logging.Abstractions;
using static Ambient.Ztunnel.Tests.DnsProxy.DnsTestKit;

namespace Ambient.Ztunnel.Tests.DnsProxy;

/// <summary>The DNS proxy on real sockets: UDP and TCP, forwarding to a fake upstream, hostile input, and dig.</summary>
public sealed class DnsServerTests : IAsyncLifetime
{
    private readonly FakeUpstream _upstream = new();
    private DnsServer _server = null!;

    private IPEndPoint Udp => _server.UdpEndPoint;

    public ValueTask InitializeAsync()
    {
        _server = DnsServer.Start(new IPEndPoint(IPAddress.Loopback, 0), new DnsAnswerer(Mesh()),
            new DnsForwarder([_upstream.EndPoint], TimeSpan.FromSeconds(1)), NullLogger.Instance);
        return ValueTask.CompletedTask;
    }

    public async ValueTask DisposeAsync()
    {
        await _server.DisposeAsync();
        await _upstream.DisposeAsync();
    }

    [Fact]
    public async Task Udp_AnswersMeshNames_RelativeToTheSourcePod()
    {
        var demo = Read(await UdpExchangeAsync(Udp, Query("echo", id: 1), DemoClient));
        Assert.Equal([IPAddress.Parse("10.96.0.10")], demo.Addresses);
        var other = Read(await UdpExchangeAsync(Udp, Query("echo", id: 2), OtherClient));
        Assert.Equal([IPAddress.Parse("10.96.1.10")], other.Addresses);
        Assert.Equal(3, Read(await UdpExchangeAsync(Udp, Query("nope.demo.svc.cluster.local"), DemoClient)).ResponseCode);
        Assert.Empty(_upstream.Asked);
    }

    [Fact]
    public async Task Udp_ForwardsOtherNames_AndRelaysTheUpstreamAnswer()
    {
        var response = Read(await UdpExchangeAsync(Udp, Query("www.example.com", id: 0x7777), DemoClient));
        Assert.Equal(0x7777, response.Id);
        Assert.Equal(0, response.ResponseCode);
        Assert.False(response.Authoritative);
        Assert.Equal([FakeUpstream.Answer], response.Addresses);
        Assert.Equal(60u, response.Answers[0].Ttl);
        Assert.Equal([("udp", "www.example.com")], _upstream.Asked);
        Assert.Equal(1, _server.Counters.Forwarded);
    }

    [Fact]
    public async Task Tcp_FramesEachMessage_ServesPipelinedQueries_AndForwardsOverTcp()
    {
        var responses = await TcpExchangeAsync(_server.TcpEndPoint, DemoClient,
            Query("echo", id: 1), Query("echo.demo.svc", TypeAaaa, id: 2), Query("wide", id: 3), Query("example.org", id: 4));
        Assert.Equal([IPAddress.Parse("10.96.0.10")], Read(responses[0]).Addresses);
        var noData = Read(responses[1]);
        Assert.Equal((2, 0), (noData.Id, noData.ResponseCode));
        Assert.Empty(noData.Answers);
        // Over TCP the 100 VIPs of demo/wide fit.
        Assert.Equal(100, Read(responses[2]).Addresses.Count);
        Assert.Equal([FakeUpstream.Answer], Read(responses[3]).Addresses);
        Assert.Equal([("tcp", "example.org")], _upstream.Asked);
    }

    [Fact]
    public async Task SilentUpstream_IsServFail_AfterTheTimeout()
    {
        // Bound, never read: the forwarder waits its timeout and the client gets SERVFAIL, with its OPT echoed.
        using var silent = new Socket(AddressFamily.InterNetwork, SocketType.Dgram, ProtocolType.Udp);
        silent.Bind(new IPEndPoint(IPAddress.Loopback, 0));
        await using var server = DnsServer.Start(new IPEndPoint(IPAddress.Loopback, 0), new DnsAnswerer(Mesh()),
            new DnsForwarder([(IPEndPoint)silent.LocalEndPoint!], TimeSpan.FromMilliseconds(300)), NullLogger.Instance);
        var response = Read(await UdpExchangeAsync(server.UdpEndPoint, Query("example.com", id: 9, ednsPayload: 1232), DemoClient));
        Assert.Equal((9, 2), (response.Id, response.ResponseCode));
        Assert.True(response.HasOpt);
        Assert.Equal(1, server.Counters.ForwardFailures);
    }

    [Fact]
    public void UpstreamThatIsTheProxyItself_IsRefused()
    {
        // Through the socket seam, so the proxy's own address is known before it starts.
        var udp = new Socket(AddressFamily.InterNetwork, SocketType.Dgram, ProtocolType.Udp);
        udp.Bind(new IPEndPoint(IPAddress.Loopback, 0));
        var tcp = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
        tcp.Bind(new IPEndPoint(IPAddress.Loopback, 0));
        tcp.Listen(1);
        var self = (IPEndPoint)udp.LocalEndPoint!;
        Assert.Throws<ArgumentException>(() => DnsServer.Start(udp, tcp, new DnsAnswerer(Mesh()), new DnsForwarder([self]), NullLogger.Instance));
        // The refused server closed both sockets.
        Assert.Throws<ObjectDisposedException>(() => udp.LocalEndPoint);
    }

    [Fact]
    public void ResolvConf_NameserverLines_ArePort53_AndNoneMeansLoopback()
    {
        using var dir = new Ambient.TestCommon.TempDir();
        var conf = dir.Write("resolv.conf", "# comment\nsearch demo.svc.cluster.local\nnameserver 10.0.0.2\nnameserver\tfd00::53\nnameserver bogus\noptions ndots:5\n");
        Assert.Equal(["10.0.0.2:53", "[fd00::53]:53"], DnsForwarder.ReadResolvConf(conf).Select(e => e.ToString()));
        Assert.Equal(["127.0.0.1:53"], DnsForwarder.ReadResolvConf(dir.Write("empty.conf", "search x\n")).Select(e => e.ToString()));
        Assert.Equal(["127.0.0.1:53"], DnsForwarder.ReadResolvConf(Path.Combine(dir.Path, "missing")).Select(e => e.ToString()));
    }

    public static TheoryData<string, byte[]> FormatErrors => new()
    {
        { "pointer loop", [0xAB, 0xCD, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0, 1, (byte)'a', 0xC0, 12, 0, 1, 0, 1] },
        { "QDCOUNT 2", [0xAB, 0xCD, 0x01, 0x00, 0, 2, 0, 0, 0, 0, 0, 0, 1, (byte)'a', 0, 0, 1, 0, 1] },
        { "bad label length", [0xAB, 0xCD, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0, 0x41, (byte)'a', 0, 0, 1, 0, 1] },
        { "truncated question", [0xAB, 0xCD, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0, 9, (byte)'a'] },
    };

    [Theory]
    [MemberData(nameof(FormatErrors))]
    public async Task MalformedQueries_GetFormErr_WithTheirId(string what, byte[] message)
    {
        var response = Read(await UdpExchangeAsync(Udp, message));
        Assert.True(response.ResponseCode == 1 && response.Id == 0xABCD, what);
        Assert.Equal(0, response.Questions);
    }

    [Fact]
    public async Task RuntsResponsesAndOversize_AreDropped_AndTheServerGoesOn()
    {
        using var socket = new Socket(AddressFamily.InterNetwork, SocketType.Dgram, ProtocolType.Udp);
        socket.Bind(new IPEndPoint(IPAddress.Loopback, 0));
        byte[] response = [.. Query("echo.demo")];
        response[2] |= 0x80;
        foreach (var junk in new[] { new byte[] { 1, 2, 3 }, response, new byte[5000], Array.Empty<byte>() })
        {
            await socket.SendToAsync(junk, Udp);
        }
        // Nothing comes back for those; the next real query is answered.
        await socket.SendToAsync(Query("echo.demo", id: 55), Udp);
        var buffer = new byte[1500];
        using var cts = new CancellationTokenSource(TimeSpan.FromSeconds(5));
        var n = await socket.ReceiveAsync(buffer, SocketFlags.None, cts.Token);
        Assert.Equal(55, Read(buffer.AsSpan(0, n)).Id);
        Assert.True(_server.Counters.Malformed >= 3);
    }

    [Fact]
    public async Task Tcp_BadLengthPrefix_ClosesTheConnection_ServerStillAnswers()
    {
        foreach (byte[] prefix in new[] { new byte[] { 0, 5 }, new byte[] { 0xFF, 0xFF } })
        {
            using var socket = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
            await socket.ConnectAsync(_server.TcpEndPoint);
            await socket.SendAsync(prefix);
            using var cts = new CancellationTokenSource(TimeSpan.FromSeconds(5));
            Assert.Equal(0, await socket.ReceiveAsync(new byte[16], SocketFlags.None, cts.Token));
        }
        var responses = await TcpExchangeAsync(_server.TcpEndPoint, DemoClient, Query("echo"));
        Assert.Single(Read(responses[0]).Addresses);
    }

    [Fact]
    public async Task RandomBytes_NeverStopTheServer()
    {
        var random = new Random(1035);
        using var socket = new Socket(AddressFamily.InterNetwork, SocketType.Dgram, ProtocolType.Udp);
        socket.Bind(new IPEndPoint(IPAddress.Loopback, 0));
        var valid = Query("echo.demo");
        for (var i = 0; i < 3000; i++)
        {
            var junk = Junk(random, valid, maxRandomLength: 600, keepResponses: i % 10 == 0);
            await socket.SendToAsync(junk, Udp);
            if (i % 100 == 0)
            {
                // Keep the socket's receive queue short: read what came back so far.
                while (socket.Available > 0)
                {
                    socket.Receive(new byte[2048]);
                }
            }
        }
        // The burst may have filled the socket's queue, and UDP drops what does not fit: ask as a resolver would, with
        // retries.
        byte[]? answer = null;
        for (var attempt = 0; answer is null && attempt < 10; attempt++)
        {
            try
            {
                answer = await UdpExchangeAsync(Udp, Query("echo.demo", id: 4242), DemoClient, TimeSpan.FromSeconds(1));
            }
            catch (OperationCanceledException)
            {
            }
        }
        Assert.NotNull(answer);
        var after = Read(answer);
        Assert.Equal((4242, 0), (after.Id, after.ResponseCode));
        Assert.Equal([IPAddress.Parse("10.96.0.10")], after.Addresses);
        Assert.True(_server.Counters.Malformed > 100, $"only {_server.Counters.Malformed} malformed messages were seen");
    }

    [Fact]
    public async Task Dig_ResolvesMeshNames_AndForwardsOthers()
    {
        var dig = FindOnPath("dig");
        Assert.SkipWhen(dig is null, "dig is not installed (apt-get install dnsutils)");
        var port = Udp.Port.ToString(System.Globalization.CultureInfo.InvariantCulture);
        // -b binds dig to the demo client's address, as the pod's own resolver would be.
        Assert.Equal("10.96.0.10", await RunAsync(dig!, "@127.0.0.1", "-p", port, "-b", "127.0.0.2", "+short", "echo"));
        Assert.Equal("10.96.0.10", await RunAsync(dig!, "@127.0.0.1", "-p", port, "+short", "+tcp", "echo.demo.svc.cluster.local"));
        Assert.Equal("fd00::11", await RunAsync(dig!, "@127.0.0.1", "-p", port, "+short", "AAAA", "dual.demo"));
        Assert.Equal("192.0.2.53", await RunAsync(dig!, "@127.0.0.1", "-p", port, "+short", "example.com"));
        var nx = await RunAsync(dig!, "@127.0.0.1", "-p", port, "nope.demo.svc.cluster.local");
        Assert.Contains("status: NXDOMAIN", nx, StringComparison.Ordinal);
        Assert.Contains("flags: qr aa rd ra", nx, StringComparison.Ordinal);
        var noData = await RunAsync(dig!, "@127.0.0.1", "-p", port, "AAAA", "echo.demo.svc.cluster.local");
        Assert.Contains("status: NOERROR", noData, StringComparison.Ordinal);
        Assert.Contains("ANSWER: 0", noData, StringComparison.Ordinal);
        // (dig's one warning here is that .local is also multicast DNS's; none about the message itself.)
        Assert.DoesNotContain("recursion requested but not available", noData, StringComparison.Ordinal);
        Assert.DoesNotContain("Warning", noData, StringComparison.Ordinal);
    }

    private static string? FindOnPath(string tool)
    {
        foreach (var dir in (Environment.GetEnvironmentVariable("PATH") ?? "").Split(':'))
        {
            var path = Path.Combine(dir, tool);
            if (File.Exists(path))
            {
                return path;
            }
        }
        return null;
    }

    private static async Task<string> RunAsync(string file, params string[] args)
    {
        var start = new ProcessStartInfo(file) { RedirectStandardOutput = true, RedirectStandardError = true };
        foreach (var a in args)
        {
            start.ArgumentList.Add(a);
        }
        start.ArgumentList.Add("+time=3");
        start.ArgumentList.Add("+tries=1");
        using var process = Process.Start(start)!;
        var output = await process.StandardOutput.ReadToEndAsync();
        await process.WaitForExitAsync();
        return output.Trim();
    }
}

using Ambient.TestCommon;
using System.Net;
using System.Net.Sockets;
using System.Text;
using System.Text.RegularExpressions;
using Ambient.Core.Model;
using Ambient.Core.Telemetry;
using Ambient.Hbone.Telemetry;
using Ambient.Ztunnel.Proxy.Outbound;
using Ambient.Ztunnel.Tests.Inbound;
using Ambient.Ztunnel.Tests.Socks5;
using Microsoft.Extensions.Logging;
using static Ambient.Ztunnel.Tests.Outbound.OutboundTestMesh;

namespace Ambient.Ztunnel.Tests.Outbound;

/// <summary>The outbound proxy driven as a front door would drive it, without SOCKS5: a plain stream pair.</summary>
public sealed class OutboundProxyTests
{
    private static readonly IPAddress EchoPodAddress = IPAddress.Parse("127.0.0.3");

    private static CancellationToken Timeout => new CancellationTokenSource(TimeSpan.FromSeconds(20)).Token;

    /// <summary>Sends <paramref name="text"/>, half-closes, reads the echo to the end; returns the proxy's result.</summary>
    private static async Task<OutboundResult> EchoThroughAsync(OutboundProxy proxy, OriginalDestination destination, string text)
    {
        var (app, client) = await StreamPairAsync();
        using (app)
        await using (client.Stream)
        {
            var proxying = proxy.ProxyAsync(SourceAddress, client, destination, Timeout).AsTask();
            await app.SendAsync(Encoding.ASCII.GetBytes(text));
            app.Shutdown(SocketShutdown.Send);
            var (echoed, clean) = await Socks5Wire.ReadToEndAsync(app, TimeSpan.FromSeconds(20));
            var result = await proxying;
            Assert.True(clean, "the app's connection was reset instead of closed");
            Assert.Equal(text, Encoding.ASCII.GetString(echoed));
            return result;
        }
    }

    [Fact]
    public async Task Service_with_a_waypoint_is_tunnelled_to_the_waypoint_with_the_service_vip_as_authority()
    {
        var original = new IPEndPoint(ServiceVip, 80);
        await using var server = await RecordingHboneServer.StartAsync(original);
        var waypoint = new GatewayInfo(null, "", IPAddress.Loopback, server.Listener.Port);
        var service = Service(waypoint);
        var state = Mesh(Source(), service, Pod("waypoint", "server-ns", "server", IPAddress.Loopback),
            Pod("echo-1", "demo", "echo", EchoPodAddress, serviceKey: service.Key));
        await using var pool = Pool(server.Env);

        var result = await EchoThroughAsync(NewProxy(state, pool, server.Env.LoggerFactory), new OriginalDestination(ServiceVip, null, 80), "via the waypoint");

        Assert.Equal(new OutboundResult(OutboundError.None, ResponseFlags.None, 16, 16), result);
        Assert.Equal([original], server.Authorities);
        var opened = Assert.Single(server.Env.Observer.Read(o => o.Opened.ToList()));
        Assert.Equal("spiffe://cluster.local/ns/client-ns/sa/client", opened.PeerIdentity);
        Assert.Contains("host=echo.demo.svc.cluster.local", opened.Forwarded, StringComparison.Ordinal);
    }

    [Fact]
    public async Task Workload_with_a_waypoint_addressed_by_pod_ip_is_tunnelled_to_the_waypoint_with_the_pod_as_authority()
    {
        var original = new IPEndPoint(EchoPodAddress, 8080);
        await using var server = await RecordingHboneServer.StartAsync(original);
        var waypoint = new GatewayInfo(null, "", IPAddress.Loopback, server.Listener.Port);
        var state = Mesh(Source(), Pod("waypoint", "server-ns", "server", IPAddress.Loopback),
            Pod("echo-1", "demo", "echo", EchoPodAddress, waypoint: waypoint));
        await using var pool = Pool(server.Env);

        var result = await EchoThroughAsync(NewProxy(state, pool, server.Env.LoggerFactory), new OriginalDestination(EchoPodAddress, null, 8080), "pod");

        Assert.Equal(OutboundError.None, result.Error);
        Assert.Equal([original], server.Authorities);
    }

    [Fact]
    public async Task Inbound_and_outbound_access_log_lines_share_one_format()
    {
        var original = new IPEndPoint(ServiceVip, 80);
        await using var server = await RecordingHboneServer.StartAsync(original);
        var waypoint = new GatewayInfo(null, "", IPAddress.Loopback, server.Listener.Port);
        var service = Service(waypoint);
        var state = Mesh(Source(), service, Pod("waypoint", "server-ns", "server", IPAddress.Loopback));
        await using var pool = Pool(server.Env);

        await EchoThroughAsync(NewProxy(state, pool, server.Env.LoggerFactory), new OriginalDestination(ServiceVip, null, 80), "abc");

        var outbound = await WaitForLineAsync(server.Env, "OutboundAccess");
        var inbound = await WaitForLineAsync(server.Env, "InboundAccess");
        string[] fields = ["src.addr", "src.workload", "src.identity", "dst.addr", "dst.hbone_addr", "dst.service", "dst.workload",
            "dst.identity", "direction", "bytes_sent", "bytes_recv", "duration", "flags", "error"];
        Assert.Equal(fields, FieldNames(outbound));
        Assert.Equal(fields, FieldNames(inbound));
        Assert.Contains("direction=outbound", outbound, StringComparison.Ordinal);
        Assert.Contains("direction=inbound", inbound, StringComparison.Ordinal);
        Assert.Contains($"dst.addr=127.0.0.1:{server.Listener.Port} dst.hbone_addr=10.96.0.10:80 dst.service=echo.demo.svc.cluster.local dst.workload=waypoint dst.identity=spiffe://cluster.local/ns/server-ns/sa/server", outbound, StringComparison.Ordinal);
        Assert.Contains("src.workload=client src.identity=spiffe://cluster.local/ns/client-ns/sa/client", outbound, StringComparison.Ordinal);
        Assert.Contains("bytes_sent=3 bytes_recv=3", outbound, StringComparison.Ordinal);
        Assert.Contains("bytes_sent=3 bytes_recv=3", inbound, StringComparison.Ordinal);
        Assert.Contains("src.identity=spiffe://cluster.local/ns/client-ns/sa/client dst.addr=10.96.0.10:80 dst.hbone_addr=10.96.0.10:80", inbound, StringComparison.Ordinal);
    }

    private static async Task<string> WaitForLineAsync(InboundTestEnvironment env, string eventName)
    {
        for (var i = 0; i < 200; i++)
        {
            foreach (var e in env.Logs.Entries)
            {
                if (e.EventId.Name == eventName)
                    return e.Message;
            }
            await Task.Delay(25);
        }
        throw new Xunit.Sdk.XunitException($"no {eventName} line");
    }

    private static List<string> FieldNames(string line) =>
        Regex.Matches(line, @"(?:^|\s)([a-z_.]+)=").Select(m => m.Groups[1].Value).ToList();

    [Fact]
    public async Task Passthrough_is_plain_tcp_and_logged_in_the_shared_format()
    {
        await using var echo = new Socks5.EchoServer(IPAddress.Loopback);
        var logs = new ListLogger();
        using var factory = LoggerFactory.Create(b => b.AddProvider(logs));
        await using var pool = NoTunnelPool();
        var proxy = NewProxy(Mesh(Source()), pool, factory);

        var result = await EchoThroughAsync(proxy, new OriginalDestination(IPAddress.Loopback, null, echo.EndPoint.Port), "plain");

        Assert.Equal(new OutboundResult(OutboundError.None, ResponseFlags.None, 5, 5), result);
        var line = Assert.Single(logs.Entries, e => e.EventId.Name == "OutboundAccess").Message;
        Assert.Contains($"dst.addr={echo.EndPoint} dst.hbone_addr=- dst.service=- dst.workload=- dst.identity=- direction=outbound bytes_sent=5 bytes_recv=5", line, StringComparison.Ordinal);
        Assert.Contains("flags=- error=-", line, StringComparison.Ordinal);
    }

    [Fact]
    public async Task Unknown_host_is_no_route_and_the_front_door_is_never_told_connected()
    {
        var logs = new ListLogger();
        using var factory = LoggerFactory.Create(b => b.AddProvider(logs));
        await using var pool = NoTunnelPool();
        var proxy = NewProxy(Mesh(Source()), pool, factory);
        var (app, client) = await StreamPairAsync();
        using (app)
        await using (client.Stream)
        {
            var result = await proxy.ProxyAsync(SourceAddress, client, new OriginalDestination(null, "nowhere.example", 80), Timeout);
            Assert.Equal(new OutboundResult(OutboundError.NoRoute, ResponseFlags.NoRoute, 0, 0), result);
            Assert.False(client.Connected);
        }
        var line = Assert.Single(logs.Entries, e => e.EventId.Name == "OutboundAccess").Message;
        Assert.Contains("dst.addr=nowhere.example:80", line, StringComparison.Ordinal);
        Assert.Contains("flags=NR error=host 'nowhere.example' is not a service of the mesh", line, StringComparison.Ordinal);
    }
}

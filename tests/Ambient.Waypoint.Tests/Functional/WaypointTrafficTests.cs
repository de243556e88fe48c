using System.Net;
using System.Text;
using Ambient.TestCommon;

namespace Ambient.Waypoint.Tests.Functional;

/// <summary>
/// Client pod -> HBONE -> waypoint (Kestrel reads the HTTP inside) -> YARP -> HBONE with the waypoint's identity ->
/// the destination's ztunnel -> the echo app, all real and in-process.
/// </summary>
[Collection(WaypointEnvironment.Collection)]
public sealed class WaypointTrafficTests : IAsyncLifetime
{
    private WaypointEnvironment _env = null!;

    public async ValueTask InitializeAsync()
    {
        _env = await WaypointEnvironment.StartAsync("wp-traffic");
        _env.ServeServices("echo", "empty", "ghost");
    }

    public async ValueTask DisposeAsync() => await _env.DisposeAsync();

    private IPEndPoint Vip(string service, int port) => new(_env.Service(service).Vips[0], port);

    private string Hostname(string service) => $"{service}.{_env.Namespace}.svc.cluster.local";

    [Fact(Timeout = WaypointEnvironment.TestTimeoutMs)]
    public async Task Http11KeepAliveRequestsReachTheBackendWithTheirHostAndPath()
    {
        var connections = 0;
        using var http = _env.HttpThroughWaypoint(Vip("echo", WaypointEnvironment.HttpPort), n => connections = n);
        for (var i = 0; i < 3; i++)
        {
            using var request = new HttpRequestMessage(HttpMethod.Get, $"http://{Hostname("echo")}/hello/{i}?x=1");
            using var response = await http.SendAsync(request, TestContext.Current.CancellationToken);
            var body = await response.Content.ReadAsStringAsync(TestContext.Current.CancellationToken);
            Assert.True(response.StatusCode == HttpStatusCode.OK, $"{response.StatusCode}: {body}\n{_env.Warnings()}");
            Assert.Equal($"host={Hostname("echo")} path=/hello/{i}?x=1 protocol=HTTP/1.1 method=GET", body);
        }
        // Keep-alive: one tunnel carried all three requests.
        Assert.Equal(1, connections);
    }

    [Theory(Timeout = WaypointEnvironment.TestTimeoutMs)]
    // The client's protocol ends at the waypoint; the backend port's declared protocol decides the upstream one.
    [InlineData(WaypointEnvironment.HttpPort, "2.0", "HTTP/1.1")]
    [InlineData(WaypointEnvironment.Http2Port, "2.0", "HTTP/2")]
    [InlineData(WaypointEnvironment.Http2Port, "1.1", "HTTP/2")]
    public async Task H2cAndHttp11ClientsReachHttp11AndHttp2Backends(int port, string clientVersion, string backendProtocol)
    {
        using var http = _env.HttpThroughWaypoint(Vip("echo", port));
        var version = Version.Parse(clientVersion);
        var requests = Enumerable.Range(0, 4).Select(async i =>
        {
            using var request = new HttpRequestMessage(HttpMethod.Post, $"http://{Hostname("echo")}/h2/{i}")
            {
                Version = version,
                VersionPolicy = HttpVersionPolicy.RequestVersionExact,
                Content = new StringContent("payload"),
            };
            using var response = await http.SendAsync(request, TestContext.Current.CancellationToken);
            var body = await response.Content.ReadAsStringAsync(TestContext.Current.CancellationToken);
            Assert.True(response.StatusCode == HttpStatusCode.OK, $"{response.StatusCode}: {body}\n{_env.Warnings()}");
            Assert.Equal(version, response.Version);
            Assert.Equal($"host={Hostname("echo")} path=/h2/{i} protocol={backendProtocol} method=POST", body);
        });
        await Task.WhenAll(requests);
    }

    [Fact(Timeout = WaypointEnvironment.TestTimeoutMs)]
    public async Task TheDestinationSeesTheWaypointAsPeerAndTheWaypointLogsTheClient()
    {
        using var http = _env.HttpThroughWaypoint(Vip("echo", WaypointEnvironment.HttpPort));
        using var response = await http.GetAsync($"http://{Hostname("echo")}/who", TestContext.Current.CancellationToken);
        Assert.Equal(HttpStatusCode.OK, response.StatusCode);

        // The waypoint's access line: the client's identity as source, the request, the picked pod.
        // Logged once the request completes, which may be just after the client has read the response.
        await WaitForAsync(() => _env.Logs.Matching("path=/who").Any());
        var waypointLine = Assert.Single(_env.Logs.Matching("path=/who"));
        Assert.Contains($"src.identity={_env.ClientIdentity}", waypointLine);
        Assert.Contains("method=GET", waypointLine);
        Assert.Contains("status=200", waypointLine);
        Assert.Contains($"dst.identity=spiffe://cluster.local/ns/{_env.Namespace}/sa/echo", waypointLine);
        Assert.Contains($"dst.service={Hostname("echo")}", waypointLine);

        // The destination's ztunnel counted the tunnel with the waypoint's identity as its peer (reporter=destination).
        var metrics = new StringBuilder();
        _env.BackendNode.WriteMetrics(metrics);
        Assert.Contains($"source_principal=\"{_env.WaypointIdentity}\"", metrics.ToString());
    }

    [Fact(Timeout = WaypointEnvironment.TestTimeoutMs)]
    public async Task ANonHttpPortIsRelayedAsTcp()
    {
        await using var tunnel = await _env.TunnelAsync(Vip("echo", WaypointEnvironment.TcpPort), TestContext.Current.CancellationToken);
        var sent = Encoding.ASCII.GetBytes("not http at all\r\n\r\n");
        await tunnel.WriteAsync(sent, TestContext.Current.CancellationToken);
        var received = new byte[sent.Length];
        await tunnel.ReadExactlyAsync(received, TestContext.Current.CancellationToken);
        Assert.Equal(sent, received);
    }

    [Fact(Timeout = WaypointEnvironment.TestTimeoutMs)]
    public async Task AServiceWithoutEndpointsGets503()
    {
        using var http = _env.HttpThroughWaypoint(Vip("empty", WaypointEnvironment.HttpPort));
        using var response = await http.GetAsync($"http://{Hostname("empty")}/", TestContext.Current.CancellationToken);
        Assert.Equal(HttpStatusCode.ServiceUnavailable, response.StatusCode);
        Assert.Equal("no healthy upstream\n", await response.Content.ReadAsStringAsync(TestContext.Current.CancellationToken));
    }

    [Fact(Timeout = WaypointEnvironment.TestTimeoutMs)]
    public async Task AnEndpointThatCannotBeReachedGets502()
    {
        // Pod ghost is healthy in the snapshot, but nothing serves HBONE at its address (its node runs no ztunnel).
        using var http = _env.HttpThroughWaypoint(Vip("ghost", WaypointEnvironment.HttpPort));
        using var response = await http.GetAsync($"http://{Hostname("ghost")}/", TestContext.Current.CancellationToken);
        Assert.Equal(HttpStatusCode.BadGateway, response.StatusCode);
        var line = Assert.Single(_env.Logs.Matching($"dst.service={Hostname("ghost")}"));
        Assert.Contains("status=502", line);
        Assert.Contains("flags=CONNECT", line);
    }

    [Fact(Timeout = WaypointEnvironment.TestTimeoutMs)]
    public async Task AServiceTheWaypointDoesNotServeIsRefused()
    {
        // Only Services bound to this waypoint are served: no open relay into the mesh.
        _env.Waypoint.Config.ApplyProtocols(new() { TypeUrl = Core.Xds.XdsTypeUrls.ServiceProtocols, Nonce = "rm", RemovedResources = { $"{_env.Namespace}/{Hostname("empty")}" } });
        var refused = await Assert.ThrowsAnyAsync<Hbone.HboneException>(
            () => _env.TunnelAsync(Vip("empty", WaypointEnvironment.HttpPort), TestContext.Current.CancellationToken));
        Assert.Contains("400", refused.Message);
    }

    private async Task WaitForAsync(Func<bool> condition)
    {
        using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(10));
        while (!condition())
        {
            await Task.Delay(20, timeout.Token);
        }
    }
}

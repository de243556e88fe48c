using System.Net.Sockets;
using System.Security.Cryptography;
using System.Text.Json;
using Ambient.TestCommon;

namespace Ambient.Ztunnel.Tests.Functional;

/// <summary>
/// Two ztunnels and istiod-lite in-process: a pod on node-1 reaches a service on node-2 through SOCKS5 -> HBONE
/// (mutual TLS with both pods' identities) -> the echo pod; plaintext to a pod outside the mesh; metrics and
/// config_dump show what happened.
/// </summary>
public sealed class CrossNodeTests : IAsyncLifetime
{
    private const string Client = "spiffe://cluster.local/ns/xnode/sa/client";
    private const string Echo = "spiffe://cluster.local/ns/xnode/sa/echo";
    private MeshEnvironment _mesh = null!;

    public async ValueTask InitializeAsync() => _mesh = await MeshEnvironment.StartAsync("xnode");

    public async ValueTask DisposeAsync() => await _mesh.DisposeAsync();

    private static async Task<byte[]> EchoAsync(Socket socket, int size)
    {
        var payload = RandomNumberGenerator.GetBytes(size);
        var send = socket.SendAsync(payload);
        var back = new byte[size];
        await MeshEnvironment.ReceiveExactlyAsync(socket, back, CancellationToken.None).WaitAsync(TimeSpan.FromSeconds(30));
        await send;
        Assert.Equal(SHA256.HashData(payload), SHA256.HashData(back));
        return back;
    }

    [Fact]
    public async Task Service_hostname_through_two_ztunnels_is_mutual_tls_with_both_identities_in_metrics()
    {
        using (var socket = await _mesh.Socks5ConnectAsync("client", "echo.xnode.svc.cluster.local", 80))
        {
            await EchoAsync(socket, 1 << 20);
            // Half-close: our FIN travels as END_STREAM, the echo server closes, and its FIN comes back.
            socket.Shutdown(SocketShutdown.Send);
            var tail = new byte[1];
            Assert.Equal(0, await socket.ReceiveAsync(tail).WaitAsync(TimeSpan.FromSeconds(10)));
        }
        var client = "spiffe://cluster.local/ns/xnode/sa/client";
        var echo = "spiffe://cluster.local/ns/xnode/sa/echo";
        await AssertEventuallyAsync(async () =>
        {
            var source = await _mesh.MetricsAsync("node-1");
            var destination = await _mesh.MetricsAsync("node-2");
            return Has(source, "istio_tcp_connections_closed_total", "reporter=\"source\"", $"source_principal=\"{client}\"", $"destination_principal=\"{echo}\"",
                       "destination_service=\"echo.xnode.svc.cluster.local\"", "connection_security_policy=\"mutual_tls\"")
                && Has(destination, "istio_tcp_connections_closed_total", "reporter=\"destination\"", $"source_principal=\"{client}\"",
                       "source_workload=\"client\"", $"destination_principal=\"{echo}\"", "destination_workload=\"echo-v1\"", "connection_security_policy=\"mutual_tls\"")
                && Has(destination, "istio_tcp_received_bytes_total", "reporter=\"destination\"", "} 1048576");
        });
    }

    [Fact]
    public async Task The_destination_names_the_source_workload_even_when_the_app_is_not_on_the_pod_address()
    {
        // A host program using the pod's SOCKS5 port from 127.0.0.1: forwarded for= is not the pod, the baggage is.
        using (var s = await _mesh.Socks5ConnectAsync("client", "echo.xnode.svc.cluster.local", 80, bindToPod: false))
        {
            await EchoAsync(s, 2048);
        }
        await AssertEventuallyAsync(async () => Has(await _mesh.MetricsAsync("node-2"), "istio_tcp_connections_closed_total",
            "reporter=\"destination\"", "source_workload=\"client\"", "source_principal=\"spiffe://cluster.local/ns/xnode/sa/client\""));
    }

    [Fact]
    public async Task Short_names_and_pod_ip_work_and_unknown_host_gets_a_socks_error()
    {
        using (var s = await _mesh.Socks5ConnectAsync("client", "echo", 80))
        {
            await EchoAsync(s, 1000);
        }
        using (var s = await _mesh.Socks5ConnectAsync("client", "echo.xnode", 80))
        {
            await EchoAsync(s, 1000);
        }
        using (var s = await _mesh.Socks5ConnectAsync("client", _mesh.PodAddress("echo-v1").ToString(), 8080))
        {
            await EchoAsync(s, 1000);
        }
        var refused = await Assert.ThrowsAsync<SocksRefusedException>(() => _mesh.Socks5ConnectAsync("client", "nope.xnode.svc.cluster.local", 80));
        Assert.Equal(4, refused.Code); // host unreachable
    }

    [Fact]
    public async Task Every_name_form_the_VIP_and_the_pod_IP_go_through_SOCKS5_as_mutual_tls()
    {
        // A TCP echo answers plaintext just as well, so an echo proves nothing about the tunnel: each form must add
        // exactly one mutual_tls connection at the source ztunnel (for echo-v1, with the client's and echo's
        // identities) and one at the destination ztunnel, which a plaintext or direct connection never passes through.
        const string service = "echo.xnode.svc.cluster.local";
        var vip = _mesh.Istiod.Mesh.Snapshot.FindServiceByHostname(service)!.Vips[0];
        (string Host, int Port, bool ViaService)[] forms =
        [
            ("echo", 80, true),
            ("echo.xnode", 80, true),
            ("echo.xnode.svc", 80, true),
            (service, 80, true),
            (vip.ToString(), 80, true),
            (_mesh.PodAddress("echo-v1").ToString(), 8080, false),
        ];
        string[] source = ["reporter=\"source\"", "source_workload=\"client\"", $"source_principal=\"{Client}\"",
            "destination_workload=\"echo-v1\"", $"destination_principal=\"{Echo}\"", "connection_security_policy=\"mutual_tls\""];
        string[] destination = ["reporter=\"destination\"", "source_workload=\"client\"", $"source_principal=\"{Client}\"",
            "destination_workload=\"echo-v1\"", $"destination_principal=\"{Echo}\"", "connection_security_policy=\"mutual_tls\""];
        const string closed = "istio_tcp_connections_closed_total";
        foreach (var (host, port, viaService) in forms)
        {
            long sourceBefore = PrometheusCounters.Sum(await _mesh.MetricsAsync("node-1"), closed, source);
            long serviceBefore = PrometheusCounters.Sum(await _mesh.MetricsAsync("node-1"), closed, [.. source, $"destination_service=\"{service}\""]);
            long destinationBefore = PrometheusCounters.Sum(await _mesh.MetricsAsync("node-2"), closed, destination);
            using (var socket = await _mesh.Socks5ConnectAsync("client", host, port))
            {
                await EchoAsync(socket, 1000);
                socket.Shutdown(SocketShutdown.Send);
                Assert.Equal(0, await socket.ReceiveAsync(new byte[1]).WaitAsync(TimeSpan.FromSeconds(10)));
            }
            string? last = null;
            await AssertEventuallyAsync(async () =>
            {
                var src = await _mesh.MetricsAsync("node-1");
                var dst = await _mesh.MetricsAsync("node-2");
                last = $"{host}:{port}: source {PrometheusCounters.Sum(src, closed, source) - sourceBefore}, destination {PrometheusCounters.Sum(dst, closed, destination) - destinationBefore} new mutual_tls connections\n{src}\n{dst}";
                return PrometheusCounters.Sum(src, closed, source) == sourceBefore + 1
                    && PrometheusCounters.Sum(dst, closed, destination) == destinationBefore + 1
                    && (!viaService || PrometheusCounters.Sum(src, closed, [.. source, $"destination_service=\"{service}\""]) == serviceBefore + 1);
            }, () => last ?? host);
        }
        var metrics = await _mesh.MetricsAsync("node-1");
        Assert.Equal(0, PrometheusCounters.Sum(metrics, closed, "destination_workload=\"echo-v1\"", "connection_security_policy=\"unknown\""));
    }

    [Fact]
    public async Task A_destination_outside_the_mesh_gets_plain_tcp()
    {
        using (var s = await _mesh.Socks5ConnectAsync("client", "legacy-echo.xnode-legacy", 80))
        {
            await EchoAsync(s, 4096);
        }
        await AssertEventuallyAsync(async () => Has(await _mesh.MetricsAsync("node-1"), "istio_tcp_connections_closed_total",
            "reporter=\"source\"", "destination_workload=\"legacy-echo\"", "connection_security_policy=\"unknown\""));
        // Nothing arrived at node-2's ztunnel for it: no destination-side row for legacy-echo.
        Assert.DoesNotContain("destination_workload=\"legacy-echo\"", await _mesh.MetricsAsync("node-2"));
    }

    [Fact]
    public async Task Two_hundred_concurrent_connections_ride_on_at_most_two_tls_connections()
    {
        var sockets = await Task.WhenAll(Enumerable.Range(0, 200).Select(_ => _mesh.Socks5ConnectAsync("client", "echo.xnode.svc.cluster.local", 80)));
        try
        {
            await Task.WhenAll(sockets.Select(s => EchoAsync(s, 16 * 1024)));
            var dump = JsonDocument.Parse(await _mesh.ConfigDumpAsync("node-1")).RootElement;
            var entries = dump.GetProperty("pooledConnections").EnumerateArray()
                .Where(e => e.GetProperty("destination").GetString() == "spiffe://cluster.local/ns/xnode/sa/echo").ToArray();
            var connections = entries.Sum(e => e.GetProperty("connections").GetArrayLength());
            var streams = entries.Sum(e => e.GetProperty("connections").EnumerateArray().Sum(c => c.GetProperty("activeStreams").GetInt32()));
            Assert.InRange(connections, 1, 2);
            Assert.Equal(200, streams);
        }
        finally
        {
            foreach (var s in sockets)
            {
                s.Dispose();
            }
        }
    }

    [Fact]
    public async Task Readiness_and_config_dump_show_certificates_and_workloads()
    {
        using var http = new HttpClient();
        var ready = await http.GetAsync($"http://{_mesh.Nodes["node-2"].Admin.ReadinessEndpoint}/healthz/ready");
        Assert.Equal(System.Net.HttpStatusCode.OK, ready.StatusCode);
        var dump = JsonDocument.Parse(await _mesh.ConfigDumpAsync("node-2")).RootElement;
        Assert.Contains(dump.GetProperty("workloads").EnumerateArray(), w => w.GetProperty("name").GetString() == "echo-v1");
        var certs = dump.GetProperty("certificates").EnumerateArray().ToArray();
        Assert.Contains(certs, c => c.ToString().Contains("spiffe://cluster.local/ns/xnode/sa/echo", StringComparison.Ordinal));
    }

    [Fact]
    public async Task Admin_paths_answer_only_on_their_own_port_and_only_to_reads()
    {
        // The admin ports share one Kestrel: each port must still keep to its own paths.
        var admin = _mesh.Nodes["node-1"].Admin;
        using var http = new HttpClient();
        async Task<System.Net.HttpStatusCode> StatusAsync(HttpMethod method, string url)
        {
            using var response = await http.SendAsync(new HttpRequestMessage(method, url));
            return response.StatusCode;
        }
        Assert.Equal(System.Net.HttpStatusCode.NotFound, await StatusAsync(HttpMethod.Get, $"http://{admin.AdminEndpoint}/metrics"));
        Assert.Equal(System.Net.HttpStatusCode.NotFound, await StatusAsync(HttpMethod.Get, $"http://{admin.MetricsEndpoint}/config_dump"));
        Assert.Equal(System.Net.HttpStatusCode.NotFound, await StatusAsync(HttpMethod.Get, $"http://{admin.ReadinessEndpoint}/metrics"));
        Assert.Equal(System.Net.HttpStatusCode.OK, await StatusAsync(HttpMethod.Head, $"http://{admin.MetricsEndpoint}/stats/prometheus"));

        using var post = await http.PostAsync($"http://{admin.AdminEndpoint}/config_dump", new StringContent("{}"));
        Assert.Equal(System.Net.HttpStatusCode.MethodNotAllowed, post.StatusCode);
        Assert.Equal("GET, HEAD", string.Join(", ", post.Content.Headers.Allow));

        // Process metrics with the standard names, so proxy CPU and memory dashboards work unchanged.
        var metrics = await _mesh.MetricsAsync("node-1");
        var rss = metrics.Split('\n').Single(l => l.StartsWith("process_resident_memory_bytes ", StringComparison.Ordinal));
        Assert.InRange(double.Parse(rss.Split(' ')[1], System.Globalization.CultureInfo.InvariantCulture), 1 << 20, 1L << 40);
        Assert.Contains("\ndotnet_collection_count_total{generation=\"0\"} ", metrics, StringComparison.Ordinal);
    }

    internal static bool Has(string metrics, string family, params string[] fragments) =>
        metrics.Split('\n').Any(line => line.StartsWith(family + "{", StringComparison.Ordinal) && fragments.All(f => line.Contains(f, StringComparison.Ordinal)));

    internal static Task AssertEventuallyAsync(Func<Task<bool>> condition) => AssertEventuallyAsync(condition, () => "");

    internal static async Task AssertEventuallyAsync(Func<Task<bool>> condition, Func<string> explain)
    {
        var deadline = DateTime.UtcNow.AddSeconds(10);
        while (!await condition())
        {
            Assert.True(DateTime.UtcNow < deadline, "condition not met within 10 s " + explain());
            await Task.Delay(100);
        }
    }
}

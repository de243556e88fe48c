using System.Net;
using Ambient.TestCommon;

namespace Ambient.Waypoint.Tests.Functional;

/// <summary>
/// Istio's request metrics as the waypoint reports them (reporter="waypoint"), scraped from its admin port the way
/// Prometheus scrapes Istio's waypoints (/stats/prometheus).
/// </summary>
[Collection(WaypointEnvironment.Collection)]
public sealed class WaypointMetricsTests : IAsyncLifetime
{
    private WaypointEnvironment _env = null!;

    public async ValueTask InitializeAsync()
    {
        _env = await WaypointEnvironment.StartAsync("wp-metrics");
        _env.ServeServices("echo", "empty", "ghost");
    }

    public async ValueTask DisposeAsync() => await _env.DisposeAsync();

    private IPEndPoint Vip(string service) => new(_env.Service(service).Vips[0], WaypointEnvironment.HttpPort);

    private string Hostname(string service) => $"{service}.{_env.Namespace}.svc.cluster.local";

    /// <summary>
    /// Scrapes until <paramref name="done"/> holds (at most 5 s), then returns the last text. A request is recorded when
    /// the waypoint finishes it, which may be just after the client has read the last byte of the answer.
    /// </summary>
    private async Task<string> ScrapeUntilAsync(Func<string, bool> done)
    {
        var deadline = DateTime.UtcNow.AddSeconds(5);
        while (true)
        {
            var metrics = await ScrapeAsync();
            if (done(metrics) || DateTime.UtcNow > deadline) return metrics;
            await Task.Delay(20, TestContext.Current.CancellationToken);
        }
    }

    private async Task<string> ScrapeAsync(string path = "/stats/prometheus")
    {
        using var admin = new HttpClient();
        using var response = await admin.GetAsync($"http://{_env.Waypoint.AdminEndpoint}{path}", TestContext.Current.CancellationToken);
        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        Assert.StartsWith("text/plain; version=0.0.4", response.Content.Headers.ContentType?.ToString());
        return await response.Content.ReadAsStringAsync(TestContext.Current.CancellationToken);
    }

    [Fact(Timeout = WaypointEnvironment.TestTimeoutMs)]
    public async Task RequestsAreCountedWithIstiosLabelsAndTimed()
    {
        const int requests = 5;
        using var http = _env.HttpThroughWaypoint(Vip("echo"));
        for (var i = 0; i < requests; i++)
        {
            using var response = await http.GetAsync($"http://{Hostname("echo")}/m/{i}", TestContext.Current.CancellationToken);
            Assert.True(response.StatusCode == HttpStatusCode.OK, $"{response.StatusCode}\n{_env.Warnings()}");
        }

        string[] labels =
        [
            "reporter=\"waypoint\"",
            $"source_principal=\"{_env.ClientIdentity}\"",
            // The source pod named by forwarded: for= (its identity is the peer's): pod label app=client, no version.
            "source_workload=\"client\"",
            $"source_workload_namespace=\"{_env.Namespace}\"",
            "source_app=\"client\"",
            "source_version=\"latest\"",
            "source_canonical_service=\"client\"",
            "source_canonical_revision=\"latest\"",
            "source_cluster=\"Kubernetes\"",
            $"destination_service=\"{Hostname("echo")}\"",
            "destination_service_name=\"echo\"",
            $"destination_service_namespace=\"{_env.Namespace}\"",
            "destination_workload=\"echo-v1\"",
            $"destination_workload_namespace=\"{_env.Namespace}\"",
            $"destination_principal=\"spiffe://cluster.local/ns/{_env.Namespace}/sa/echo\"",
            // Pod label app=echo, no version label: Istio's canonical service and its default revision.
            "destination_app=\"echo\"",
            "destination_version=\"latest\"",
            "destination_canonical_service=\"echo\"",
            "destination_canonical_revision=\"latest\"",
            "destination_cluster=\"Kubernetes\"",
            "request_protocol=\"http\"",
            "response_code=\"200\"",
            "response_flags=\"-\"",
            "connection_security_policy=\"mutual_tls\"",
        ];
        var metrics = await ScrapeUntilAsync(m => PrometheusCounters.Sum(m, "istio_requests_total", labels) == requests);
        Assert.True(PrometheusCounters.Sum(metrics, "istio_requests_total", labels) == requests, metrics);
        Assert.Equal(requests, PrometheusCounters.Sum(metrics, "istio_request_duration_milliseconds_count", labels));
        Assert.Equal(requests, PrometheusCounters.Sum(metrics, "istio_request_duration_milliseconds_bucket", [.. labels, "le=\"+Inf\""]));
        Assert.Equal(requests, PrometheusCounters.Sum(metrics, "istio_request_bytes_count", labels));
        Assert.Equal(requests, PrometheusCounters.Sum(metrics, "istio_response_bytes_count", labels));
        Assert.Contains("# TYPE istio_request_duration_milliseconds histogram", metrics);
        // /metrics serves the same text.
        Assert.Equal(requests, PrometheusCounters.Sum(await ScrapeAsync("/metrics"), "istio_requests_total", labels));
    }

    [Fact(Timeout = WaypointEnvironment.TestTimeoutMs)]
    public async Task BodySizesAreTheBytesThatCrossed_ChunkedBodiesIncluded()
    {
        // A chunked request body (no Content-Length) and the echo's answer, whatever its framing: the sizes Istio
        // reports are the bytes sent, not a declared length.
        var body = new byte[3000];
        Array.Fill(body, (byte)'b');
        using var http = _env.HttpThroughWaypoint(Vip("echo"));
        using var request = new HttpRequestMessage(HttpMethod.Post, $"http://{Hostname("echo")}/bytes")
        {
            Content = new StreamContent(new MemoryStream(body)), // no length: sent chunked
        };
        request.Headers.TransferEncodingChunked = true;
        using var response = await http.SendAsync(request, TestContext.Current.CancellationToken);
        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        var answer = await response.Content.ReadAsByteArrayAsync(TestContext.Current.CancellationToken);
        Assert.NotEmpty(answer);

        string[] labels = ["reporter=\"waypoint\"", $"destination_service=\"{Hostname("echo")}\"", "response_code=\"200\""];
        var metrics = await ScrapeUntilAsync(m => PrometheusCounters.Sum(m, "istio_response_bytes_count", labels) >= 1);
        Assert.True(PrometheusCounters.Sum(metrics, "istio_request_bytes_sum", labels) == body.Length, metrics);
        Assert.True(PrometheusCounters.Sum(metrics, "istio_response_bytes_sum", labels) == answer.Length, metrics);
    }

    [Fact(Timeout = WaypointEnvironment.TestTimeoutMs)]
    public async Task NoHealthyUpstreamIsCountedAs503WithFlagUH()
    {
        using (var http = _env.HttpThroughWaypoint(Vip("empty")))
        using (var response = await http.GetAsync($"http://{Hostname("empty")}/", TestContext.Current.CancellationToken))
        {
            Assert.Equal(HttpStatusCode.ServiceUnavailable, response.StatusCode);
        }
        var metrics = await ScrapeUntilAsync(m => m.Contains("response_flags=\"UH\"", StringComparison.Ordinal));
        // The Service is known; no workload was picked.
        Assert.True(PrometheusCounters.Sum(metrics, "istio_requests_total", "reporter=\"waypoint\"", $"destination_service=\"{Hostname("empty")}\"",
            "destination_workload=\"unknown\"", "response_code=\"503\"", "response_flags=\"UH\"") == 1, metrics);
    }

    [Fact(Timeout = WaypointEnvironment.TestTimeoutMs)]
    public async Task AnUnreachableEndpointIsCountedAs502WithFlagUF()
    {
        using (var http = _env.HttpThroughWaypoint(Vip("ghost")))
        using (var response = await http.GetAsync($"http://{Hostname("ghost")}/", TestContext.Current.CancellationToken))
        {
            Assert.Equal(HttpStatusCode.BadGateway, response.StatusCode);
        }
        var metrics = await ScrapeUntilAsync(m => m.Contains("response_flags=\"UF\"", StringComparison.Ordinal));
        // The picked endpoint could not be connected: Envoy's upstream connection failure.
        Assert.True(PrometheusCounters.Sum(metrics, "istio_requests_total", "reporter=\"waypoint\"", $"destination_service=\"{Hostname("ghost")}\"",
            "destination_workload=\"ghost\"", "response_code=\"502\"", "response_flags=\"UF\"") == 1, metrics);
    }
}

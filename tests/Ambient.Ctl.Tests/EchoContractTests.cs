using System.Diagnostics;
using System.Net;
using System.Text.Json;
using Ambient.Ctl.Local;
using Ambient.Samples.Echo;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting.Server;
using Microsoft.AspNetCore.Hosting.Server.Features;
using Microsoft.Extensions.DependencyInjection;

namespace Ambient.Ctl.Tests;

/// <summary>
/// The echo sample against the Gateway API conformance echo contract, running the real server on loopback sockets.
/// </summary>
public sealed class EchoContractTests : IAsyncLifetime
{
    private readonly StringWriter _log = new();
    private WebApplication? _app;
    private List<Uri> _bases = [];
    private readonly HttpClient _http = new(new SocketsHttpHandler { UseProxy = false, AllowAutoRedirect = false });

    public async ValueTask InitializeAsync()
    {
        // Two endpoints, as a pod with two containerPorts gets.
        _app = EchoServer.Build(new EchoSettings(IPAddress.Loopback, [FreePort(), FreePort()], "echo-v1-abc", "shop", "echo", "echo-sa", "v1"),
            TextWriter.Synchronized(_log));
        await _app.StartAsync(TestContext.Current.CancellationToken);
        _bases = _app.Services.GetRequiredService<IServer>().Features.Get<IServerAddressesFeature>()!.Addresses.Select(a => new Uri(a)).ToList();
    }

    public async ValueTask DisposeAsync()
    {
        _http.Dispose();
        if (_app is not null) await _app.DisposeAsync();
    }

    private static int FreePort()
    {
        using var l = new System.Net.Sockets.TcpListener(IPAddress.Loopback, 0);
        l.Start();
        return ((IPEndPoint)l.LocalEndpoint).Port;
    }

    private async Task<(HttpResponseMessage Response, JsonElement Body)> SendAsync(HttpRequestMessage request)
    {
        var response = await _http.SendAsync(request, TestContext.Current.CancellationToken);
        var text = await response.Content.ReadAsStringAsync(TestContext.Current.CancellationToken);
        return (response, JsonDocument.Parse(text).RootElement.Clone());
    }

    [Fact]
    public async Task EveryContainerPort_AnswersEveryMethodAndPathWithTheConformanceJson()
    {
        Assert.Equal(2, _bases.Count);
        foreach (var baseUri in _bases)
        {
            foreach (var method in new[] { "GET", "POST", "DELETE", "PATCH", "OPTIONS" })
            {
                using var request = new HttpRequestMessage(new HttpMethod(method), new Uri(baseUri, "/some/deep/path?a=1&b=two"));
                request.Headers.Host = "echo.shop.svc.cluster.local";
                request.Headers.TryAddWithoutValidation("x-custom-header", ["one", "two"]);
                var (response, body) = await SendAsync(request);
                Assert.Equal(HttpStatusCode.OK, response.StatusCode);
                Assert.Equal("application/json", response.Content.Headers.ContentType?.MediaType);
                Assert.Equal("/some/deep/path?a=1&b=two", body.GetProperty("path").GetString());
                Assert.Equal("echo.shop.svc.cluster.local", body.GetProperty("host").GetString());
                Assert.Equal(method, body.GetProperty("method").GetString());
                Assert.Equal("HTTP/1.1", body.GetProperty("proto").GetString());
                Assert.Equal("shop", body.GetProperty("namespace").GetString());
                Assert.Equal("echo", body.GetProperty("service").GetString());
                Assert.Equal("echo-v1-abc", body.GetProperty("pod").GetString());
                var headers = body.GetProperty("headers");
                Assert.Equal(["one", "two"], headers.GetProperty("X-Custom-Header").EnumerateArray().Select(v => v.GetString()).SelectMany(v => v!.Split(", ")));
                Assert.False(headers.TryGetProperty("Host", out _), "Host is reported as \"host\", not among the headers (as Go's net/http)");
            }
        }
    }

    [Fact]
    public async Task PriorKnowledgeH2c_OnTheSamePort()
    {
        using var request = new HttpRequestMessage(HttpMethod.Get, new Uri(_bases[1], "/h2?x=y"))
        {
            Version = HttpVersion.Version20,
            VersionPolicy = HttpVersionPolicy.RequestVersionExact,
        };
        var (response, body) = await SendAsync(request);
        Assert.Equal(HttpVersion.Version20, response.Version);
        Assert.Equal("HTTP/2.0", body.GetProperty("proto").GetString());
        Assert.Equal("/h2?x=y", body.GetProperty("path").GetString());
        Assert.Equal(_bases[1].Authority, body.GetProperty("host").GetString());
    }

    [Fact]
    public async Task EchoSetHeader_SetsResponseHeaders()
    {
        using var request = new HttpRequestMessage(HttpMethod.Get, new Uri(_bases[0], "/"));
        request.Headers.TryAddWithoutValidation("X-Echo-Set-Header", "X-Foo: bar, X-Baz:qux,X-Foo:again");
        var (response, _) = await SendAsync(request);
        Assert.Equal("bar,again", string.Join(",", response.Headers.GetValues("X-Foo")));
        Assert.Equal("qux", Assert.Single(response.Headers.GetValues("X-Baz")));
    }

    [Theory]
    [InlineData("300ms", 300)]
    [InlineData("0.3s", 300)]
    [InlineData("300", 300)]
    public async Task Delay_WaitsBeforeAnswering(string delay, int milliseconds)
    {
        var sw = Stopwatch.StartNew();
        using var request = new HttpRequestMessage(HttpMethod.Get, new Uri(_bases[0], "/slow?delay=" + delay));
        var (response, _) = await SendAsync(request);
        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        Assert.True(sw.ElapsedMilliseconds >= milliseconds - 20, $"answered after {sw.ElapsedMilliseconds} ms");
    }

    [Theory]
    [InlineData("1m30s", 90_000)]
    [InlineData("1.5h", -1)]
    [InlineData("10x", -1)]
    [InlineData("", -1)]
    [InlineData("250us", 0.25)]
    public void ParseDelay_ReadsGoDurations(string text, double expectedMs)
    {
        var parsed = EchoServer.ParseDelay(text);
        if (expectedMs < 0 || expectedMs > EchoServer.MaxDelay.TotalMilliseconds) Assert.Null(parsed);
        else Assert.Equal(expectedMs, parsed!.Value.TotalMilliseconds, 3);
    }

    [Fact]
    public async Task ResponseCode_SucceedAfter_CountsPerUuidAndAlwaysSendsTheBody()
    {
        var codes = new List<int>();
        for (var i = 0; i < 4; i++)
        {
            using var request = new HttpRequestMessage(HttpMethod.Get, new Uri(_bases[0], "/flaky?responseCode=503&succeedAfter=2&uuid=u1"));
            var (response, body) = await SendAsync(request);
            codes.Add((int)response.StatusCode);
            Assert.Equal("/flaky?responseCode=503&succeedAfter=2&uuid=u1", body.GetProperty("path").GetString());
        }
        Assert.Equal([503, 503, 200, 200], codes);
        // Another uuid has its own count; no succeedAfter means always that code.
        using var other = new HttpRequestMessage(HttpMethod.Get, new Uri(_bases[0], "/flaky?responseCode=503&succeedAfter=1&uuid=u2"));
        Assert.Equal(HttpStatusCode.ServiceUnavailable, (await SendAsync(other)).Response.StatusCode);
        using var always = new HttpRequestMessage(HttpMethod.Get, new Uri(_bases[0], "/x?responseCode=418"));
        var (teapot, teapotBody) = await SendAsync(always);
        Assert.Equal(418, (int)teapot.StatusCode);
        Assert.Equal("echo-v1-abc", teapotBody.GetProperty("pod").GetString());
    }

    [Fact]
    public async Task EveryRequest_IsLoggedAsOneLineWithMethodPathAndHeaders()
    {
        using var request = new HttpRequestMessage(HttpMethod.Put, new Uri(_bases[0], "/logged?q=1"));
        request.Headers.TryAddWithoutValidation("X-Trace", "abc");
        await SendAsync(request);
        var line = Assert.Single(_log.ToString().Split('\n'), l => l.Contains("/logged?q=1", StringComparison.Ordinal));
        Assert.Contains("PUT /logged?q=1 HTTP/1.1", line, StringComparison.Ordinal);
        Assert.Contains("X-Trace: abc", line, StringComparison.Ordinal);
    }

    [Fact]
    public async Task ARequestBody_IsReadAndReportedByLengthAndSha256_InTheJsonAndTheLog()
    {
        var body = new byte[70_000];
        Random.Shared.NextBytes(body);
        using var request = new HttpRequestMessage(HttpMethod.Post, new Uri(_bases[0], "/with-body")) { Content = new ByteArrayContent(body) };
        var (_, json) = await SendAsync(request);
        var sha = Convert.ToHexStringLower(System.Security.Cryptography.SHA256.HashData(body));
        Assert.Equal(body.Length, json.GetProperty("bodyLength").GetInt64());
        Assert.Equal(sha, json.GetProperty("bodySha256").GetString());
        var line = Assert.Single(_log.ToString().Split('\n'), l => l.Contains("/with-body", StringComparison.Ordinal));
        Assert.EndsWith($" body={body.Length} sha256={sha}", line.TrimEnd('\r'), StringComparison.Ordinal);

        using var empty = new HttpRequestMessage(HttpMethod.Get, new Uri(_bases[0], "/no-body"));
        var (_, none) = await SendAsync(empty);
        Assert.Equal(0, none.GetProperty("bodyLength").GetInt64());
        Assert.False(none.TryGetProperty("bodySha256", out _));
    }

    [Fact]
    public void Settings_FromWhatAmbientctlSets_ListenOnEveryContainerPortAndNameTheService()
    {
        var plan = new ContainerPlan("shop", "echo-1", "echo", "node-1", IPAddress.Parse("127.0.2.1"), "echo", MeshPlan.EchoImage, [], [], 8080,
            System.Collections.Immutable.ImmutableSortedDictionary<string, string>.Empty, new Ambient.Core.Config.SourceLocation("f.yaml", 1))
        {
            Ports = [8080, 9090],
            App = "shop-echo",
        };
        var env = LocalMesh.PodEnvironment(plan);
        var settings = EchoSettings.FromEnvironment(k => env.GetValueOrDefault(k), out var error);
        Assert.Null(error);
        Assert.Equal([8080, 9090], settings!.Ports);
        Assert.Equal("shop-echo", settings.Service);
        Assert.Equal("shop", settings.Namespace);
        Assert.Equal("echo-1", settings.Pod);

        env["SERVICE_NAME"] = "explicit";
        Assert.Equal("explicit", EchoSettings.FromEnvironment(k => env.GetValueOrDefault(k), out _)!.Service);
        Assert.Null(EchoSettings.FromEnvironment(k => k == "PORTS" ? "80,x" : null, out var bad));
        Assert.Contains("'x' is not a port", bad, StringComparison.Ordinal);
    }
}

using System.Diagnostics;
using System.Net;
using Ambient.TestCommon;
using Microsoft.Extensions.Logging;

namespace Ambient.Waypoint.Tests.Functional;

/// <summary>
/// Hostile clients against the waypoint, over real HBONE tunnels from the client pod: the abuser's connection is
/// refused or closed, the waypoint stays up with bounded memory, and a neighbour's requests through the same
/// waypoint keep succeeding meanwhile.
/// </summary>
[Collection(WaypointEnvironment.Collection)]
public sealed class WaypointHostileInputTests : IAsyncLifetime
{
    private WaypointEnvironment _env = null!;

    public async ValueTask InitializeAsync()
    {
        _env = await WaypointEnvironment.StartAsync("wp-hostile");
        _env.ServeServices("echo");
    }

    public async ValueTask DisposeAsync() => await _env.DisposeAsync();

    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    private IPEndPoint Vip(int port) => new(_env.Service("echo").Vips[0], port);

    private string Hostname => $"echo.{_env.Namespace}.svc.cluster.local";

    /// <summary>
    /// CVE-2023-44487 over h2c tunnels: HEADERS (a complete GET) then RST_STREAM CANCEL, thousands of times per
    /// connection, as fast as the client writes (100 pairs per write, or one), and a new connection each time one is
    /// cut, for a few seconds. What Kestrel does (seen, not assumed): each reset stream still runs the request pipeline
    /// until it notices the abort, and once more than MaxTrackedStreams (2 x MaxStreamsPerConnection = 200) are
    /// pending, it aborts the connection: its frame writer's queue overflows ("exceeded the output operations maximum
    /// queue size", GOAWAY INTERNAL_ERROR), or too many streams are tracked (GOAWAY ENHANCE_YOUR_CALM); the GOAWAY
    /// itself may be lost when the abort closes the transport first. So: every abusive connection is cut within
    /// seconds having had a few hundred of its requests run, any GOAWAY carries one of those two codes, one of the two
    /// defences is seen, and the neighbour keeps getting answers throughout, never an error. (With
    /// MaxStreamsPerConnection raised to a million, neither defence fires: the waypoint runs all 20,000 requests and
    /// the connection is never cut, and this test fails.)
    /// </summary>
    [Theory(Timeout = WaypointEnvironment.TestTimeoutMs)]
    [InlineData(100)]
    [InlineData(1)]
    public async Task H2cRapidReset_EachAbusiveConnectionIsCut_TheNeighbourIsServed_MemoryStaysBounded(int pairsPerWrite)
    {
        const int streamsPerConnection = 20_000;
        var authority = $"{Hostname}:{WaypointEnvironment.Http2Port}";
        var headers = RawHttp2Client.GetHeadersBlock(authority);
        await using var neighbour = new NeighbourLoop(_env.HttpThroughWaypoint(Vip(WaypointEnvironment.HttpPort)), $"http://{Hostname}/neighbour");
        await neighbour.WaitForFirstAsync(Ct);
        var heapBefore = GC.GetTotalMemory(forceFullCollection: true);
        var neighbourBefore = neighbour.Succeeded;

        var rounds = new List<string>();
        var handledBefore = 0;
        var defended = false;
        var attack = Stopwatch.StartNew();
        while (attack.Elapsed < TimeSpan.FromSeconds(3) || rounds.Count < 2)
        {
            await using var tunnel = await _env.TunnelAsync(Vip(WaypointEnvironment.Http2Port), Ct);
            await using var abuser = await RawHttp2Client.StartAsync(tunnel, Ct);
            var clock = Stopwatch.StartNew();
            var sent = await abuser.RapidResetAsync(headers, 1, streamsPerConnection, pairsPerWrite, Ct);
            var closed = await Task.WhenAny(abuser.Closed, Task.Delay(TimeSpan.FromSeconds(15), Ct)) == abuser.Closed;
            var cutAfter = clock.Elapsed;
            // The abuser's requests the waypoint ran (each ends in an access line, aborted or not); the last ones
            // finish just after the cut.
            await Task.Delay(200, Ct);
            var handledNow = _env.Logs.Count(m => m.Contains("authority=" + authority, StringComparison.Ordinal));
            var handled = handledNow - handledBefore;
            handledBefore = handledNow;
            var goAway = abuser.GoAway.IsCompletedSuccessfully ? await abuser.GoAway : default;
            var round = $"round {rounds.Count + 1}: wrote {sent} streams; cut {closed} after {cutAfter.TotalSeconds:F2} s; GOAWAY "
                + (abuser.GoAway.IsCompletedSuccessfully ? $"error {goAway.ErrorCode} last stream {goAway.LastStreamId}" : "none")
                + $"; the waypoint ran {handled} of its requests";
            rounds.Add(round);
            TestContext.Current.TestOutputHelper?.WriteLine(round);

            Assert.True(closed, "the abusive connection was not closed: " + round);
            Assert.True(cutAfter < TimeSpan.FromSeconds(10), "the abusive connection was cut late: " + round);
            // Defended, the waypoint runs a few hundred to about a thousand of them before the cut (how many depends on
            // the host's load: 1026 was seen in CI); undefended, it ran every one of the 20,000.
            Assert.True(handled <= 5_000, "the waypoint ran too many of the abuser's requests: " + round);
            if (abuser.GoAway.IsCompletedSuccessfully)
            {
                Assert.True(goAway.ErrorCode is RawHttp2Client.EnhanceYourCalm or RawHttp2Client.InternalError, "unexpected GOAWAY: " + round);
            }
            defended |= abuser.GoAway.IsCompletedSuccessfully && goAway.ErrorCode == RawHttp2Client.EnhanceYourCalm;
        }
        var servedDuringAttack = neighbour.Succeeded - neighbourBefore;
        var summary = string.Join("\n", rounds) + $"\nthe neighbour got {servedDuringAttack} answers in {attack.Elapsed.TotalSeconds:F1} s";

        // Which defence fired: the queue overflow is logged as a warning; ENHANCE_YOUR_CALM only at debug level, so
        // it is known from the GOAWAY.
        defended |= _env.Logs.Matching("exceeded the output operations maximum queue size", LogLevel.Warning).Count > 0;
        Assert.True(defended, "neither of Kestrel's rapid-reset defences was seen:\n" + summary + "\n" + _env.Warnings());

        // The neighbour: every request succeeded, during the attack too, and still after it on a new tunnel.
        Assert.True(neighbour.Failures.Count == 0, "the neighbour failed: " + string.Join("; ", neighbour.Failures) + "\n" + summary);
        Assert.True(servedDuringAttack > 0, "the neighbour was not served during the attack:\n" + summary);
        using (var fresh = _env.HttpThroughWaypoint(Vip(WaypointEnvironment.HttpPort)))
        {
            using var response = await fresh.GetAsync($"http://{Hostname}/after", Ct);
            Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        }

        // Bounded memory: what the attack left behind on the managed heap, once collected, is small.
        await neighbour.DisposeAsync();
        var heapGrowth = GC.GetTotalMemory(forceFullCollection: true) - heapBefore;
        Assert.True(heapGrowth < 32 * 1024 * 1024, $"the managed heap grew by {heapGrowth / 1024} KiB:\n{summary}");
    }

    /// <summary>
    /// Malformed and smuggling-shaped HTTP/1.1, each on its own tunnel (the E2E hostile test covers CL+TE, a header
    /// without a colon, garbage and a 128 KiB header through the whole mesh; these are the other shapes): each gets
    /// the error Kestrel gives it and its connection closed, the request hidden behind a body never reaches a backend,
    /// and a neighbour's request right after is served.
    /// </summary>
    [Fact(Timeout = WaypointEnvironment.TestTimeoutMs)]
    public async Task MalformedAndSmugglingHttp11_GetAnErrorAndAClosedConnection_NothingHiddenIsForwarded()
    {
        var host = Hostname;
        var smuggled = $"GET /smuggled HTTP/1.1\r\nHost: {host}\r\n\r\n";
        (string Name, string Request, string Status)[] cases =
        [
            // CL.CL: two different lengths; which one a hop believes decides where the next request starts.
            ("conflicting Content-Length", $"POST / HTTP/1.1\r\nHost: {host}\r\nContent-Length: 4\r\nContent-Length: 40\r\n\r\nbody{smuggled}", "400"),
            // TE obfuscated so one hop reads it as chunked and another does not.
            ("Transfer-Encoding not chunked last", $"POST / HTTP/1.1\r\nHost: {host}\r\nTransfer-Encoding: chunked, identity\r\n\r\n0\r\n\r\n{smuggled}", "400"),
            ("Transfer-Encoding xchunked with Content-Length", $"POST / HTTP/1.1\r\nHost: {host}\r\nContent-Length: 5\r\nTransfer-Encoding: xchunked\r\n\r\n0\r\n\r\n{smuggled}", "400"),
            ("whitespace before the colon", $"POST / HTTP/1.1\r\nHost: {host}\r\nTransfer-Encoding : chunked\r\nContent-Length: 5\r\n\r\n0\r\n\r\n{smuggled}", "400"),
            ("obsolete line folding", $"GET / HTTP/1.1\r\nHost: {host}\r\nX-Folded: a\r\n b\r\n\r\n", "400"),
            ("NUL in a header value", $"GET / HTTP/1.1\r\nHost: {host}\r\nX-Nul: a\0b\r\n\r\n", "400"),
            ("a bad chunk size", $"POST / HTTP/1.1\r\nHost: {host}\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nbody\r\n0\r\n\r\n", "400"),
            ("a 16 KiB request line", $"GET /{new string('a', 16 * 1024)} HTTP/1.1\r\nHost: {host}\r\n\r\n", "414"),
            ("200 header fields", $"GET / HTTP/1.1\r\nHost: {host}\r\n{string.Concat(Enumerable.Range(0, 200).Select(i => $"X-H{i}: v\r\n"))}\r\n", "431"),
            ("64 KiB of headers", $"GET / HTTP/1.1\r\nHost: {host}\r\nX-Big: {new string('a', 64 * 1024)}\r\n\r\n", "431"),
        ];
        var problems = new List<string>();
        foreach (var (name, request, status) in cases)
        {
            var (response, closed) = await RawHttp11Async(request);
            var statusLine = response.Split("\r\n")[0];
            if (!response.StartsWith("HTTP/1.1 " + status, StringComparison.Ordinal)) problems.Add($"{name}: expected {status}, got '{statusLine}'");
            else if (!closed) problems.Add($"{name}: {statusLine}, but the connection stayed open");
            else if (response.Split("HTTP/1.1 ").Length - 1 != 1) problems.Add($"{name}: more than one response:\n{response}");
        }
        Assert.True(problems.Count == 0, string.Join("\n", problems));
        Assert.Empty(_env.Logs.Matching("path=/smuggled"));

        using var http = _env.HttpThroughWaypoint(Vip(WaypointEnvironment.HttpPort));
        using var after = await http.GetAsync($"http://{host}/after", Ct);
        Assert.Equal(HttpStatusCode.OK, after.StatusCode);
    }

    /// <summary>Raw bytes over a fresh tunnel to echo:80; what comes back until the waypoint closes it (or 5 s).</summary>
    private async Task<(string Response, bool Closed)> RawHttp11Async(string request)
    {
        await using var tunnel = await _env.TunnelAsync(Vip(WaypointEnvironment.HttpPort), Ct);
        try
        {
            await tunnel.WriteAsync(System.Text.Encoding.Latin1.GetBytes(request), Ct);
            await tunnel.FlushAsync(Ct);
        }
        catch (IOException)
        {
            // The waypoint may answer and close before reading all of an oversized request.
        }
        var received = new MemoryStream();
        var buffer = new byte[16 * 1024];
        using var timeout = CancellationTokenSource.CreateLinkedTokenSource(Ct);
        timeout.CancelAfter(TimeSpan.FromSeconds(5));
        try
        {
            while (true)
            {
                var n = await tunnel.ReadAsync(buffer, timeout.Token);
                if (n == 0) return (System.Text.Encoding.Latin1.GetString(received.ToArray()), true);
                received.Write(buffer, 0, n);
            }
        }
        catch (OperationCanceledException) when (!Ct.IsCancellationRequested)
        {
            return (System.Text.Encoding.Latin1.GetString(received.ToArray()), false);
        }
        catch (IOException)
        {
            return (System.Text.Encoding.Latin1.GetString(received.ToArray()), true);
        }
    }

    /// <summary>Requests in a loop on one kept-alive connection, each outcome counted: the neighbour of an attack.</summary>
    private sealed class NeighbourLoop : IAsyncDisposable
    {
        private readonly HttpClient _http;
        private readonly CancellationTokenSource _stop = new();
        private readonly TaskCompletionSource _first = new(TaskCreationOptions.RunContinuationsAsynchronously);
        private readonly List<string> _failures = [];
        private readonly Task _loop;
        private int _succeeded;
        private bool _disposed;

        public NeighbourLoop(HttpClient http, string url)
        {
            _http = http;
            _loop = Task.Run(async () =>
            {
                while (!_stop.IsCancellationRequested)
                {
                    try
                    {
                        using var response = await _http.GetAsync(url, _stop.Token);
                        if (response.StatusCode == HttpStatusCode.OK)
                        {
                            Interlocked.Increment(ref _succeeded);
                            _first.TrySetResult();
                        }
                        else
                        {
                            lock (_failures) _failures.Add("HTTP " + (int)response.StatusCode);
                        }
                    }
                    catch (OperationCanceledException) when (_stop.IsCancellationRequested)
                    {
                        return;
                    }
                    catch (Exception e)
                    {
                        lock (_failures) _failures.Add(e.GetType().Name + ": " + e.Message);
                    }
                    try { await Task.Delay(10, _stop.Token); } catch (OperationCanceledException) { return; }
                }
            });
        }

        public int Succeeded => Volatile.Read(ref _succeeded);

        public List<string> Failures
        {
            get { lock (_failures) return [.. _failures]; }
        }

        public Task WaitForFirstAsync(CancellationToken ct) => _first.Task.WaitAsync(TimeSpan.FromSeconds(20), ct);

        public async ValueTask DisposeAsync()
        {
            if (_disposed) return;
            _disposed = true;
            await _stop.CancelAsync();
            await _loop;
            _stop.Dispose();
            _http.Dispose();
        }
    }
}

using System.Diagnostics;
using System.Globalization;
using System.Net;
using System.Net.Sockets;
using Ambient.Core;
using Ambient.Ctl.Cli;
using Ambient.Ctl.Local;

namespace Ambient.Ctl.Demo;

/// <summary>One HTTP response as the demo's client read it; Status 0 with <see cref="Problem"/> when there was none.</summary>
internal readonly record struct DemoResponse(int Status, string Body, double LatencyMs, string? Problem);

/// <summary>
/// Where the demo's requests leave from: the client pod. In loopback mode through its node ztunnel's SOCKS5 port (the
/// pod's way into the mesh there); in netns mode as a user would try it, `curl` inside the pod's network namespace with
/// no proxy settings, so only the pod's capture can bring it into the mesh.
/// </summary>
internal abstract class DemoTraffic : IDisposable
{
    /// <summary>How a request enters the mesh, the first hop of the table's path column.</summary>
    public abstract string Entry { get; }

    /// <summary>One GET of http://HOST:PORT/PATH on a fresh connection, closed afterwards (the ztunnels account for it at once).</summary>
    public abstract Task<DemoResponse> GetAsync(string host, int port, string path, (string Name, string Value)? header, CancellationToken ct);

    /// <summary>GETs of http://HOST/PATH0, /PATH1, ... on one kept-alive connection; stops at the first failure.</summary>
    public abstract Task<List<DemoResponse>> SeriesAsync(string host, string pathPrefix, int count, (string Name, string Value)? header, CancellationToken ct);

    /// <summary>Closes the kept-alive connection of <see cref="SeriesAsync"/>, if one is open.</summary>
    public virtual void CloseSeries()
    {
    }

    public virtual void Dispose() => CloseSeries();

    public static DemoResponse Failed(double latencyMs, string problem) => new(0, "", latencyMs, problem);
}

/// <summary>Loopback mode: the client's ztunnel SOCKS5 port, as the pod's ALL_PROXY would send it.</summary>
internal sealed class SocksDemoTraffic(IPEndPoint socks) : DemoTraffic
{
    private HttpClient? _keptAlive;

    public override string Entry => "SOCKS5";

    public override Task<DemoResponse> GetAsync(string host, int port, string path, (string Name, string Value)? header, CancellationToken ct) =>
        DirectGetAsync(host, port, path, socks, null, header, ct);

    public override async Task<List<DemoResponse>> SeriesAsync(string host, string pathPrefix, int count, (string Name, string Value)? header, CancellationToken ct)
    {
        // One client for the series of every step: once routing is live, each request on its connection is routed.
        _keptAlive ??= new HttpClient(new SocketsHttpHandler
        {
            UseProxy = true,
            Proxy = new WebProxy($"socks5://{socks}"),
            MaxConnectionsPerServer = 1,
        }) { Timeout = TimeSpan.FromSeconds(10) };
        var responses = new List<DemoResponse>(count);
        for (var i = 0; i < count; i++)
        {
            using var request = new HttpRequestMessage(HttpMethod.Get, $"http://{host}/{pathPrefix}{i}");
            if (header is { } h) request.Headers.Add(h.Name, h.Value);
            var response = await SendAsync(_keptAlive, request, ct).ConfigureAwait(false);
            responses.Add(response);
            if (response.Problem is not null) break;
        }
        return responses;
    }

    public override void CloseSeries()
    {
        _keptAlive?.Dispose();
        _keptAlive = null;
    }

    /// <summary>One GET through <paramref name="socks"/>, or straight from <paramref name="bind"/> when there is no proxy.</summary>
    public static async Task<DemoResponse> DirectGetAsync(string host, int port, string path, IPEndPoint? socks, IPAddress? bind,
        (string Name, string Value)? header, CancellationToken ct)
    {
        using var handler = new SocketsHttpHandler
        {
            UseProxy = socks is not null,
            Proxy = socks is null ? null : new WebProxy($"socks5://{socks}"),
            PooledConnectionLifetime = TimeSpan.Zero,
        };
        if (bind is not null)
        {
            handler.ConnectCallback = async (context, token) =>
            {
                var socket = new Socket(SocketType.Stream, ProtocolType.Tcp) { NoDelay = true };
                try
                {
                    socket.Bind(new IPEndPoint(bind, 0));
                    await socket.ConnectAsync(context.DnsEndPoint, token).ConfigureAwait(false);
                    return new NetworkStream(socket, ownsSocket: true);
                }
                catch
                {
                    socket.Dispose();
                    throw;
                }
            };
        }
        using var http = new HttpClient(handler) { Timeout = TimeSpan.FromSeconds(10) };
        using var request = new HttpRequestMessage(HttpMethod.Get, $"http://{host}:{port}/{path}");
        request.Headers.ConnectionClose = true;
        if (header is { } h) request.Headers.Add(h.Name, h.Value);
        return await SendAsync(http, request, ct).ConfigureAwait(false);
    }

    private static async Task<DemoResponse> SendAsync(HttpClient http, HttpRequestMessage request, CancellationToken ct)
    {
        var sw = Stopwatch.StartNew();
        try
        {
            using var response = await http.SendAsync(request, ct).ConfigureAwait(false);
            var body = await response.Content.ReadAsStringAsync(ct).ConfigureAwait(false);
            return new DemoResponse((int)response.StatusCode, body, sw.Elapsed.TotalMilliseconds, null);
        }
        catch (Exception e) when (e is HttpRequestException or TaskCanceledException)
        {
            return Failed(sw.Elapsed.TotalMilliseconds, e.Message);
        }
    }
}

/// <summary>
/// Netns mode: `ip netns exec POD-NETNS curl ...` with every proxy variable removed, as a user runs
/// `ambientctl exec client -n demo -- curl ...`: the name resolves through the pod's resolv.conf, and the connection
/// is the pod's own, which its in-pod rules redirect to the ztunnel (when the pod is in the mesh).
/// </summary>
internal sealed class CurlDemoTraffic(string ip, string curl, string netns) : DemoTraffic
{
    // Written by curl after each response: a line no echo body contains, with what curl measured.
    private const string Marker = "\n@@ambient-demo ";
    private static readonly TimeSpan CurlTimeout = TimeSpan.FromSeconds(30);

    public override string Entry => "curl (captured)";

    public override async Task<DemoResponse> GetAsync(string host, int port, string path, (string Name, string Value)? header, CancellationToken ct)
    {
        var url = port == 80 ? $"http://{host}/{path}" : $"http://{host}:{port}/{path}";
        var responses = await CurlAsync([url], header, connectionClose: true, ct).ConfigureAwait(false);
        return responses[0];
    }

    public override async Task<List<DemoResponse>> SeriesAsync(string host, string pathPrefix, int count, (string Name, string Value)? header, CancellationToken ct)
    {
        // curl keeps the connection between the URLs of one run.
        var urls = new List<string>(count);
        for (var i = 0; i < count; i++) urls.Add($"http://{host}/{pathPrefix}{i.ToString(CultureInfo.InvariantCulture)}");
        return await CurlAsync(urls, header, connectionClose: false, ct).ConfigureAwait(false);
    }

    /// <summary>One curl run over <paramref name="urls"/>: a response per URL it reached, then one with curl's error if it stopped early.</summary>
    private async Task<List<DemoResponse>> CurlAsync(List<string> urls, (string Name, string Value)? header, bool connectionClose, CancellationToken ct)
    {
        var psi = new ProcessStartInfo(ip)
        {
            UseShellExecute = false,
            RedirectStandardInput = true,
            RedirectStandardOutput = true,
            RedirectStandardError = true,
        };
        foreach (var a in (string[])["netns", "exec", netns, curl, "-sS", "--max-time", "10", "-w", Marker + "%{http_code} %{time_total}\n"]) psi.ArgumentList.Add(a);
        if (connectionClose)
        {
            psi.ArgumentList.Add("-H");
            psi.ArgumentList.Add("Connection: close");
        }
        if (header is { } h)
        {
            psi.ArgumentList.Add("-H");
            psi.ArgumentList.Add($"{h.Name}: {h.Value}");
        }
        foreach (var url in urls) psi.ArgumentList.Add(url);
        foreach (var name in ExecCommand.ProxyVariables) psi.Environment.Remove(name);
        var sw = Stopwatch.StartNew();
        using var process = Process.Start(psi) ?? throw new LocalMeshException($"cannot start {ip}");
        process.StandardInput.Close();
        var stdout = process.StandardOutput.ReadToEndAsync(ct);
        var stderr = process.StandardError.ReadToEndAsync(ct);
        using (var timeout = CancellationTokenSource.CreateLinkedTokenSource(ct))
        {
            timeout.CancelAfter(CurlTimeout);
            try
            {
                await process.WaitForExitAsync(timeout.Token).ConfigureAwait(false);
            }
            catch (OperationCanceledException)
            {
                process.Kill(entireProcessTree: true);
                ct.ThrowIfCancellationRequested();
                return [Failed(sw.Elapsed.TotalMilliseconds, $"curl did not finish within {CurlTimeout.TotalSeconds:0} s")];
            }
        }
        var responses = Parse(await stdout.ConfigureAwait(false));
        if (process.ExitCode != 0 || responses.Count < urls.Count)
        {
            // A URL curl could not fetch has status 000: it gets curl's own words for why.
            var error = (await stderr.ConfigureAwait(false)).Trim();
            var problem = $"curl exit {process.ExitCode.ToString(CultureInfo.InvariantCulture)}: {(error.Length > 0 ? error : "no output")}";
            for (var i = 0; i < responses.Count; i++)
            {
                if (responses[i].Status == 0) responses[i] = responses[i] with { Problem = problem };
            }
            if (responses.Count == 0 || responses[^1].Status != 0) responses.Add(Failed(sw.Elapsed.TotalMilliseconds, problem));
        }
        return responses;
    }

    /// <summary>Splits curl's output at the markers -w wrote: each body with its status and time (curl's own, in seconds).</summary>
    internal static List<DemoResponse> Parse(string output)
    {
        var responses = new List<DemoResponse>();
        var start = 0;
        while (true)
        {
            var marker = output.IndexOf(Marker, start, StringComparison.Ordinal);
            if (marker < 0) break;
            var lineEnd = output.IndexOf('\n', marker + Marker.Length);
            if (lineEnd < 0) lineEnd = output.Length;
            var fields = output[(marker + Marker.Length)..lineEnd].Split(' ');
            var status = fields.Length > 0 && int.TryParse(fields[0], NumberStyles.None, CultureInfo.InvariantCulture, out var s) ? s : 0;
            var seconds = fields.Length > 1 && double.TryParse(fields[1], NumberStyles.Float, CultureInfo.InvariantCulture, out var t) ? t : 0;
            responses.Add(new DemoResponse(status, output[start..marker], seconds * 1000, status == 0 ? "no response" : null));
            start = Math.Min(lineEnd + 1, output.Length);
        }
        return responses;
    }
}

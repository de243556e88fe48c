using System.Diagnostics;
using System.Net;
using System.Net.Sockets;
using System.Text.Json;
using Ambient.Core;
using Ambient.Ctl.Labels;
using Ambient.Ctl.Local;

namespace Ambient.Ctl.Demo;

/// <summary>The outcome of one demo step, as the table shows it.</summary>
internal sealed record DemoCheck(
    string Step,
    string Route,
    string Via,
    string Security,
    string SourceIdentity,
    string DestinationIdentity,
    string Answered,
    long Bytes,
    double LatencyMs,
    bool Passed,
    string? Problem);

/// <summary>
/// Sends the demo's traffic from the client pod and reads what each end's ztunnel saw from its /metrics
/// (source_principal, destination_principal, connection_security_policy), so the table shows the mesh's own view:
/// meshed service traffic in mTLS with SPIFFE identities at both ends, traffic to an unmeshed namespace in plain text,
/// and the switch between the two when the namespace label changes, with no restart.
/// </summary>
internal sealed class DemoRunner(LocalMesh mesh, Action<string> report)
{
    private const string Mtls = "mutual_tls";
    private readonly MeshPlan _plan = mesh.Plan;

    public async Task<List<DemoCheck>> RunAsync(CancellationToken ct)
    {
        var client = Pod("demo", "client");
        var echoV1 = Pod("demo", "echo-v1");
        var checks = new List<DemoCheck>
        {
            await MeshedAsync("1. meshed service", client, "echo.demo.svc.cluster.local", 80, ct).ConfigureAwait(false),
            await MeshedAsync("2. meshed pod", client, echoV1.Address.ToString(), echoV1.Port ?? 8080, ct).ConfigureAwait(false),
            await ToUnmeshedAsync("3. unmeshed namespace", client, "legacy-echo.legacy.svc.cluster.local", 80, ct).ConfigureAwait(false),
        };

        report("removing istio.io/dataplane-mode from namespace demo (live, no restart) ...");
        Relabel(null);
        var left = await WaitAsync(async () => !await LocalMesh.CanConnectAsync(Socks(client)).ConfigureAwait(false), ct).ConfigureAwait(false);
        checks.Add(left
            ? await DirectAsync("4. demo left the mesh", client, echoV1, ct).ConfigureAwait(false)
            : Failed("4. demo left the mesh", client, echoV1.DisplayName, "the client's ztunnel SOCKS5 listener is still up 20 s after the label was removed"));

        report("labelling namespace demo istio.io/dataplane-mode=ambient again ...");
        Relabel("ambient");
        var back = await WaitAsync(() => LocalMesh.CanConnectAsync(Socks(client)), ct).ConfigureAwait(false);
        checks.Add(back
            ? await MeshedAsync("5. demo back in the mesh", client, "echo.demo.svc.cluster.local", 80, ct, retries: 10).ConfigureAwait(false)
            : Failed("5. demo back in the mesh", client, "echo", "the client's ztunnel SOCKS5 listener did not come back within 20 s"));
        return checks;
    }

    private ContainerPlan Pod(string ns, string name) =>
        _plan.Containers.FirstOrDefault(c => c.Namespace == ns && c.Pod == name)
        ?? throw new LocalMeshException($"the demo folder has no pod {ns}/{name}");

    private static IPEndPoint Socks(ContainerPlan pod) => new(pod.Address, MeshPorts.Socks5);

    private IPAddress NodeOf(ContainerPlan pod) => _plan.Nodes[pod.Node];

    private void Relabel(string? value)
    {
        var change = new LabelChange("istio.io/dataplane-mode", value);
        NamespaceLabelEditor.Apply(_plan.ConfigFolder, "demo", change, out _, out var error);
        if (error is not null) throw new LocalMeshException(error);
    }

    private static async Task<bool> WaitAsync(Func<Task<bool>> condition, CancellationToken ct)
    {
        var sw = Stopwatch.StartNew();
        while (sw.Elapsed < TimeSpan.FromSeconds(20))
        {
            if (await condition().ConfigureAwait(false)) return true;
            await Task.Delay(200, ct).ConfigureAwait(false);
        }
        return false;
    }

    /// <summary>Client -> meshed destination through its ztunnel: both ends must report mTLS with the SPIFFE identities.</summary>
    private async Task<DemoCheck> MeshedAsync(string step, ContainerPlan client, string host, int port, CancellationToken ct, int retries = 0)
    {
        var route = $"{client.Namespace}/{client.Pod} -> {host}:{port}";
        var sourceNode = NodeOf(client);
        var destinationNodes = new List<IPAddress>(_plan.Nodes.Values);
        for (var attempt = 0; ; attempt++)
        {
            var before = await ScrapeAllAsync(ct).ConfigureAwait(false);
            var (answered, latency, problem) = await GetAsync(host, port, socks: Socks(client), bind: null, ct).ConfigureAwait(false);
            if (problem is not null && attempt < retries)
            {
                await Task.Delay(500, ct).ConfigureAwait(false);
                continue;
            }
            var (src, dst) = await ClosedConnectionsAsync(before, sourceNode, destinationNodes, ct).ConfigureAwait(false);
            var security = src?.Label("connection_security_policy") ?? "-";
            var dstSecurity = dst?.Label("connection_security_policy") ?? "-";
            var bytes = (long)(dst?.Value ?? src?.Value ?? 0);
            var srcId = dst?.Label("source_principal") ?? src?.Label("source_principal") ?? "-";
            var dstId = src?.Label("destination_principal") ?? dst?.Label("destination_principal") ?? "-";
            problem ??= src is null ? "the source ztunnel reported no connection"
                : dst is null ? "the destination ztunnel reported no connection"
                : security != Mtls || dstSecurity != Mtls ? $"expected mutual_tls at both ends, saw {security} / {dstSecurity}"
                : !srcId.EndsWith("/ns/demo/sa/client", StringComparison.Ordinal) ? $"unexpected source identity {srcId}"
                : null;
            return new DemoCheck(step, route, "SOCKS5 -> ztunnel -> HBONE", problem is null ? "mTLS" : security,
                srcId, dstId, answered, bytes, latency, problem is null, problem);
        }
    }

    /// <summary>Client (meshed) -> a service outside the mesh: its ztunnel sends plain TCP and says so in its metrics.</summary>
    private async Task<DemoCheck> ToUnmeshedAsync(string step, ContainerPlan client, string host, int port, CancellationToken ct)
    {
        var before = await ScrapeAllAsync(ct).ConfigureAwait(false);
        var (answered, latency, problem) = await GetAsync(host, port, Socks(client), null, ct).ConfigureAwait(false);
        var (src, _) = await ClosedConnectionsAsync(before, NodeOf(client), [], ct).ConfigureAwait(false);
        var security = src?.Label("connection_security_policy") ?? "-";
        problem ??= src is null ? "the source ztunnel reported no connection"
            : security == Mtls ? "traffic to an unmeshed namespace must not claim mTLS" : null;
        return new DemoCheck(step, $"{client.Namespace}/{client.Pod} -> {host}:{port}", "SOCKS5 -> ztunnel -> TCP", "plaintext",
            src?.Label("source_principal") ?? "-", "-", answered, (long)(src?.Value ?? 0), latency, problem is null, problem);
    }

    /// <summary>Client no longer captured: straight from its address to the pod, and no ztunnel sees it.</summary>
    private async Task<DemoCheck> DirectAsync(string step, ContainerPlan client, ContainerPlan target, CancellationToken ct)
    {
        var port = target.Port ?? 8080;
        var before = await ScrapeAllAsync(ct).ConfigureAwait(false);
        var (answered, latency, problem) = await GetAsync(target.Address.ToString(), port, null, client.Address, ct).ConfigureAwait(false);
        var after = await ScrapeAllAsync(ct).ConfigureAwait(false);
        var seen = 0;
        foreach (var (node, samples) in after)
        {
            foreach (var s in PrometheusText.Delta(before[node], samples))
            {
                if (s.Name == "istio_tcp_connections_opened_total" && s.Label("connection_security_policy") == Mtls) seen++;
            }
        }
        problem ??= seen > 0 ? "a ztunnel still reported mTLS connections after the namespace left the mesh" : null;
        return new DemoCheck(step, $"{client.Namespace}/{client.Pod} -> {target.Address}:{port}", "direct (not captured)", "plaintext",
            "-", "-", answered, 0, latency, problem is null, problem);
    }

    private static DemoCheck Failed(string step, ContainerPlan client, string target, string problem) =>
        new(step, $"{client.Namespace}/{client.Pod} -> {target}", "-", "-", "-", "-", "-", 0, 0, false, problem);

    /// <summary>One GET on a fresh connection (closed afterwards, so the ztunnels account for it at once).</summary>
    private static async Task<(string Answered, double LatencyMs, string? Problem)> GetAsync(string host, int port, IPEndPoint? socks, IPAddress? bind, CancellationToken ct)
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
        using var request = new HttpRequestMessage(HttpMethod.Get, $"http://{host}:{port}/demo");
        request.Headers.ConnectionClose = true;
        var sw = Stopwatch.StartNew();
        try
        {
            using var response = await http.SendAsync(request, ct).ConfigureAwait(false);
            var body = await response.Content.ReadAsStringAsync(ct).ConfigureAwait(false);
            var latency = sw.Elapsed.TotalMilliseconds;
            if (!response.IsSuccessStatusCode) return ("-", latency, $"HTTP {(int)response.StatusCode}");
            using var json = JsonDocument.Parse(body);
            var pod = json.RootElement.TryGetProperty("pod", out var p) ? p.GetString() : "?";
            var ns = json.RootElement.TryGetProperty("namespace", out var n) ? n.GetString() : "?";
            return ($"{ns}/{pod}", latency, null);
        }
        catch (Exception e) when (e is HttpRequestException or TaskCanceledException or JsonException)
        {
            return ("-", sw.Elapsed.TotalMilliseconds, e.Message);
        }
    }

    private async Task<Dictionary<IPAddress, List<MetricSample>>> ScrapeAllAsync(CancellationToken ct)
    {
        var result = new Dictionary<IPAddress, List<MetricSample>>();
        foreach (var address in _plan.Nodes.Values)
        {
            result[address] = await ScrapeAsync(address, ct).ConfigureAwait(false);
        }
        return result;
    }

    private static readonly HttpClient Metrics = new(new SocketsHttpHandler { UseProxy = false }) { Timeout = TimeSpan.FromSeconds(3) };

    internal static async Task<List<MetricSample>> ScrapeAsync(IPAddress node, CancellationToken ct)
    {
        try
        {
            var text = await Metrics.GetStringAsync($"http://{node}:{MeshPorts.Metrics}/metrics", ct).ConfigureAwait(false);
            return PrometheusText.Parse(text);
        }
        catch (Exception e) when (e is HttpRequestException or TaskCanceledException)
        {
            return [];
        }
    }

    /// <summary>
    /// The connection the check just made, as each end saw it: the growth of istio_tcp_received_bytes_total with
    /// reporter=source on the source node and reporter=destination elsewhere (bytes are counted at close, so poll briefly).
    /// </summary>
    private async Task<(MetricSample? Source, MetricSample? Destination)> ClosedConnectionsAsync(
        Dictionary<IPAddress, List<MetricSample>> before, IPAddress sourceNode, List<IPAddress> destinationNodes, CancellationToken ct)
    {
        MetricSample? src = null, dst = null;
        var sw = Stopwatch.StartNew();
        while (sw.Elapsed < TimeSpan.FromSeconds(3))
        {
            var after = await ScrapeAllAsync(ct).ConfigureAwait(false);
            src = Find(PrometheusText.Delta(before[sourceNode], after[sourceNode]), "source");
            foreach (var node in destinationNodes)
            {
                dst ??= Find(PrometheusText.Delta(before[node], after[node]), "destination");
            }
            if (src is not null && (dst is not null || destinationNodes.Count == 0)) break;
            await Task.Delay(100, ct).ConfigureAwait(false);
        }
        return (src, dst);
    }

    private static MetricSample? Find(List<MetricSample> delta, string reporter)
    {
        foreach (var s in delta)
        {
            if (s.Name == "istio_tcp_connections_closed_total" && s.Label("reporter") == reporter)
            {
                // The bytes of the same series, if any moved.
                foreach (var b in delta)
                {
                    if (b.Name == "istio_tcp_received_bytes_total" && SameLabels(b, s)) return b;
                }
                return s with { Value = 0 };
            }
        }
        return null;
    }

    private static bool SameLabels(MetricSample a, MetricSample b)
    {
        if (a.Labels.Count != b.Labels.Count) return false;
        foreach (var (k, v) in a.Labels)
        {
            if (!b.Labels.TryGetValue(k, out var w) || w != v) return false;
        }
        return true;
    }
}

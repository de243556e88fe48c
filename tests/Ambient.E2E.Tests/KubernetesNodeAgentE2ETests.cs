using System.Diagnostics;
using System.Globalization;
using System.Text.Json.Nodes;
using Ambient.TestCommon.Kube;

namespace Ambient.E2E.Tests;

/// <summary>
/// `ambientctl node-agent` on a simulated Kubernetes node, as processes (root): the fake API server holds a labelled
/// namespace with two pods of the node; istiod-lite reads it; the node's ztunnel runs in in-pod mode on the agent's ZDS
/// socket; the agent installs ambient-cni into a CNI folder of the test's. One pod's sandbox is "created" by running
/// the installed plugin as the runtime would (CNI ADD with a network namespace the test made): the ADD returns only
/// once the pod is captured and the ztunnel listens inside it. The other pod was "running before the agent": the
/// agent finds its namespace through a /proc of the test's (a process whose cgroup names the pod's uid). Unlabelling
/// the namespace releases both. Every namespace's name carries "kn" and this process's id, and is removed in finally.
/// </summary>
public sealed class KubernetesNodeAgentE2ETests
{
    private const string Namespace = "kn-shop";
    private const string PrevResult = """{"cniVersion":"1.0.0","interfaces":[{"name":"eth0"}],"ips":[{"address":"10.244.0.9/24","interface":0}]}""";
    private static readonly TimeSpan Patience = TimeSpan.FromSeconds(20);
    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    private static bool Captured(PodNetns netns) => netns.Exec("iptables-save").Contains("-j ISTIO_OUTPUT", StringComparison.Ordinal);

    private static bool ZtunnelListensIn(PodNetns netns) => netns.Exec("ss", "-Hltn").Contains(":15001 ", StringComparison.Ordinal);

    [Fact]
    public async Task A_pod_created_through_the_plugin_starts_captured_a_running_pod_is_found_in_proc_and_unlabelling_releases_both()
    {
        var unavailable = PodNetns.Unavailable();
        Assert.SkipWhen(unavailable is not null, unavailable ?? "");
        Assert.SkipWhen(!File.Exists("/usr/bin/ss") && !File.Exists("/bin/ss"), "needs ss (iproute2)");
        using var dir = new TempDir();
        await using var processes = new ChildProcesses();
        List<(string, Process)> named = [];
        string Logs() => processes.Logs([.. named]);
        await using var api = await FakeKubeApiServer.StartAsync(cancellationToken: Ct);
        PodNetns? created = null;
        PodNetns? running = null;
        try
        {
            created = PodNetns.CreateIsolated("kn", 1);
            running = PodNetns.CreateIsolated("kn", 2);
            var node = "kn-node-" + Environment.ProcessId.ToString(CultureInfo.InvariantCulture);
            var addresses = MeshAddresses.PickFree();
            api.Put(NamespaceObject(Namespace, ambient: true));
            api.Put(Json("""{"apiVersion":"v1","kind":"Namespace","metadata":{"name":"istio-system"}}"""));
            foreach (var (ns, sa) in new[] { (Namespace, "web"), ("istio-system", "ztunnel") })
            {
                api.Put(Json($$$"""{"apiVersion":"v1","kind":"ServiceAccount","metadata":{"name":"{{{sa}}}","namespace":"{{{ns}}}"}}"""));
            }
            var createdUid = Guid.NewGuid().ToString();
            var runningUid = Guid.NewGuid().ToString();
            api.Put(Pod(Namespace, "web-1", createdUid, "web", node, addresses.Node(21)));
            api.Put(Pod(Namespace, "web-0", runningUid, "web", node, addresses.Node(22)));
            var ztunnelUid = Guid.NewGuid().ToString();
            api.Put(Pod("istio-system", "ztunnel-kn", ztunnelUid, "ztunnel", node, addresses.Node(23)));
            var tokenFile = Path.Combine(dir.Path, "istio-token");
            File.WriteAllText(tokenFile, ProjectedTokens.Add(api, "istio-system", "ztunnel", "ztunnel-kn", ztunnelUid, node));

            // The host as the agent sees it: /proc with web-0's process, the CNI folders with the node's network config.
            var proc = Path.Combine(dir.Path, "proc");
            dir.Write("proc/4242/cgroup", $"0::/kubepods/besteffort/pod{runningUid}/cri-containerd-0123.scope\n");
            Directory.CreateDirectory(Path.Combine(proc, "4242", "ns"));
            File.CreateSymbolicLink(Path.Combine(proc, "4242", "ns", "net"), running.Path);
            var conflist = dir.Write("cni/net.d/10-kindnet.conflist",
                """{"cniVersion":"1.0.0","name":"kindnet","plugins":[{"type":"ptp","ipMasq":false},{"type":"portmap","capabilities":{"portMappings":true}}]}""");
            var bin = Path.Combine(dir.Path, "cni", "bin");
            var zds = Path.Combine(dir.Path, "run", "zds.sock");

            var kubeconfig = api.WriteKubeconfig(Path.Combine(dir.Path, "kubeconfig"));
            var state = Path.Combine(dir.Path, "state");
            var istiod = processes.Start("istiod-lite", ["--config-source", "kubernetes", "--kubeconfig", kubeconfig, "--state", state,
                "--listen", "127.0.0.1:0", "--monitoring", "off"], ("CA_TRUSTED_NODE_ACCOUNTS", "istio-system/ztunnel"));
            named.Add(("istiod-lite", istiod));
            var port = await processes.IstiodPortAsync(istiod, Ct);
            named.Add(("node-agent", processes.Start("ambientctl", ["node-agent", "--node", node, "--kubeconfig", kubeconfig, "--zds-socket", zds,
                "--cni-socket", Path.Combine(dir.Path, "run", "plugin.sock"), "--cni-bin-dir", bin, "--cni-conf-dir", Path.GetDirectoryName(conflist)!,
                "--host-proc", proc])));
            named.Add(("ztunnel", processes.Start("ztunnel", ["--node", node, "--address", addresses.Node(1), "--root", Path.Combine(state, "root-cert.pem"),
                "--ca-token-file", tokenFile, "--istiod", $"https://127.0.0.1:{port}", "--zds-socket", zds])));

            // The agent put itself last in the node's chain.
            JsonObject? entry = null;
            await MeshRun.EventuallyAsync(() => Task.FromResult(TryEntry(conflist, out entry)), Patience,
                () => Task.FromResult("ambient-cni never joined " + conflist + ":\n" + File.ReadAllText(conflist) + Logs()));

            // The runtime creates web-1's sandbox: the ADD returns once the pod is captured and the ztunnel serves it.
            var config = (JsonObject)entry!.DeepClone();
            config["cniVersion"] = "1.0.0";
            config["name"] = "kindnet";
            config["prevResult"] = JsonNode.Parse(PrevResult);
            var (exit, stdout, stderr) = await RunPluginAsync(Path.Combine(bin, "ambient-cni"), created.Path, $"K8S_POD_NAMESPACE={Namespace};K8S_POD_NAME=web-1;K8S_POD_UID={createdUid}",
                config.ToJsonString());
            Assert.True(exit == 0, $"CNI ADD failed ({exit}): {stdout} {stderr}\n{Logs()}");
            Assert.Equal(PrevResult, stdout);
            Assert.True(Captured(created), "the ADD returned before web-1's capture rules were in place");
            Assert.True(ZtunnelListensIn(created), "the ADD returned before the ztunnel listened in web-1:\n" + created.Exec("ss", "-Hltn") + Logs());

            // web-0 was running before the agent: found through /proc, captured and served as well.
            await MeshRun.EventuallyAsync(() => Task.FromResult(Captured(running) && ZtunnelListensIn(running)), Patience,
                () => Task.FromResult("web-0 (running before the agent) was not captured:\n" + running.Exec("iptables-save") + Logs()));

            // Unlabelled: both leave, rules first, then the ztunnel lets them go.
            api.Put(NamespaceObject(Namespace, ambient: false));
            await MeshRun.EventuallyAsync(() => Task.FromResult(!Captured(created) && !Captured(running) && !ZtunnelListensIn(created) && !ZtunnelListensIn(running)), Patience,
                () => Task.FromResult("unlabelling did not release the pods:\n" + created.Exec("iptables-save") + running.Exec("iptables-save") + Logs()));
        }
        finally
        {
            await processes.DisposeAsync();
            created?.Dispose();
            running?.Dispose();
        }
    }

    private static bool TryEntry(string conflist, out JsonObject? entry)
    {
        entry = null;
        try
        {
            if (JsonNode.Parse(File.ReadAllText(conflist))?["plugins"] is JsonArray plugins && plugins[^1] is JsonObject last && (string?)last["type"] == "ambient-cni")
            {
                entry = last;
            }
        }
        catch (System.Text.Json.JsonException)
        {
        }
        return entry is not null;
    }

    /// <summary>The plugin as the container runtime runs it: CNI_* in the environment, the network config on stdin.</summary>
    private static async Task<(int Exit, string Stdout, string Stderr)> RunPluginAsync(string plugin, string netns, string args, string config)
    {
        var start = new ProcessStartInfo(plugin) { RedirectStandardInput = true, RedirectStandardOutput = true, RedirectStandardError = true };
        start.Environment["CNI_COMMAND"] = "ADD";
        start.Environment["CNI_CONTAINERID"] = "kn" + Environment.ProcessId.ToString(CultureInfo.InvariantCulture);
        start.Environment["CNI_NETNS"] = netns;
        start.Environment["CNI_IFNAME"] = "eth0";
        start.Environment["CNI_PATH"] = Path.GetDirectoryName(plugin)!;
        start.Environment["CNI_ARGS"] = "IgnoreUnknown=1;" + args;
        using var process = Process.Start(start)!;
        var stdout = process.StandardOutput.ReadToEndAsync(Ct);
        var stderr = process.StandardError.ReadToEndAsync(Ct);
        await process.StandardInput.WriteAsync(config);
        process.StandardInput.Close();
        using var timeout = CancellationTokenSource.CreateLinkedTokenSource(Ct);
        timeout.CancelAfter(TimeSpan.FromSeconds(60));
        try
        {
            await process.WaitForExitAsync(timeout.Token);
        }
        finally
        {
            if (!process.HasExited) process.Kill();
        }
        return (process.ExitCode, await stdout, await stderr);
    }

    private static JsonObject Pod(string ns, string name, string uid, string serviceAccount, string node, string ip) => Json($$$"""
        {"apiVersion":"v1","kind":"Pod","metadata":{"name":"{{{name}}}","namespace":"{{{ns}}}","uid":"{{{uid}}}","labels":{"app":"{{{serviceAccount}}}"}},
         "spec":{"serviceAccountName":"{{{serviceAccount}}}","nodeName":"{{{node}}}","containers":[{"name":"app","image":"ambient/echo"}]},
         "status":{"phase":"Running","podIP":"{{{ip}}}","podIPs":[{"ip":"{{{ip}}}"}],"conditions":[{"type":"Ready","status":"True"}]}}
        """);

    private static JsonObject NamespaceObject(string name, bool ambient)
    {
        var metadata = new JsonObject { ["name"] = name };
        if (ambient) metadata["labels"] = new JsonObject { ["istio.io/dataplane-mode"] = "ambient" };
        return new JsonObject { ["apiVersion"] = "v1", ["kind"] = "Namespace", ["metadata"] = metadata };
    }

    private static JsonObject Json(string text) => JsonNode.Parse(text)!.AsObject();
}

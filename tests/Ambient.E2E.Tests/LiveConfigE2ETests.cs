using System.Diagnostics;
using System.Net;
using System.Text.Json;

namespace Ambient.E2E.Tests;

/// <summary>
/// A running `local up --detach` mesh changed while it runs, through its folder and the CLI: the namespace label
/// switches traffic between mTLS and plain text without restarting anything, pods added to or removed from the
/// folder start and stop as a kubelet would do it, and a broken folder leaves exec and status on the last good state
/// with the problems shown.
/// </summary>
public sealed class LiveConfigE2ETests
{
    private static readonly TimeSpan Ctl = TimeSpan.FromSeconds(60);
    private static readonly TimeSpan Eventually = TimeSpan.FromSeconds(30);

    private static Task<MeshRun> UpAsync(string prefix, bool fromFile = false) => MeshRun.UpAsync(prefix, ns =>
        MeshYaml.Namespace(ns) + MeshYaml.ServiceAccount(ns, "client") + MeshYaml.ServiceAccount(ns, "echo")
        + MeshYaml.Sleep(ns, "client", "client", "node-a") + MeshYaml.Echo(ns, "echo", "echo", "node-b"), fromFile);

    private static long MutualTlsOpened(string metrics) =>
        MeshRun.Sum(metrics, "istio_tcp_connections_opened_total", "connection_security_policy=\"mutual_tls\"");

    private static async Task<long> MutualTlsOpenedAsync(MeshRun mesh) =>
        MutualTlsOpened(await MeshRun.MetricsAsync(mesh.Ztunnel("node-a"))) + MutualTlsOpened(await MeshRun.MetricsAsync(mesh.Ztunnel("node-b")));

    private static async Task<bool> SocksOpenAsync(MeshRun.Component pod)
    {
        using var client = new System.Net.Sockets.TcpClient();
        try
        {
            await client.ConnectAsync(IPAddress.Parse(pod.Address!), 15080, TestContext.Current.CancellationToken);
            return true;
        }
        catch (System.Net.Sockets.SocketException)
        {
            return false;
        }
    }

    /// <summary>The enrolment the supervisor recorded for a pod component (null when it records none).</summary>
    private static bool? RecordedInMesh(MeshRun mesh, string component)
    {
        using var state = JsonDocument.Parse(File.ReadAllText(Path.Combine(mesh.Home, "local.json")));
        foreach (var c in state.RootElement.GetProperty("components").EnumerateArray())
        {
            if (c.GetProperty("name").GetString() == component && c.TryGetProperty("pod", out var pod)) return pod.GetProperty("inMesh").GetBoolean();
        }
        return null;
    }

    private static JsonElement Json(string output)
    {
        // exec's warnings go to stderr, which the helper appends after stdout: read the first JSON value only.
        var start = output.IndexOf('{', StringComparison.Ordinal);
        Assert.True(start >= 0, "no JSON in: " + output);
        var reader = new Utf8JsonReader(System.Text.Encoding.UTF8.GetBytes(output[start..]), new JsonReaderOptions { AllowMultipleValues = true });
        using var doc = JsonDocument.ParseValue(ref reader);
        return doc.RootElement.Clone();
    }

    [Fact]
    public async Task LabelNamespace_Unlabel_GoesPlainText_Relabel_BackToMutualTls_NothingRestarted()
    {
        using var mesh = await UpAsync("lbl");
        var ns = mesh.Namespace;
        var client = mesh.Pod("client");
        var echo = mesh.Pod("echo");
        var pidsBefore = mesh.ReadState().Components.ToDictionary(c => c.Name, c => (c.Pid, c.StartTicks));
        var url = $"http://echo.{ns}.svc.cluster.local/meshed";

        var meshed = await mesh.CtlAsync(Ctl, "exec", "client", "-n", ns, "--", "curl", "-s", "--max-time", "10", url);
        Assert.True(meshed.Code == 0, meshed.Output);
        Assert.Equal("echo", Json(meshed.Output).GetProperty("pod").GetString());
        var mtlsBefore = 0L;
        await MeshRun.EventuallyAsync(async () => (mtlsBefore = await MutualTlsOpenedAsync(mesh)) > 0, Eventually,
            () => Task.FromResult("no mutual_tls connection was reported for the meshed request"));

        var unlabel = await mesh.CtlAsync(Ctl, "label", "namespace", ns, "istio.io/dataplane-mode-");
        Assert.True(unlabel.Code == 0, unlabel.Output);
        await MeshRun.EventuallyAsync(async () => !await SocksOpenAsync(client), Eventually,
            () => Task.FromResult("the client's SOCKS5 listener is still open after the namespace left the mesh"));

        // Out of the mesh: exec sets no proxy, the command goes straight to the echo from the client's own address.
        var plain = await mesh.CtlAsync(Ctl, "exec", "client", "-n", ns, "--", "curl", "-s", "--max-time", "10", $"http://{echo.Address}:8080/plain");
        Assert.True(plain.Code == 0, $"exec after unlabelling failed ({plain.Code}): {plain.Output}");
        var seen = Json(plain.Output);
        Assert.Equal("/plain", seen.GetProperty("path").GetString());
        Assert.Equal(client.Address, seen.GetProperty("remoteAddress").GetString());
        Assert.Equal(mtlsBefore, await MutualTlsOpenedAsync(mesh));

        var relabel = await mesh.CtlAsync(Ctl, "label", "namespace", ns, "istio.io/dataplane-mode=ambient");
        Assert.True(relabel.Code == 0, relabel.Output);
        await MeshRun.EventuallyAsync(() => SocksOpenAsync(client), Eventually,
            () => Task.FromResult("the client's SOCKS5 listener did not come back after relabelling"));
        var again = await mesh.CtlAsync(Ctl, "exec", "client", "-n", ns, "--", "curl", "-s", "--max-time", "10", url);
        Assert.True(again.Code == 0, again.Output);
        await MeshRun.EventuallyAsync(async () => await MutualTlsOpenedAsync(mesh) > mtlsBefore, Eventually,
            () => Task.FromResult("no new mutual_tls connection after relabelling"));

        // Enrolment switched both ways with no process started again.
        foreach (var c in mesh.ReadState().Components)
        {
            Assert.Equal(pidsBefore[c.Name], (c.Pid, c.StartTicks));
            Assert.Equal(0, c.Restarts);
        }
    }

    [Fact]
    public async Task ASingleFile_RunsTheMesh_AndOnlyThatFileIsWatched()
    {
        using var mesh = await UpAsync("one", fromFile: true);
        var ns = mesh.Namespace;
        var client = mesh.Pod("client");
        var status = await mesh.CtlAsync(Ctl, "local", "status");
        Assert.True(status.Code == 0, status.Output);
        Assert.Contains(Path.Combine(mesh.ConfigFolder, "mesh.yaml"), status.Output, StringComparison.Ordinal);
        var meshed = await mesh.CtlAsync(Ctl, "exec", "client", "-n", ns, "--", "curl", "-s", "--max-time", "10", $"http://echo.{ns}.svc.cluster.local/");
        Assert.True(meshed.Code == 0, meshed.Output);

        // A sibling file is not part of the config: its pod never starts.
        File.WriteAllText(Path.Combine(mesh.ConfigFolder, "extra.yaml"), MeshYaml.Sleep(ns, "extra", "default", "node-a"));
        // The file itself is watched by istiod-lite (the ztunnel closes the client's listener) and the supervisor.
        var unlabel = await mesh.CtlAsync(Ctl, "label", "namespace", ns, "istio.io/dataplane-mode-");
        Assert.True(unlabel.Code == 0, unlabel.Output);
        await MeshRun.EventuallyAsync(async () => !await SocksOpenAsync(client), Eventually,
            () => Task.FromResult("the client's SOCKS5 listener is still open after its namespace left the mesh"));
        // Once the supervisor has acted on the label (written after the sibling), a folder watch would have seen the sibling.
        await MeshRun.EventuallyAsync(() => Task.FromResult(RecordedInMesh(mesh, $"pod-{ns}-client") == false), Eventually,
            () => Task.FromResult("the supervisor never recorded the client as out of the mesh"));
        Assert.DoesNotContain(mesh.ReadState().Components, c => c.Name == $"pod-{ns}-extra");
        Assert.True(MeshRun.Alive(client.Pid, client.StartTicks), "the client was restarted by a label change");
    }

    [Fact]
    public async Task PodsAddedOrRemoved_WhileRunning_StartAndStop()
    {
        using var mesh = await UpAsync("kub");
        var ns = mesh.Namespace;
        var extraFile = Path.Combine(mesh.ConfigFolder, "extra.yaml");
        var name = $"pod-{ns}-extra";

        var clock = Stopwatch.StartNew();
        File.WriteAllText(extraFile, MeshYaml.Echo(ns, "extra", "default", "node-a"));
        MeshRun.Component? extra = null;
        await MeshRun.EventuallyAsync(() =>
        {
            extra = mesh.ReadState().Components.SingleOrDefault(c => c.Name == name);
            return Task.FromResult(extra is not null && MeshRun.Alive(extra.Pid, extra.StartTicks));
        }, Eventually, () => Task.FromResult($"{name} was not started within {Eventually.TotalSeconds:0}s of its file appearing"));
        var startedAfter = clock.Elapsed;
        TestContext.Current.SendDiagnosticMessage($"pod process started {startedAfter.TotalMilliseconds:0} ms after its file was written");
        // The promise is 2 s (debounce + rescan + process start); the bound allows for a loaded 2-core machine.
        Assert.True(startedAfter < TimeSpan.FromSeconds(6), $"started only after {startedAfter.TotalSeconds:0.0}s");

        // It is a real pod: it serves, in the mesh, through its service.
        var client = mesh.Pod("client");
        using (var http = MeshRun.ClientIn(client, keepAlive: false))
        {
            await MeshRun.EventuallyAsync(async () =>
            {
                try { return await http.GetAsync($"http://extra.{ns}.svc.cluster.local/", TestContext.Current.CancellationToken) == "extra"; }
                catch (HttpRequestException) { return false; }
                catch (TaskCanceledException) { return false; }
            }, Eventually, () => Task.FromResult("the added pod never answered through its Service"));
        }
        var status = await mesh.CtlAsync(Ctl, "local", "status");
        Assert.Contains(name, status.Output, StringComparison.Ordinal);

        File.Delete(extraFile);
        await MeshRun.EventuallyAsync(() => Task.FromResult(!MeshRun.Alive(extra!.Pid, extra.StartTicks)), Eventually,
            () => Task.FromResult($"{name} (pid {extra!.Pid}) still runs after its file was removed"));
        await MeshRun.EventuallyAsync(() => Task.FromResult(mesh.ReadState().Components.All(c => c.Name != name)), Eventually,
            () => Task.FromResult($"{name} is still recorded after it stopped"));
        status = await mesh.CtlAsync(Ctl, "local", "status");
        Assert.DoesNotContain(name, status.Output, StringComparison.Ordinal);
        Assert.Contains($"pod-{ns}-client", status.Output, StringComparison.Ordinal);
    }

    [Fact]
    public async Task ABrokenFolder_ExecAndStatusUseTheLastGoodState_AndShowTheProblems()
    {
        using var mesh = await UpAsync("bad");
        var ns = mesh.Namespace;
        var ready = await mesh.CtlAsync(Ctl, "local", "status");
        Assert.True(ready.Code == 0, ready.Output);
        Assert.Contains("phase ready", ready.Output, StringComparison.Ordinal);

        // A duplicate pod, a new pod with an unknown image, a running pod's image made unknown, a binary file, a
        // mistyped kind and a Service selecting nothing.
        var echoBefore = mesh.Pod("echo");
        var meshFile = Path.Combine(mesh.ConfigFolder, "mesh.yaml");
        var good = File.ReadAllText(meshFile);
        File.WriteAllText(meshFile, good.Replace("image: ambient/echo", "image: ambient/ehco", StringComparison.Ordinal));
        File.WriteAllText(Path.Combine(mesh.ConfigFolder, "zz-dup.yaml"), MeshYaml.Sleep(ns, "client", "client", "node-a"));
        File.WriteAllText(Path.Combine(mesh.ConfigFolder, "web.yaml"),
            $"apiVersion: v1\nkind: Pod\nmetadata: {{name: web, namespace: {ns}}}\nspec:\n  nodeName: node-a\n  containers: [{{name: web, image: nginx}}]\n");
        var junk = new byte[512];
        new Random(7).NextBytes(junk);
        File.WriteAllBytes(Path.Combine(mesh.ConfigFolder, "junk.yaml"), junk);
        File.WriteAllText(Path.Combine(mesh.ConfigFolder, "typo.yaml"),
            $"apiVersion: v1\nkind: Servce\nmetadata: {{name: typo, namespace: {ns}}}\n---\n"
            + $"apiVersion: v1\nkind: Service\nmetadata: {{name: lonely, namespace: {ns}}}\nspec:\n  selector: {{app: nobody}}\n  ports: [{{port: 80}}]\n");

        JsonElement json = default;
        await MeshRun.EventuallyAsync(async () =>
        {
            var r = await mesh.CtlAsync(Ctl, "local", "status", "-o", "json");
            if (!r.Output.TrimStart().StartsWith('{')) return false;
            json = JsonDocument.Parse(r.Output).RootElement.Clone();
            return json.GetProperty("errors").GetArrayLength() >= 3 && json.GetProperty("warnings").GetArrayLength() >= 2;
        }, Eventually, async () => "status -o json never showed the problems: " + (await mesh.CtlAsync(Ctl, "local", "status", "-o", "json")).Output);
        Assert.Equal("degraded", json.GetProperty("phase").GetString());
        var errors = string.Join('\n', json.GetProperty("errors").EnumerateArray().Select(e => e.GetString()));
        Assert.Contains("zz-dup.yaml", errors, StringComparison.Ordinal);
        Assert.Contains("junk.yaml", errors, StringComparison.Ordinal);
        Assert.Contains("nginx", errors, StringComparison.Ordinal);
        Assert.Contains("ambient/ehco", errors, StringComparison.Ordinal);
        var warnings = string.Join('\n', json.GetProperty("warnings").EnumerateArray().Select(e => e.GetString()));
        Assert.Contains("Servce", warnings, StringComparison.Ordinal);
        Assert.Contains("selects no pod", warnings, StringComparison.Ordinal);

        var text = await mesh.CtlAsync(Ctl, "local", "status");
        Assert.NotEqual(0, text.Code);
        Assert.Contains("phase degraded", text.Output, StringComparison.Ordinal);
        Assert.Contains("did you mean Service", text.Output, StringComparison.Ordinal);

        // exec still runs from the last good state, and says what is wrong.
        var exec = await mesh.CtlAsync(Ctl, "exec", "client", "-n", ns, "--", "curl", "-s", "--max-time", "10", $"http://echo.{ns}.svc.cluster.local/");
        Assert.True(exec.Code == 0, exec.Output);
        Assert.DoesNotContain("invalid mesh folder", exec.Output, StringComparison.Ordinal);
        Assert.Contains("warning", exec.Output, StringComparison.Ordinal);
        Assert.Equal("echo", Json(exec.Output).GetProperty("pod").GetString());
        // The echo whose new spec cannot run keeps its last good process; the new bad pod was never started.
        var echoNow = mesh.Pod("echo");
        Assert.Equal((echoBefore.Pid, echoBefore.StartTicks), (echoNow.Pid, echoNow.StartTicks));
        Assert.DoesNotContain(mesh.ReadState().Components, c => c.Name == $"pod-{ns}-web");
        File.WriteAllText(meshFile, good);

        foreach (var f in new[] { "zz-dup.yaml", "web.yaml", "junk.yaml", "typo.yaml" }) File.Delete(Path.Combine(mesh.ConfigFolder, f));
        await MeshRun.EventuallyAsync(async () => (await mesh.CtlAsync(Ctl, "local", "status")).Code == 0, Eventually,
            async () => "status did not come back to ready: " + (await mesh.CtlAsync(Ctl, "local", "status")).Output);
    }
}

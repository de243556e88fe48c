using Ambient.Ctl.Cli;
using Ambient.Ctl.Local;

namespace Ambient.Ctl.Tests;

/// <summary>What exec, status and the `local up` summary make of the supervisor's state file.</summary>
public class LocalStateViewTests
{
    private static ComponentRecord PodComponent(string ns, string name, string address, bool inMesh) =>
        new($"pod-{ns}-{name}", "pod", 4242, 1, address, "node-1", $"/s/logs/pod-{ns}-{name}.log", 0,
            new PodRecord(ns, name, "default", inMesh, new Dictionary<string, string> { ["POD_IP"] = address, ["VERSION"] = "v1" }));

    private static LocalState State(params ComponentRecord[] components) => new(1, 1, "/cfg/mesh", "/cfg/.ambient-state", "127.0.0.1", LocalState.PhaseReady, null,
        [
            new ComponentRecord("istiod", "istiod", 10, 1, "127.0.0.1", null, "/s/logs/istiod.log", 0),
            new ComponentRecord("ztunnel-node-1", "ztunnel", 11, 1, "127.0.1.1", "node-1", "/s/logs/ztunnel-node-1.log", 0),
            .. components,
        ]);

    [Fact]
    public void Exec_InTheMesh_GoesThroughTheSocksPort()
    {
        var pod = PodComponent("demo", "client", "127.1.2.3", inMesh: true);
        var (args, env) = ExecCommand.Prepare(["curl", "-s", "echo"], pod);
        Assert.Equal(["--socks5-hostname", "127.1.2.3:15080", "-s", "echo"], args);
        Assert.Equal("socks5h://127.1.2.3:15080", env["ALL_PROXY"]);
        Assert.Equal("v1", env["VERSION"]);
        Assert.Equal(["x"], ExecCommand.Prepare(["nc", "x"], pod).Args);
    }

    [Fact]
    public void Exec_OutsideTheMesh_SetsNoProxy_AndCurlLeavesFromThePodAddress()
    {
        var pod = PodComponent("demo", "client", "127.1.2.3", inMesh: false);
        var (args, env) = ExecCommand.Prepare(["curl", "-s", "http://127.4.5.6:8080/"], pod);
        Assert.Equal(["--interface", "127.1.2.3", "-s", "http://127.4.5.6:8080/"], args);
        Assert.False(env.ContainsKey("ALL_PROXY"));
        Assert.False(env.ContainsKey("all_proxy"));
        Assert.Equal("127.1.2.3", env["POD_IP"]);
    }

    [Fact]
    public void Exec_FindsPodsInTheRecordedState_NotInTheFolder()
    {
        var state = State(PodComponent("demo", "client", "127.1.2.3", true), PodComponent("other", "client", "127.1.2.4", true));
        Assert.Equal("127.1.2.3", ExecCommand.FindPod(state, "demo/client", null, out _)!.Address);
        Assert.Equal("127.1.2.4", ExecCommand.FindPod(state, "client", "other", out _)!.Address);
        Assert.Null(ExecCommand.FindPod(state, "client", null, out var error));
        Assert.Contains("several namespaces", error, StringComparison.Ordinal);
        Assert.Null(ExecCommand.FindPod(state, "istiod", null, out error));
    }

    [Fact]
    public void Exec_PrintsTheConfigsProblemsAsWarnings()
    {
        var state = State() with { ConfigErrors = ["/cfg/mesh/junk.yaml:1: YAML syntax error"] };
        var error = new StringWriter();
        ExecCommand.PrintConfigProblems(state, error);
        Assert.Contains("warning:", error.ToString(), StringComparison.Ordinal);
        Assert.Contains("/cfg/mesh/junk.yaml:1: YAML syntax error", error.ToString(), StringComparison.Ordinal);
        var none = new StringWriter();
        ExecCommand.PrintConfigProblems(State(), none);
        Assert.Empty(none.ToString());
    }

    [Fact]
    public void UpSummary_ShowsNoSocksEndpointOutsideTheMesh_AndSaysWhatLoopbackModeCannotIsolate()
    {
        var state = State(PodComponent("demo", "client", "127.1.2.3", true), PodComponent("legacy", "old", "127.1.2.9", false));
        var output = new StringWriter();
        LocalCommands.PrintSummary(state, output, new OutputStyle(80, false));
        var text = output.ToString();
        Assert.Contains("socks5h://127.1.2.3:15080", text, StringComparison.Ordinal);
        Assert.DoesNotContain("127.1.2.9:15080", text, StringComparison.Ordinal);
        Assert.Contains("not in the mesh", text, StringComparison.Ordinal);
        var flat = text.Replace("\n", " ", StringComparison.Ordinal);
        Assert.Contains("processes of one user on one host and an address cannot tell them apart", flat, StringComparison.Ordinal);
        Assert.Contains("network-namespace mode", flat, StringComparison.Ordinal);
        var lines = text.TrimEnd('\n').Split('\n');
        Assert.All(lines, l => Assert.True(l.Length <= 80, l));
        Assert.StartsWith("COMPONENT", lines[0], StringComparison.Ordinal); // a table, not blocks, at 80 columns
    }

    private sealed class FakeProbe(HashSet<int> running, HashSet<string> readyUrls) : IHealthProbe
    {
        public bool IsRunning(int pid, long startTicks) => running.Contains(pid);

        public Task<bool> HttpOkAsync(string url) => Task.FromResult(readyUrls.Contains(url));
    }

    private static readonly HashSet<string> AllReady = ["http://127.0.0.1:15014/ready", "http://127.0.1.1:15021/healthz/ready"];

    [Fact]
    public async Task Status_IsReady_OnlyWhenEveryProcessRunsAndAnswers_AndTheConfigIsClean()
    {
        var state = State(PodComponent("demo", "client", "127.1.2.3", true));
        var ready = await MeshHealth.CheckAsync(state, new FakeProbe([1, 10, 11, 4242], AllReady));
        Assert.Equal("ready", ready.Phase);
        Assert.Null(ready.Reason);

        var ztunnelDown = await MeshHealth.CheckAsync(state, new FakeProbe([1, 10, 11, 4242], ["http://127.0.0.1:15014/ready"]));
        Assert.Equal("degraded", ztunnelDown.Phase);
        Assert.Contains("ztunnel-node-1", ztunnelDown.Reason, StringComparison.Ordinal);
        Assert.False(ztunnelDown.Components.Single(c => c.Name == "ztunnel-node-1").Ready);

        var podGone = await MeshHealth.CheckAsync(state, new FakeProbe([1, 10, 11], AllReady));
        Assert.Equal("degraded", podGone.Phase);
        Assert.Equal("process not running", podGone.Components.Single(c => c.Kind == "pod").Problem);

        var badConfig = await MeshHealth.CheckAsync(state with { ConfigErrors = ["/cfg/a.yaml:3: bad"], ConfigWarnings = ["/cfg/b.yaml:1: kind: odd"] },
            new FakeProbe([1, 10, 11, 4242], AllReady));
        Assert.Equal("degraded", badConfig.Phase);
        Assert.Contains("1 config error(s)", badConfig.Reason, StringComparison.Ordinal);

        var text = new StringWriter();
        StatusCommand.Print(badConfig, text, new OutputStyle(80, false));
        Assert.Contains("phase degraded", text.ToString(), StringComparison.Ordinal);
        Assert.Contains("/cfg/a.yaml:3: bad", text.ToString(), StringComparison.Ordinal);
        Assert.Contains("/cfg/b.yaml:1: kind: odd", text.ToString(), StringComparison.Ordinal);
        using var json = System.Text.Json.JsonDocument.Parse(StatusCommand.ToJson(badConfig));
        Assert.Equal("degraded", json.RootElement.GetProperty("phase").GetString());
        Assert.Equal(1, json.RootElement.GetProperty("warnings").GetArrayLength());
        Assert.Equal(3, json.RootElement.GetProperty("components").GetArrayLength());
        Assert.True(json.RootElement.GetProperty("components")[2].GetProperty("inMesh").GetBoolean());

        var starting = await MeshHealth.CheckAsync(state with { Phase = LocalState.PhaseStarting }, new FakeProbe([1, 10, 11, 4242], AllReady));
        Assert.Equal("starting", starting.Phase);
        Assert.False(starting.Ready);
    }
}

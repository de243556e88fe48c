using Ambient.Ctl.Cli;
using Ambient.Ctl.Demo;
using Ambient.Ctl.Local;

namespace Ambient.Ctl.Tests;

/// <summary>
/// Netns mode as the default of `local up` and `demo` where the host can run it, the loopback fallback that says why,
/// and what `exec` and the demo run inside a pod's network namespace.
/// </summary>
public class NetnsDefaultTests
{
    [Fact]
    public void Network_DefaultsToNetns_WhenTheHostCanRunIt_AndSaysNothing()
    {
        var error = new StringWriter();
        Assert.Equal("netns", NetworkOptions.Choose(null, netnsMissing: null, "local up", error));
        Assert.Empty(error.ToString());
    }

    [Fact]
    public void Network_FallsBackToLoopback_WithOneLineSayingWhy()
    {
        var error = new StringWriter();
        Assert.Equal("loopback", NetworkOptions.Choose(null, netnsMissing: "root", "local up", error));
        var lines = error.ToString().TrimEnd('\n').Split('\n');
        Assert.Single(lines);
        Assert.Contains("loopback", lines[0], StringComparison.Ordinal);
        Assert.Contains("needs root", lines[0], StringComparison.Ordinal);
    }

    [Theory]
    [InlineData("loopback", null)]
    [InlineData("loopback", "root")]
    [InlineData("netns", null)]
    [InlineData("netns", "root")] // refused later, with the full reason, rather than silently changed
    public void Network_AsAsked_IsKept_WithoutAWord(string asked, string? missing)
    {
        var error = new StringWriter();
        Assert.Equal(asked, NetworkOptions.Choose(asked, missing, "demo", error));
        Assert.Empty(error.ToString());
    }

    [Fact]
    public void LocalUpAndDemo_TakeTheNetworkOptions_AndNoOtherMode()
    {
        Assert.Empty(CommandLine.Build().Parse(["local", "up", "-f", "x", "--network", "loopback"]).Errors);
        Assert.Empty(CommandLine.Build().Parse(["demo", "--network", "netns", "--pod-cidr", "10.170.0.0/16", "--service-cidr", "10.210.0.0/16", "--network-id", "p1"]).Errors);
        Assert.NotEmpty(CommandLine.Build().Parse(["demo", "--network", "host"]).Errors);
        // No mode given: the option has no value of its own, the action picks it (netns where it can run).
        var parsed = CommandLine.Build().Parse(["local", "up", "-f", "x"]);
        var network = parsed.CommandResult.Command.Options.Single(o => o.Name == "--network");
        Assert.Null(parsed.GetValue((System.CommandLine.Option<string?>)network));
    }

    [Fact]
    public void Exec_InNetnsMode_RunsTheCommandInsideThePodsNamespace_WithThePodsEnvironment_AndNoProxy()
    {
        var pod = new PodRecord("demo", "client", "client", true, new Dictionary<string, string>
        {
            ["POD_IP"] = "10.244.0.5",
            ["ALL_PROXY"] = "socks5h://10.244.0.5:15080", // a pod's env may name one: exec must not pass it on
        }) { Netns = "amb-x1-demo-client" };

        var (args, env) = ExecCommand.PrepareInNetns("/usr/bin/curl", ["curl", "-s", "http://echo.demo.svc.cluster.local/"], pod, pod.Netns);

        Assert.Equal(["netns", "exec", "amb-x1-demo-client", "/usr/bin/curl", "-s", "http://echo.demo.svc.cluster.local/"], args);
        Assert.Equal("10.244.0.5", env["POD_IP"]);
        foreach (var name in ExecCommand.ProxyVariables) Assert.False(env.ContainsKey(name), name);
        Assert.Contains("HTTPS_PROXY", ExecCommand.ProxyVariables);
        Assert.Contains("all_proxy", ExecCommand.ProxyVariables);
    }

    [Fact]
    public void DemoCurl_SplitsTheBodiesAtItsMarkers_WithStatusAndTime()
    {
        const string output = "{\n  \"pod\": \"echo-v1\"\n}\n@@ambient-demo 200 0.004512\n{\"pod\": \"echo-v2\"}\n@@ambient-demo 503 0.010000\n\n@@ambient-demo 000 0.000000\n";

        var responses = CurlDemoTraffic.Parse(output);

        Assert.Equal(3, responses.Count);
        Assert.Equal((200, "{\n  \"pod\": \"echo-v1\"\n}"), (responses[0].Status, responses[0].Body));
        Assert.Equal(4.512, responses[0].LatencyMs, 3);
        Assert.Null(responses[0].Problem);
        Assert.Equal((503, "{\"pod\": \"echo-v2\"}"), (responses[1].Status, responses[1].Body));
        Assert.Equal(0, responses[2].Status);
        Assert.NotNull(responses[2].Problem);
    }
}

using System.Collections.Concurrent;
using System.Diagnostics;
using System.Text.Json;
using System.Text.Json.Nodes;
using Ambient.Cni;
using Ambient.Ctl.Kube.NodeAgent;
using Ambient.TestCommon;
using Ambient.TestCommon.Kube;
using Microsoft.Extensions.Logging.Abstractions;

namespace Ambient.Ctl.Tests.Kube.NodeAgent;

/// <summary>
/// The ambient-cni plugin as the container runtime runs it: a real process with CNI_* in its environment, the network
/// configuration on stdin and its result (or CNI error) on stdout, talking to an agent socket served by the node agent's
/// <see cref="CniEventServer"/>.
/// </summary>
public sealed class CniPluginProcessTests : IAsyncLifetime
{
    private const string PrevResult = """{"cniVersion":"1.0.0","interfaces":[{"name":"eth0","sandbox":"/var/run/netns/cni-1"}],"ips":[{"address":"10.244.1.7/24","gateway":"10.244.1.1","interface":0}],"dns":{}}""";
    private readonly TempDir _dir = new();
    private readonly ConcurrentQueue<CniAgentRequest> _requests = new();
    private CniEventServer? _agent;
    private Func<CniAgentRequest, CniAgentResponse> _answer = _ => new CniAgentResponse(null, true);

    private string Socket => Path.Combine(_dir.Path, "run", "plugin.sock");

    public ValueTask InitializeAsync() => ValueTask.CompletedTask;

    private void StartAgent() => _agent = CniEventServer.Start(Socket, (request, _) =>
    {
        _requests.Enqueue(request);
        return Task.FromResult(_answer(request));
    }, NullLogger.Instance);

    private string Config(string version = "1.0.0", bool withPrevResult = true, string? kubeconfig = null)
    {
        var config = new JsonObject
        {
            ["cniVersion"] = version,
            ["name"] = "k8s-pod-network",
            ["type"] = CniNames.PluginType,
            ["agent_socket"] = Socket,
        };
        if (kubeconfig is not null) config["kubeconfig"] = kubeconfig;
        if (withPrevResult) config["prevResult"] = JsonNode.Parse(PrevResult);
        return config.ToJsonString();
    }

    private static Dictionary<string, string> Env(string command, string pod = "web-1", string ns = "shop") => new()
    {
        ["CNI_COMMAND"] = command,
        ["CNI_CONTAINERID"] = "c0ffee",
        ["CNI_NETNS"] = "/var/run/netns/cni-1",
        ["CNI_IFNAME"] = "eth0",
        ["CNI_PATH"] = "/opt/cni/bin",
        ["CNI_ARGS"] = $"IgnoreUnknown=1;K8S_POD_NAMESPACE={ns};K8S_POD_NAME={pod};K8S_POD_INFRA_CONTAINER_ID=c0ffee;K8S_POD_UID=1234-abcd",
    };

    /// <summary>Runs ambient-cni from the test's output folder, as the runtime would.</summary>
    internal static async Task<(int Exit, string Stdout, string Stderr)> RunPluginAsync(IReadOnlyDictionary<string, string> environment, string stdin)
    {
        var bin = AppContext.BaseDirectory;
        var apphost = Path.Combine(bin, CniNames.PluginType);
        var start = File.Exists(apphost) ? new ProcessStartInfo(apphost) : new ProcessStartInfo("dotnet") { ArgumentList = { Path.Combine(bin, CniNames.PluginType + ".dll") } };
        start.RedirectStandardInput = start.RedirectStandardOutput = start.RedirectStandardError = true;
        start.UseShellExecute = false;
        foreach (var name in (string[])["CNI_COMMAND", "CNI_CONTAINERID", "CNI_NETNS", "CNI_IFNAME", "CNI_ARGS", "CNI_PATH"]) start.Environment.Remove(name);
        foreach (var (name, value) in environment) start.Environment[name] = value;
        using var process = Process.Start(start)!;
        var stdout = process.StandardOutput.ReadToEndAsync();
        var stderr = process.StandardError.ReadToEndAsync();
        await process.StandardInput.WriteAsync(stdin);
        process.StandardInput.Close();
        using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(60));
        await process.WaitForExitAsync(timeout.Token);
        return (process.ExitCode, await stdout, await stderr);
    }

    private static JsonElement Error(string stdout, int code)
    {
        using var json = JsonDocument.Parse(stdout);
        var error = json.RootElement.Clone();
        Assert.Equal(code, error.GetProperty("code").GetInt32());
        Assert.False(string.IsNullOrEmpty(error.GetProperty("msg").GetString()));
        Assert.True(error.TryGetProperty("cniVersion", out _), stdout);
        return error;
    }

    [Fact]
    public async Task Version_prints_the_supported_versions()
    {
        var (exit, stdout, stderr) = await RunPluginAsync(new Dictionary<string, string> { ["CNI_COMMAND"] = "VERSION" }, """{"cniVersion":"1.0.0"}""");
        Assert.True(exit == 0, stderr);
        using var json = JsonDocument.Parse(stdout);
        Assert.Equal("1.0.0", json.RootElement.GetProperty("cniVersion").GetString());
        var versions = json.RootElement.GetProperty("supportedVersions").EnumerateArray().Select(v => v.GetString()).ToList();
        Assert.Equal(["0.3.0", "0.3.1", "0.4.0", "1.0.0"], versions);
    }

    [Fact]
    public async Task Add_tells_the_agent_the_pods_netns_waits_for_it_and_passes_prevResult_through_unchanged()
    {
        StartAgent();
        var (exit, stdout, stderr) = await RunPluginAsync(Env("ADD"), Config());
        Assert.True(exit == 0, stdout + stderr);
        Assert.Equal(PrevResult, stdout);
        var request = Assert.Single(_requests);
        Assert.Equal(new CniAgentRequest("ADD", "shop", "web-1", "1234-abcd", "/var/run/netns/cni-1", "c0ffee"), request);
    }

    [Fact]
    public async Task Add_of_a_pod_the_agent_cannot_enrol_fails_with_a_cni_error()
    {
        _answer = _ => new CniAgentResponse("no ztunnel acked it", false);
        StartAgent();
        var (exit, stdout, _) = await RunPluginAsync(Env("ADD"), Config());
        Assert.NotEqual(0, exit);
        Assert.Contains("no ztunnel acked it", Error(stdout, 100).GetProperty("msg").GetString(), StringComparison.Ordinal);
    }

    [Fact]
    public async Task Add_outside_kubernetes_passes_through_without_asking_the_agent()
    {
        StartAgent();
        var env = Env("ADD");
        env["CNI_ARGS"] = "IgnoreUnknown=1";
        var (exit, stdout, stderr) = await RunPluginAsync(env, Config(withPrevResult: false));
        Assert.True(exit == 0, stdout + stderr);
        using var json = JsonDocument.Parse(stdout);
        Assert.Equal("1.0.0", json.RootElement.GetProperty("cniVersion").GetString());
        Assert.Empty(_requests);
    }

    [Fact]
    public async Task Del_tells_the_agent_and_succeeds_even_when_the_agent_is_gone()
    {
        StartAgent();
        var (exit, stdout, stderr) = await RunPluginAsync(Env("DEL"), Config());
        Assert.True(exit == 0, stdout + stderr);
        Assert.Equal("", stdout);
        Assert.Equal("DEL", Assert.Single(_requests).Command);

        await _agent!.DisposeAsync();
        _agent = null;
        (exit, stdout, stderr) = await RunPluginAsync(Env("DEL"), Config());
        Assert.True(exit == 0, stdout + stderr);
        Assert.Equal("", stdout);
    }

    [Fact]
    public async Task Check_succeeds_quietly()
    {
        var (exit, stdout, stderr) = await RunPluginAsync(Env("CHECK"), Config());
        Assert.True(exit == 0, stdout + stderr);
        Assert.Equal("", stdout);
    }

    [Fact]
    public async Task Bad_input_is_reported_as_cni_error_json_with_a_nonzero_exit()
    {
        var (exit, stdout, _) = await RunPluginAsync(Env("ADD"), "{not json");
        Assert.NotEqual(0, exit);
        Error(stdout, 6);

        (exit, stdout, _) = await RunPluginAsync(Env("ADD"), Config(version: "9.9.9"));
        Assert.NotEqual(0, exit);
        Error(stdout, 1);

        (exit, stdout, _) = await RunPluginAsync(new Dictionary<string, string>(), Config());
        Assert.NotEqual(0, exit);
        Error(stdout, 4);

        var noNetns = Env("ADD");
        noNetns.Remove("CNI_NETNS");
        (exit, stdout, _) = await RunPluginAsync(noNetns, Config());
        Assert.NotEqual(0, exit);
        Error(stdout, 4);
    }

    [Fact]
    public async Task With_the_agent_unreachable_an_ambient_pod_fails_and_any_other_pod_starts()
    {
        await using var api = await FakeKubeApiServer.StartAsync(cancellationToken: TestContext.Current.CancellationToken);
        api.Put("""{"apiVersion":"v1","kind":"Namespace","metadata":{"name":"shop","labels":{"istio.io/dataplane-mode":"ambient"}}}""");
        api.Put("""{"apiVersion":"v1","kind":"Namespace","metadata":{"name":"legacy"}}""");
        api.Put("""{"apiVersion":"v1","kind":"Pod","metadata":{"name":"web-1","namespace":"shop"},"spec":{"nodeName":"n1","containers":[{"name":"c","image":"i"}]}}""");
        api.Put("""{"apiVersion":"v1","kind":"Pod","metadata":{"name":"opted-out","namespace":"shop","labels":{"istio.io/dataplane-mode":"none"}},"spec":{"nodeName":"n1","containers":[{"name":"c","image":"i"}]}}""");
        api.Put("""{"apiVersion":"v1","kind":"Pod","metadata":{"name":"old-1","namespace":"legacy"},"spec":{"nodeName":"n1","containers":[{"name":"c","image":"i"}]}}""");
        var kubeconfig = _dir.Write("net.d/" + CniNames.KubeconfigFile,
            new CniKubeconfig(api.BaseAddress.ToString().TrimEnd('/'), api.CaCertificate.ExportCertificatePem(), api.AdminToken).ToJson());

        // No agent listens on the socket.
        var (exit, stdout, stderr) = await RunPluginAsync(Env("ADD", "web-1", "shop"), Config(kubeconfig: kubeconfig));
        Assert.NotEqual(0, exit);
        Assert.Contains("unreachable", Error(stdout, 11).GetProperty("msg").GetString(), StringComparison.Ordinal);

        (exit, stdout, stderr) = await RunPluginAsync(Env("ADD", "old-1", "legacy"), Config(kubeconfig: kubeconfig));
        Assert.True(exit == 0, stdout + stderr);
        Assert.Equal(PrevResult, stdout);

        (exit, stdout, stderr) = await RunPluginAsync(Env("ADD", "opted-out", "shop"), Config(kubeconfig: kubeconfig));
        Assert.True(exit == 0, stdout + stderr);
        Assert.Equal(PrevResult, stdout);
    }

    public async ValueTask DisposeAsync()
    {
        if (_agent is not null) await _agent.DisposeAsync();
        _dir.Dispose();
    }
}

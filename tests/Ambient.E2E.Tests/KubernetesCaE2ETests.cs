using System.Diagnostics;
using System.Text.Json.Nodes;
using Ambient.TestCommon.Kube;

namespace Ambient.E2E.Tests;

/// <summary>
/// Kubernetes-mode CA authentication end to end, as processes: istiod-lite with <c>--ca-auth tokenreview</c> asks the
/// fake Kubernetes API server (HTTPS TokenReview) about the ztunnel's projected service-account token, which the
/// ztunnel reads from <c>--ca-token-file</c> for every request; the ztunnel obtains its pods' certificates by
/// impersonation as the trusted node account. When its pod is re-created (a new uid), the old token is refused
/// until the kubelet writes the new one, which the next request picks up.
/// </summary>
public sealed class KubernetesCaE2ETests : IAsyncLifetime
{
    private const string Node = "k3-node";
    private readonly TempDir _dir = new();
    private readonly ChildProcesses _processes = new();
    private FakeKubeApiServer _api = null!;

    public async ValueTask InitializeAsync() =>
        _api = await FakeKubeApiServer.StartAsync(cancellationToken: TestContext.Current.CancellationToken);

    public async ValueTask DisposeAsync()
    {
        await _processes.DisposeAsync();
        await _api.DisposeAsync();
        _dir.Dispose();
    }

    [Fact]
    public async Task Ztunnel_GetsItsPodsCertificates_WithItsProjectedToken_AndFollowsTheTokenFile()
    {
        var ct = TestContext.Current.CancellationToken;
        var mesh = Path.Combine(_dir.Path, "mesh");
        Directory.CreateDirectory(mesh);
        var meshFile = Path.Combine(mesh, "mesh.yaml");
        File.WriteAllText(meshFile, Mesh("uid-1", withDb: false));
        var state = Path.Combine(_dir.Path, "state");
        var kubeconfig = _api.WriteKubeconfig(Path.Combine(_dir.Path, "kubeconfig"));

        var istiod = Start("istiod-lite", ["--config", mesh, "--state", state, "--listen", "127.0.0.1:0", "--monitoring", "off",
            "--ca-auth", "tokenreview", "--kubeconfig", kubeconfig], ("CA_TRUSTED_NODE_ACCOUNTS", "istio-system/ztunnel"));
        var port = await _processes.IstiodPortAsync(istiod, ct);

        var tokenFile = Path.Combine(_dir.Path, "tokens", "istio-token");
        Directory.CreateDirectory(Path.GetDirectoryName(tokenFile)!);
        File.WriteAllText(tokenFile, ZtunnelToken("uid-1"));
        var address = $"127.0.{90 + Environment.ProcessId % 10}.{1 + Environment.ProcessId % 250}";
        var ztunnel = Start("ztunnel", ["--node", Node, "--root", Path.Combine(state, "root-cert.pem"), "--ca-token-file", tokenFile,
            "--istiod", $"https://127.0.0.1:{port}", "--address", address]);

        using var http = new HttpClient(new SocketsHttpHandler { UseProxy = false }) { Timeout = TimeSpan.FromSeconds(5) };
        var web = "spiffe://cluster.local/ns/k3demo/sa/web";
        var db = "spiffe://cluster.local/ns/k3demo/sa/db";
        await EventuallyAsync(async () => Certificate(await ConfigDumpAsync(http, address), web)?["state"]?.GetValue<string>() == "Ready",
            () => Logs(istiod, ztunnel), ct);
        Assert.Contains(_api.Requests, r => r.StartsWith("POST /apis/authentication.k8s.io/v1/tokenreviews", StringComparison.Ordinal));

        // The ztunnel pod is re-created (new uid) and a pod of db lands on the node; the token file still holds the old
        // pod's token, so db's certificate is refused, naming why.
        File.WriteAllText(meshFile, Mesh("uid-2", withDb: true));
        await EventuallyAsync(async () => Certificate(await ConfigDumpAsync(http, address), db)?["lastError"]?.GetValue<string>()
                ?.Contains("uid does not match", StringComparison.Ordinal) == true,
            () => Logs(istiod, ztunnel), ct);

        // The kubelet writes the new pod's token: the next request reads it and succeeds.
        File.WriteAllText(tokenFile, ZtunnelToken("uid-2"));
        await EventuallyAsync(async () => Certificate(await ConfigDumpAsync(http, address), db)?["state"]?.GetValue<string>() == "Ready",
            () => Logs(istiod, ztunnel), ct);
    }

    private string ZtunnelToken(string podUid) => ProjectedTokens.Add(_api, "istio-system", "ztunnel", "ztunnel-k3", podUid, Node);

    private static string Mesh(string ztunnelUid, bool withDb) =>
        MeshYaml.Namespace("k3demo") + MeshYaml.Namespace("istio-system", dataplaneMode: null)
        + MeshYaml.ServiceAccount("k3demo", "web") + MeshYaml.ServiceAccount("k3demo", "db") + MeshYaml.ServiceAccount("istio-system", "ztunnel")
        + MeshYaml.Pod("web-1", "k3demo", Node, "web", "web")
        + (withDb ? MeshYaml.Pod("db-1", "k3demo", Node, "db", "db") : "")
        + $"""
          apiVersion: v1
          kind: Pod
          metadata:
            name: ztunnel-k3
            namespace: istio-system
            uid: {ztunnelUid}
          spec:
            serviceAccountName: ztunnel
            nodeName: {Node}
            containers:
            - name: istio-proxy
              image: ambient/ztunnel
          ---

          """;

    private Process Start(string program, string[] args, params (string Name, string Value)[] environment) =>
        _processes.Start(program, args, environment);

    private Task<string> Logs(Process istiod, Process ztunnel) =>
        Task.FromResult(_processes.Logs(("istiod-lite", istiod), ("ztunnel", ztunnel)));

    private static async Task<JsonNode?> ConfigDumpAsync(HttpClient http, string address)
    {
        try
        {
            return JsonNode.Parse(await http.GetStringAsync($"http://{address}:15000/config_dump"));
        }
        catch (HttpRequestException)
        {
            return null; // not listening yet
        }
    }

    private static JsonNode? Certificate(JsonNode? dump, string identity)
    {
        foreach (var c in dump?["certificates"]?.AsArray() ?? [])
        {
            if (c?["identity"]?.GetValue<string>() == identity)
            {
                return c;
            }
        }
        return null;
    }

    private static async Task EventuallyAsync(Func<Task<bool>> condition, Func<Task<string>> describe, CancellationToken ct)
    {
        var deadline = DateTime.UtcNow + TimeSpan.FromSeconds(60);
        while (!await condition())
        {
            if (DateTime.UtcNow > deadline)
            {
                Assert.Fail(await describe());
            }
            await Task.Delay(100, ct);
        }
    }
}

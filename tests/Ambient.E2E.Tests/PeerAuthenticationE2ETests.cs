using System.Diagnostics;
using System.Text.Json;
using Ambient.TestCommon;

namespace Ambient.E2E.Tests;

/// <summary>
/// PeerAuthentication on a running local mesh, real processes throughout: a STRICT policy written live into the config
/// folder reaches the destination ztunnel (its config_dump shows Istio's static STRICT policy and the echo workload
/// naming it), then a workload policy with a PERMISSIVE port replaces it by its converted form, and removing the
/// policies removes both. Through it all the client, whose traffic is HBONE (mTLS), keeps being answered: STRICT only
/// refuses connections without a peer principal.
/// </summary>
public sealed class PeerAuthenticationE2ETests
{
    private static readonly TimeSpan Propagation = TimeSpan.FromSeconds(20);
    private const string StaticStrict = "istio-system/istio_converted_static_strict";
    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    private static string Yaml(string ns) =>
        MeshYaml.Namespace(ns) + MeshYaml.ServiceAccount(ns, "client") + MeshYaml.ServiceAccount(ns, "echo")
        + MeshYaml.Sleep(ns, "client", "client", "node-a") + MeshYaml.Echo(ns, "echo", "echo", "node-b");

    private static string Pa(string ns, string name, string spec) => $"""
        apiVersion: security.istio.io/v1
        kind: PeerAuthentication
        metadata: {"{"}name: {name}, namespace: {ns}{"}"}
        spec:
        {spec}
        ---

        """;

    private static void WritePolicies(MeshRun mesh, string yaml)
    {
        var temp = Path.Combine(mesh.TempPath, "peer.tmp");
        File.WriteAllText(temp, yaml);
        File.Move(temp, Path.Combine(mesh.ConfigFolder, "peer-authentication.yaml"), overwrite: true);
    }

    /// <summary>The pushed policies' names and the echo workload's named ones, as node-b's config_dump shows them.</summary>
    private static async Task<(string[] Policies, string[] EchoNames)> DumpAsync(MeshRun mesh)
    {
        var text = await MeshRun.Plain.GetStringAsync($"http://{mesh.Ztunnel("node-b").Address}:15000/config_dump", Ct);
        using var dump = JsonDocument.Parse(text);
        var policies = dump.RootElement.GetProperty("policies").EnumerateArray()
            .Select(p => p.GetProperty("namespace").GetString() + "/" + p.GetProperty("name").GetString()).Order(StringComparer.Ordinal).ToArray();
        var echo = dump.RootElement.GetProperty("workloads").EnumerateArray()
            .Single(w => w.GetProperty("name").GetString() == "echo" && w.GetProperty("namespace").GetString() == mesh.Namespace);
        var names = echo.TryGetProperty("authorizationPolicies", out var list) ? list.EnumerateArray().Select(n => n.GetString()!).ToArray() : [];
        return (policies, names);
    }

    private static async Task StepAsync(MeshRun mesh, MeshRun.PodClient client, string url, string step, string yaml, string[] policies, string[] echoNames)
    {
        WritePolicies(mesh, yaml);
        var clock = Stopwatch.StartNew();
        (string[] Policies, string[] EchoNames) last = ([], []);
        await MeshRun.EventuallyAsync(async () =>
            {
                last = await DumpAsync(mesh);
                return last.Policies.SequenceEqual(policies) && last.EchoNames.SequenceEqual(echoNames);
            }, Propagation,
            () => Task.FromResult($"{step}: expected policies [{string.Join(", ", policies)}] and echo naming [{string.Join(", ", echoNames)}], "
                + $"last saw [{string.Join(", ", last.Policies)}] and [{string.Join(", ", last.EchoNames)}]"));
        TestContext.Current.TestOutputHelper?.WriteLine($"{step}: in node-b's config_dump {clock.Elapsed.TotalMilliseconds:0} ms after the write");
        // mTLS (HBONE) is never refused by a PeerAuthentication.
        Assert.Equal("echo", await client.GetAsync(url + "/" + Guid.NewGuid().ToString("N")[..8], Ct));
    }

    [Fact]
    public async Task StrictPolicy_WrittenLive_ReachesTheZtunnelsConfigDump_AndMtlsStaysAllowed()
    {
        using var mesh = await MeshRun.UpAsync("pae", Yaml);
        var ns = mesh.Namespace;
        var url = $"http://echo.{ns}.svc.cluster.local";
        using var client = MeshRun.ClientIn(mesh.Pod("client"), keepAlive: false);
        await MeshRun.EventuallyAsync(async () =>
            {
                try
                {
                    return await client.GetAsync(url + "/ready", Ct) == "echo";
                }
                catch (Exception e) when (e is HttpRequestException or TaskCanceledException)
                {
                    return false;
                }
            }, Propagation, () => Task.FromResult("the echo pod never answered"));
        var converted = ns + "/converted_peer_authentication_echo";

        await StepAsync(mesh, client, url, "mesh-wide STRICT", Pa("istio-system", "default", "  mtls: {mode: STRICT}"),
            [StaticStrict], [StaticStrict]);

        await StepAsync(mesh, client, url, "namespace PERMISSIVE over a STRICT mesh",
            Pa("istio-system", "default", "  mtls: {mode: STRICT}") + Pa(ns, "default", "  mtls: {mode: PERMISSIVE}"),
            [StaticStrict], []);

        await StepAsync(mesh, client, url, "workload STRICT with a PERMISSIVE port",
            Pa(ns, "echo", "  selector: {matchLabels: {app: echo}}\n  mtls: {mode: STRICT}\n  portLevelMtls:\n    8080: {mode: PERMISSIVE}"),
            [StaticStrict, converted], [converted]);

        // `get peerauthentication` shows what ztunnel enforces for it, from istiod-lite.
        var get = await mesh.CtlAsync(TimeSpan.FromSeconds(60), "get", "pa", "echo", "-n", ns, "-o", "json");
        Assert.True(get.Code == 0, get.Output);
        using (var doc = JsonDocument.Parse(get.Output[get.Output.IndexOf('{', StringComparison.Ordinal)..]))
        {
            Assert.Equal(converted, doc.RootElement.GetProperty("status").GetProperty("enforcedAs").GetString());
            Assert.Equal("workload", doc.RootElement.GetProperty("status").GetProperty("level").GetString());
        }

        await StepAsync(mesh, client, url, "no policies", "", [], []);
    }
}

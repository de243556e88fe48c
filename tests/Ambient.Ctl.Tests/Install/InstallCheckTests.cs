using System.Text.Json.Nodes;
using Ambient.Ctl.Cli;
using Ambient.Ctl.Install;
using Ambient.TestCommon;
using Ambient.TestCommon.Kube;
using k8s;

namespace Ambient.Ctl.Tests.Install;

/// <summary>
/// manifests/, `ambientctl install` and `ambientctl check` against the fake API server: kubectl applies the
/// kustomization (dry runs), install creates everything and the mesh CA, check passes once the workloads report ready
/// and fails, naming the part, when one is missing or not ready.
/// </summary>
public sealed class InstallCheckTests
{
    private static readonly string ManifestsFolder = Path.Combine(RepoPaths.Root, "manifests");

    // A cluster with nothing of the mesh, not even the security.istio.io kinds.
    private static Task<FakeKubeApiServer> StartBareAsync() =>
        FakeKubeApiServer.StartAsync(new FakeKubeApiServerOptions { IstioSecurity = false, GatewayApi = false });

    [Theory]
    [InlineData("client")]
    [InlineData("server")]
    public async Task Kubectl_applies_the_kustomization_dry_run(string dryRun)
    {
        Assert.SkipUnless(Kubectl.IsAvailable, "kubectl is not installed");
        await using var server = await StartBareAsync();
        using var kubectl = new Kubectl(server);
        if (dryRun == "server")
        {
            // As a real apiserver: a server-side dry run creates no namespace, so the namespaced objects need it to exist.
            server.Put("""{"apiVersion":"v1","kind":"Namespace","metadata":{"name":"istio-system"}}""");
        }
        var apply = await kubectl.RunAsync("apply", "-k", ManifestsFolder, "--dry-run=" + dryRun, "--validate=false");
        Assert.True(apply.ExitCode == 0, apply.ToString());
        Assert.Contains("daemonset.apps/ztunnel created", apply.StandardOutput);
        Assert.Contains("customresourcedefinition.apiextensions.k8s.io/peerauthentications.security.istio.io created", apply.StandardOutput);
        // A dry run stores nothing.
        Assert.Null(server.Get("apps/v1", "DaemonSet", "istio-system", "ztunnel"));
        Assert.Null(server.Get("apiextensions.k8s.io/v1", "CustomResourceDefinition", null, "peerauthentications.security.istio.io"));
    }

    [Fact]
    public async Task Kubectl_applies_the_kustomization_for_real()
    {
        Assert.SkipUnless(Kubectl.IsAvailable, "kubectl is not installed");
        await using var server = await StartBareAsync();
        using var kubectl = new Kubectl(server);
        var apply = await kubectl.RunAsync("apply", "-k", ManifestsFolder, "--validate=false");
        Assert.True(apply.ExitCode == 0, apply.ToString());
        Assert.NotNull(server.Get("apps/v1", "Deployment", "istio-system", "istiod"));
        // The CRDs it created serve their kinds: a policy applies next.
        var policies = await kubectl.RunAsync("get", "authorizationpolicies.security.istio.io", "-A");
        Assert.True(policies.ExitCode == 0, policies.ToString());
    }

    [Fact]
    public async Task Install_then_check_passes_once_the_workloads_are_ready()
    {
        await using var server = await StartBareAsync();
        PutGatewayApiCrds(server);
        using var client = server.CreateClient();

        var (installed, installOut, installErr) = await InstallAsync(client);
        Assert.True(installed == 0, installOut + installErr);
        Assert.Contains("DaemonSet istio-system/ztunnel created", installOut);
        Assert.Contains("Secret istio-system/cacerts created", installOut);
        var root = server.Get("v1", "ConfigMap", "istio-system", "istio-ca-root-cert")!["data"]!["root-cert.pem"]!.GetValue<string>();
        var secretRoot = Convert.FromBase64String(server.Get("v1", "Secret", "istio-system", "cacerts")!["data"]!["root-cert.pem"]!.GetValue<string>());
        Assert.Equal(root, System.Text.Encoding.ASCII.GetString(secretRoot));

        // No controllers run in the fake: nothing is ready yet, and check says which.
        var (notReady, _, notReadyErr) = await CheckAsync(client);
        Assert.Equal(ExitCodes.Failed, notReady);
        Assert.Contains("istiod-lite: 0/1 replicas ready", notReadyErr);
        Assert.Contains("ztunnel: scheduled on no node", notReadyErr);

        MarkReady(server);
        var (ok, okOut, okErr) = await CheckAsync(client);
        Assert.True(ok == ExitCodes.Ok, okOut + okErr);
        Assert.Contains("the mesh is ready", okOut);

        // Again: everything is updated in place, the CA stays.
        var (again, againOut, againErr) = await InstallAsync(client);
        Assert.True(again == 0, againOut + againErr);
        Assert.Contains("DaemonSet istio-system/ztunnel updated", againOut);
        Assert.DoesNotContain("cacerts created", againOut);
        Assert.Equal(root, server.Get("v1", "ConfigMap", "istio-system", "istio-ca-root-cert")!["data"]!["root-cert.pem"]!.GetValue<string>());
    }

    [Fact]
    public async Task Check_names_a_missing_ztunnel_daemonset_and_a_node_without_its_ztunnel()
    {
        await using var server = await StartBareAsync();
        PutGatewayApiCrds(server);
        using var client = server.CreateClient();
        Assert.Equal(0, (await InstallAsync(client)).Exit);
        MarkReady(server);

        SetDaemonSetStatus(server, "ztunnel", desired: 3, ready: 2);
        var (partial, _, partialErr) = await CheckAsync(client);
        Assert.Equal(ExitCodes.Failed, partial);
        Assert.Contains("ztunnel: 2/3 nodes ready", partialErr);
        Assert.DoesNotContain("node agent", partialErr);

        Assert.True(server.Delete("apps/v1", "DaemonSet", "istio-system", "ztunnel"));
        var (missing, _, missingErr) = await CheckAsync(client);
        Assert.Equal(ExitCodes.Failed, missing);
        Assert.Contains("ztunnel: DaemonSet istio-system/ztunnel is missing", missingErr);
        Assert.Contains("1 not ready", missingErr);
    }

    [Fact]
    public async Task Check_and_install_name_the_gateway_api_prerequisite_when_its_crds_are_missing()
    {
        await using var server = await StartBareAsync();
        using var client = server.CreateClient();
        var (installed, _, installErr) = await InstallAsync(client);
        Assert.Equal(0, installed);
        Assert.Contains("kubectl apply -f " + GatewayApi.StandardInstallUrl, installErr);
        MarkReady(server);

        var (exit, _, error) = await CheckAsync(client);
        Assert.Equal(ExitCodes.Failed, exit);
        Assert.Contains("CRD httproutes.gateway.networking.k8s.io: missing: Gateway API prerequisite: kubectl apply -f " + GatewayApi.StandardInstallUrl, error);
        Assert.Contains("3 not ready", error);
    }

    [Fact]
    public async Task Install_keeps_istios_own_security_crds()
    {
        await using var server = await StartBareAsync();
        PutGatewayApiCrds(server);
        server.Put(Crd("security.istio.io", "authorizationpolicies", "AuthorizationPolicy", "v1", labels: new JsonObject { ["app"] = "istio-pilot" }));
        using var client = server.CreateClient();

        var (installed, output, error) = await InstallAsync(client);
        Assert.True(installed == 0, output + error);
        Assert.Contains("CustomResourceDefinition authorizationpolicies.security.istio.io kept", output);
        Assert.Contains("CustomResourceDefinition peerauthentications.security.istio.io created", output);
        Assert.Equal("istio-pilot", server.Get("apiextensions.k8s.io/v1", "CustomResourceDefinition", null, "authorizationpolicies.security.istio.io")!["metadata"]!["labels"]!["app"]!.GetValue<string>());
    }

    [Fact]
    public async Task Check_without_a_reachable_cluster_fails_saying_so()
    {
        await using var server = await StartBareAsync();
        using var client = server.CreateClient(token: "not-a-token");
        var (exit, _, error) = await CheckAsync(client);
        Assert.Equal(ExitCodes.Failed, exit);
        Assert.Contains("check: Error from server (", error);
        Assert.Contains("Unauthorized", error);
    }

    private static async Task<(int Exit, string Output, string Error)> InstallAsync(IKubernetes client)
    {
        using var output = new StringWriter();
        using var error = new StringWriter();
        var exit = await InstallCommand.RunAsync(client, MeshManifests.LoadEmbedded(), "cluster.local", output, error, CancellationToken.None);
        return (exit, output.ToString(), error.ToString());
    }

    private static async Task<(int Exit, string Output, string Error)> CheckAsync(IKubernetes client)
    {
        using var output = new StringWriter();
        using var error = new StringWriter();
        var exit = await CheckCommand.RunAsync(client, output, error, new OutputStyle(200, Color: false), CancellationToken.None);
        return (exit, output.ToString(), error.ToString());
    }

    // What the Deployment and DaemonSet controllers would report on a two-node cluster with every pod ready.
    private static void MarkReady(FakeKubeApiServer server)
    {
        var istiod = server.Get("apps/v1", "Deployment", "istio-system", "istiod")!;
        istiod["status"] = new JsonObject { ["replicas"] = 1, ["readyReplicas"] = 1, ["availableReplicas"] = 1 };
        server.Put(istiod);
        SetDaemonSetStatus(server, "ztunnel", desired: 2, ready: 2);
        SetDaemonSetStatus(server, "ambient-node-agent", desired: 2, ready: 2);
    }

    private static void SetDaemonSetStatus(FakeKubeApiServer server, string name, int desired, int ready)
    {
        var daemonSet = server.Get("apps/v1", "DaemonSet", "istio-system", name)!;
        daemonSet["status"] = new JsonObject
        {
            ["desiredNumberScheduled"] = desired,
            ["currentNumberScheduled"] = desired,
            ["numberReady"] = ready,
            ["numberMisscheduled"] = 0,
        };
        server.Put(daemonSet);
    }

    // The three Gateway API CRDs istiod-lite needs, as the upstream standard-install.yaml would leave them.
    private static void PutGatewayApiCrds(FakeKubeApiServer server)
    {
        server.Put(Crd("gateway.networking.k8s.io", "gateways", "Gateway", "v1"));
        server.Put(Crd("gateway.networking.k8s.io", "httproutes", "HTTPRoute", "v1"));
        server.Put(Crd("gateway.networking.k8s.io", "referencegrants", "ReferenceGrant", "v1beta1"));
    }

    private static JsonObject Crd(string group, string plural, string kind, string version, JsonObject? labels = null) => new()
    {
        ["apiVersion"] = "apiextensions.k8s.io/v1",
        ["kind"] = "CustomResourceDefinition",
        ["metadata"] = new JsonObject { ["name"] = plural + "." + group, ["labels"] = labels ?? new JsonObject() },
        ["spec"] = new JsonObject
        {
            ["group"] = group,
            ["scope"] = "Namespaced",
            ["names"] = new JsonObject { ["plural"] = plural, ["kind"] = kind, ["singular"] = kind.ToLowerInvariant(), ["listKind"] = kind + "List" },
            ["versions"] = new JsonArray(new JsonObject
            {
                ["name"] = version,
                ["served"] = true,
                ["storage"] = true,
                ["schema"] = new JsonObject { ["openAPIV3Schema"] = new JsonObject { ["type"] = "object", ["x-kubernetes-preserve-unknown-fields"] = true } },
            }),
        },
        ["status"] = new JsonObject
        {
            ["conditions"] = new JsonArray(new JsonObject { ["type"] = "Established", ["status"] = "True", ["reason"] = "InitialNamesAccepted" }),
        },
    };
}

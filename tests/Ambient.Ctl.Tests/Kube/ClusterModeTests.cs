using System.Text.Json.Nodes;
using Ambient.Ctl.Cli;
using Ambient.Ctl.Kube;
using Ambient.Ctl.Waypoints;
using Ambient.TestCommon;
using Ambient.TestCommon.Kube;
using k8s;

namespace Ambient.Ctl.Tests.Kube;

/// <summary>
/// ambientctl in Kubernetes mode against the fake API server: `label namespace`, `waypoint apply|list|status|delete`
/// and `get` act on the cluster's objects through KubernetesClient, reached through a kubeconfig.
/// </summary>
public sealed class ClusterModeTests : IAsyncLifetime
{
    private static readonly OutputStyle Plain = new(200, false);
    private readonly TempDir _dir = new();
    private FakeKubeApiServer _server = null!;
    private KubeConnection _connection = null!;

    public async ValueTask InitializeAsync()
    {
        _server = await FakeKubeApiServer.StartAsync(new FakeKubeApiServerOptions { BookmarkInterval = null });
        _server.Put("""{"apiVersion":"v1","kind":"Namespace","metadata":{"name":"shop"}}""");
        _connection = new KubeConnection(_server.WriteKubeconfig(Path.Combine(_dir.Path, "kubeconfig")), null);
    }

    public async ValueTask DisposeAsync()
    {
        await _server.DisposeAsync();
        _dir.Dispose();
    }

    private Task<int> Run(string verb, StringWriter error, Func<k8s.IKubernetes, Task<int>> action) => ClusterCommands.RunAsync(_connection, verb, error, action);

    [Fact]
    public async Task Label_namespace_sets_and_removes_a_label_on_the_cluster_namespace()
    {
        var output = new StringWriter();
        var error = new StringWriter();
        Assert.Equal(ExitCodes.Ok, await LabelCommand.RunClusterAsync(_connection, "ns", "shop", "istio.io/dataplane-mode=ambient", output, error, default));
        Assert.Equal("ambient", _server.Get("v1", "Namespace", null, "shop")!["metadata"]!["labels"]!["istio.io/dataplane-mode"]!.GetValue<string>());
        Assert.Contains("namespace/shop labelled", output.ToString(), StringComparison.Ordinal);

        Assert.Equal(ExitCodes.Ok, await LabelCommand.RunClusterAsync(_connection, "namespace", "shop", "istio.io/dataplane-mode=ambient", output, error, default));
        Assert.Contains("namespace/shop unchanged", output.ToString(), StringComparison.Ordinal);

        Assert.Equal(ExitCodes.Ok, await LabelCommand.RunClusterAsync(_connection, "namespace", "shop", "istio.io/dataplane-mode-", output, error, default));
        Assert.Null(_server.Get("v1", "Namespace", null, "shop")!["metadata"]!["labels"]?["istio.io/dataplane-mode"]);

        Assert.Equal(ExitCodes.InvalidInput, await LabelCommand.RunClusterAsync(_connection, "namespace", "nosuch", "a=b", output, error, default));
        Assert.Contains("namespaces \"nosuch\" not found", error.ToString(), StringComparison.Ordinal);
        Assert.Null(_server.Get("v1", "Namespace", null, "nosuch"));
    }

    [Fact]
    public async Task Waypoint_apply_creates_the_istioctl_gateway_and_enrolls_the_namespace()
    {
        var output = new StringWriter();
        var error = new StringWriter();
        var code = await Run("waypoint apply", error, c => ClusterCommands.WaypointApplyAsync(c, new WaypointSpec("shop", "waypoint", "service"), true, output, error, default));
        Assert.True(code == ExitCodes.Ok, error.ToString());

        var gateway = _server.Get("gateway.networking.k8s.io/v1", "Gateway", "shop", "waypoint")!;
        Assert.Equal("istio-waypoint", gateway["spec"]!["gatewayClassName"]!.GetValue<string>());
        Assert.Equal("service", gateway["metadata"]!["labels"]!["istio.io/waypoint-for"]!.GetValue<string>());
        var listener = gateway["spec"]!["listeners"]![0]!;
        Assert.Equal(("mesh", 15008, "HBONE"), (listener["name"]!.GetValue<string>(), listener["port"]!.GetValue<int>(), listener["protocol"]!.GetValue<string>()));
        Assert.Equal("waypoint", _server.Get("v1", "Namespace", null, "shop")!["metadata"]!["labels"]!["istio.io/use-waypoint"]!.GetValue<string>());

        // Applying again brings the Gateway to the new shape.
        code = await Run("waypoint apply", error, c => ClusterCommands.WaypointApplyAsync(c, new WaypointSpec("shop", "waypoint", "all"), false, output, error, default));
        Assert.Equal(ExitCodes.Ok, code);
        Assert.Equal("all", _server.Get("gateway.networking.k8s.io/v1", "Gateway", "shop", "waypoint")!["metadata"]!["labels"]!["istio.io/waypoint-for"]!.GetValue<string>());

        code = await Run("waypoint apply", error, c => ClusterCommands.WaypointApplyAsync(c, new WaypointSpec("nosuch", "waypoint", "service"), false, output, error, default));
        Assert.Equal(ExitCodes.InvalidInput, code);
    }

    [Fact]
    public async Task Waypoint_wait_returns_once_the_gateway_is_programmed_and_times_out_with_the_reason()
    {
        var output = new StringWriter();
        var error = new StringWriter();
        var spec = new WaypointSpec("shop", "waypoint", "service");
        Assert.Equal(ExitCodes.Ok, await Run("waypoint apply", error, c => ClusterCommands.WaypointApplyAsync(c, spec, false, output, error, default)));

        Assert.Equal(ExitCodes.Failed, await Run("waypoint apply", error, c =>
            WaypointCommand.WaitAsync(new ClusterWaypointReadiness(c), spec, TimeSpan.FromMilliseconds(300), output, error, default)));
        Assert.Contains("no Programmed condition yet", error.ToString(), StringComparison.Ordinal);

        var waiting = Run("waypoint apply", error, c => WaypointCommand.WaitAsync(new ClusterWaypointReadiness(c), spec, TimeSpan.FromSeconds(20), output, error, default));
        await Task.Delay(300);
        Assert.False(waiting.IsCompleted);
        ProgramGateway("shop", "waypoint");
        Assert.Equal(ExitCodes.Ok, await waiting);
        Assert.Contains("waypoint shop/waypoint is serving (Programmed)", output.ToString(), StringComparison.Ordinal);
    }

    [Fact]
    public async Task Waypoint_list_status_and_delete_act_on_waypoint_gateways_only()
    {
        var output = new StringWriter();
        var error = new StringWriter();
        Assert.Equal(ExitCodes.Ok, await Run("waypoint apply", error, c => ClusterCommands.WaypointApplyAsync(c, new WaypointSpec("shop", "waypoint", "service"), false, output, error, default)));
        Assert.Equal(ExitCodes.Ok, await Run("waypoint apply", error, c => ClusterCommands.WaypointApplyAsync(c, new WaypointSpec("shop", "second", "workload"), false, output, error, default)));
        _server.Put("""{"apiVersion":"gateway.networking.k8s.io/v1","kind":"Gateway","metadata":{"name":"ingress","namespace":"shop"},"spec":{"gatewayClassName":"istio","listeners":[{"name":"http","port":80,"protocol":"HTTP"}]}}""");
        ProgramGateway("shop", "waypoint");

        var list = new StringWriter();
        Assert.Equal(ExitCodes.Ok, await Run("waypoint list", error, c => ClusterCommands.WaypointListAsync(c, "shop", list, Plain, default)));
        var lines = list.ToString().Split('\n', StringSplitOptions.RemoveEmptyEntries);
        Assert.Equal(3, lines.Length);
        Assert.Matches(@"^second\s+workload\s+-", lines[1]);
        Assert.Matches(@"^waypoint\s+service\s+True", lines[2]);

        var status = new StringWriter();
        Assert.Equal(ExitCodes.Failed, await Run("waypoint status", error, c => ClusterCommands.WaypointStatusAsync(c, "shop", null, status, error, Plain, default)));
        Assert.Matches(@"shop\s+waypoint\s+Serving", status.ToString());
        Assert.Matches(@"shop\s+second\s+NotServing", status.ToString());

        Assert.Equal(ExitCodes.Failed, await Run("waypoint delete", error, c => ClusterCommands.WaypointDeleteAsync(c, "shop", ["ingress"], false, output, error, default)));
        Assert.NotNull(_server.Get("gateway.networking.k8s.io/v1", "Gateway", "shop", "ingress"));
        Assert.Equal(ExitCodes.Ok, await Run("waypoint delete", error, c => ClusterCommands.WaypointDeleteAsync(c, "shop", [], true, output, error, default)));
        Assert.Null(_server.Get("gateway.networking.k8s.io/v1", "Gateway", "shop", "waypoint"));
        Assert.Null(_server.Get("gateway.networking.k8s.io/v1", "Gateway", "shop", "second"));
        Assert.NotNull(_server.Get("gateway.networking.k8s.io/v1", "Gateway", "shop", "ingress"));
    }

    [Fact]
    public async Task Get_lists_cluster_objects_in_the_local_tables_and_prints_them_as_the_api_returns_them()
    {
        _server.Put("""
            {"apiVersion":"v1","kind":"Pod","metadata":{"name":"web-1","namespace":"shop","labels":{"app":"web"}},
             "spec":{"nodeName":"node-a","serviceAccountName":"default","containers":[{"name":"web","image":"web:1"}]},
             "status":{"phase":"Running","podIP":"10.1.0.7","containerStatuses":[{"name":"web","ready":true,"restartCount":2}]}}
            """);
        var output = new StringWriter();
        var error = new StringWriter();
        var table = new GetCommand.GetRequest("pods", null, "shop", null);
        Assert.Equal(ExitCodes.Ok, await Run("get", error, c => ClusterCommands.GetAsync(c, table, output, error, Plain, default)));
        Assert.True(error.ToString().Length == 0, error.ToString());
        Assert.Matches(@"web-1\s+1/1\s+Running\s+2\s+10\.1\.0\.7\s+node-a", output.ToString());

        var json = new StringWriter();
        Assert.Equal(ExitCodes.Ok, await Run("get", error, c => ClusterCommands.GetAsync(c, new GetCommand.GetRequest("po", "web-1", "shop", "json"), json, error, Plain, default)));
        var pod = JsonNode.Parse(json.ToString())!;
        Assert.Equal("Pod", pod["kind"]!.GetValue<string>());
        Assert.Equal("10.1.0.7", pod["status"]!["podIP"]!.GetValue<string>());

        var namespaces = new StringWriter();
        Assert.Equal(ExitCodes.Ok, await Run("get", error, c => ClusterCommands.GetAsync(c, new GetCommand.GetRequest("ns", null, null, null), namespaces, error, Plain, default)));
        Assert.Contains("shop", namespaces.ToString(), StringComparison.Ordinal);
        Assert.Contains("kube-system", namespaces.ToString(), StringComparison.Ordinal);

        Assert.Equal(ExitCodes.Failed, await Run("get", error, c => ClusterCommands.GetAsync(c, new GetCommand.GetRequest("pods", "nosuch", "shop", null), output, error, Plain, default)));
        Assert.Contains("pods \"nosuch\" not found", error.ToString(), StringComparison.Ordinal);
    }

    [Fact]
    public async Task The_kubeconfig_context_selects_the_cluster_and_flags_select_kubernetes_mode()
    {
        var error = new StringWriter();
        var wrongContext = new KubeConnection(_connection.Kubeconfig, "nosuch");
        Assert.Equal(ExitCodes.InvalidInput, await ClusterCommands.RunAsync(wrongContext, "get", error, _ => Task.FromResult(ExitCodes.Ok)));
        Assert.Contains("get: kubeconfig:", error.ToString(), StringComparison.Ordinal);

        var named = new KubeConnection(_connection.Kubeconfig, "fake");
        Assert.Equal(ExitCodes.Ok, await ClusterCommands.RunAsync(named, "get", error, async c => (await c.CoreV1.ListNamespaceAsync()).Items.Count > 0 ? ExitCodes.Ok : ExitCodes.Failed));

        var missing = new KubeConnection(Path.Combine(_dir.Path, "missing"), null);
        Assert.Equal(ExitCodes.InvalidInput, await ClusterCommands.RunAsync(missing, "get", error, _ => Task.FromResult(ExitCodes.Ok)));
        Assert.Contains("not found", error.ToString(), StringComparison.Ordinal);

        Assert.True(MeshTarget.UseCluster(null, _connection));
        Assert.True(MeshTarget.UseCluster("mesh-folder", new KubeConnection(null, "fake")));
        Assert.False(MeshTarget.UseCluster("mesh-folder", new KubeConnection(null, null)));

        // $KUBECONFIG's files that exist, before ~/.kube/config.
        var a = _dir.Write("a", "");
        var fromEnvironment = new KubeConnection(null, null).KubeconfigFiles(
            name => name == "KUBECONFIG" ? a + Path.PathSeparator + Path.Combine(_dir.Path, "b") : null, _dir.Path);
        Assert.Equal([a], fromEnvironment);
        Assert.Empty(new KubeConnection(null, null).KubeconfigFiles(_ => null, _dir.Path));
    }

    private void ProgramGateway(string ns, string name)
    {
        var gateway = _server.Get("gateway.networking.k8s.io/v1", "Gateway", ns, name)!;
        gateway["status"] = JsonNode.Parse("""{"conditions":[{"type":"Programmed","status":"True","reason":"Programmed"}]}""");
        _server.Put(gateway);
    }
}

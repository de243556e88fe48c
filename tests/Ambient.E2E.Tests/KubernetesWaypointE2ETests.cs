using System.Diagnostics;
using System.Net;
using System.Text.Json.Nodes;

namespace Ambient.E2E.Tests;

/// <summary>
/// A waypoint in Kubernetes mode end to end: istiod-lite creates the waypoint Gateway's Deployment and Service on the
/// fake API server; the test plays the cluster (the Deployment's pod, a pod-bound projected token, a ClusterIP) and
/// runs the waypoint process as that pod; HTTP from client-1 to Service shop goes ztunnel → waypoint → the backend
/// its HTTPRoute picks by header.
/// </summary>
public sealed class KubernetesWaypointE2ETests(KubernetesWaypointFixture mesh) : IClassFixture<KubernetesWaypointFixture>
{
    private static readonly TimeSpan Patience = TimeSpan.FromSeconds(30);

    [Fact]
    public async Task Http_to_a_service_goes_through_the_waypoint_pod_the_cluster_runs_and_follows_its_route()
    {
        using var client = mesh.Client();
        var url = KubernetesMeshFixture.Url("shop");
        Assert.Equal("echo-v2-1", await EventuallyGetAsync(client, url, ("x-version", "v2")));
        Assert.Equal("echo-1", await EventuallyGetAsync(client, url));

        // The waypoint served it, for the client's identity (its metrics, on the waypoint pod's admin port).
        var ns = KubernetesMeshFixture.Namespace;
        string[] labels = ["reporter=\"waypoint\"", $"source_principal=\"spiffe://cluster.local/ns/{ns}/sa/client\"",
            "response_code=\"200\""];
        await MeshRun.EventuallyAsync(async () => MeshRun.Sum(await mesh.WaypointMetricsAsync(), "istio_requests_total", labels) > 0,
            Patience, async () => "the waypoint reports no request from client:\n" + await mesh.WaypointMetricsAsync() + mesh.Logs());

        // istiod-lite reports the Gateway Programmed, running as the cluster's pod.
        await MeshRun.EventuallyAsync(() => Task.FromResult(Programmed() is { } c && c["status"]!.GetValue<string>() == "True"), Patience,
            () => Task.FromResult("Gateway wp is not Programmed: " + Programmed()?.ToJsonString() + "\n" + mesh.Logs()));
        Assert.Contains(mesh.WaypointPod, Programmed()!["message"]!.GetValue<string>(), StringComparison.Ordinal);
    }

    private JsonNode? Programmed() =>
        mesh.Api.Get("gateway.networking.k8s.io/v1", "Gateway", KubernetesMeshFixture.Namespace, "wp")?["status"]?["conditions"]?.AsArray()
            .FirstOrDefault(c => c!["type"]!.GetValue<string>() == "Programmed");

    /// <summary>Retries until answered: the waypoint has to get its certificate and config first.</summary>
    private async Task<string> EventuallyGetAsync(MeshRun.PodClient client, string url, params (string, string)[] headers)
    {
        var sw = Stopwatch.StartNew();
        while (true)
        {
            try
            {
                return await client.GetAsync(url, TestContext.Current.CancellationToken, headers);
            }
            catch (Exception e) when (e is HttpRequestException or TaskCanceledException && sw.Elapsed < Patience)
            {
                await Task.Delay(200, TestContext.Current.CancellationToken);
            }
            catch (Exception e) when (e is HttpRequestException or TaskCanceledException)
            {
                Assert.Fail($"{url} never answered: {e.Message}\n{mesh.Logs()}");
                throw;
            }
        }
    }
}

/// <summary>
/// <see cref="KubernetesMeshFixture"/>'s cluster plus a waypoint Gateway wp, a Service shop that uses it, a second
/// backend echo-v2 and an HTTPRoute sending <c>x-version: v2</c> there and everything else to echo.
/// </summary>
public sealed class KubernetesWaypointFixture : KubernetesMeshFixture
{
    /// <summary>The waypoint pod's name, as its ReplicaSet would name it.</summary>
    internal string WaypointPod => "wp-5f7c9d8b6d-k2x7q";

    private string WaypointAddress => PodAddress(5);

    private protected override void SeedCluster()
    {
        foreach (var sa in new[] { "echo-v2", "wp" })
        {
            Api.Put(Json(Fill("""{"apiVersion":"v1","kind":"ServiceAccount","metadata":{"name":"%0%","namespace":"%1%"}}""", sa, Namespace)));
        }
        Api.Put(Pod("echo-v2-1", "echo-v2", "echo-v2", Node2, PodAddress(4)));
        Api.Put(Service("echo-v2", "echo-v2", ServiceAddress(5)));
        Api.Put(Json(Fill("""
            {"apiVersion":"v1","kind":"Service","metadata":{"name":"shop","namespace":"%0%","labels":{"istio.io/use-waypoint":"wp"}},
             "spec":{"clusterIP":"%1%","clusterIPs":["%2%"],"selector":{"app":"echo"},"ports":[{"name":"http","port":80,"targetPort":8080}]}}
            """, Namespace, ServiceAddress(6), ServiceAddress(6))));
        Api.Put(Json(Fill("""
            {"apiVersion":"gateway.networking.k8s.io/v1","kind":"Gateway","metadata":{"name":"wp","namespace":"%0%","labels":{"istio.io/waypoint-for":"service"}},
             "spec":{"gatewayClassName":"istio-waypoint","listeners":[{"name":"mesh","port":15008,"protocol":"HBONE"}]}}
            """, Namespace)));
        Api.Put(Json(Fill("""
            {"apiVersion":"gateway.networking.k8s.io/v1","kind":"HTTPRoute","metadata":{"name":"shop","namespace":"%0%"},
             "spec":{"parentRefs":[{"group":"","kind":"Service","name":"shop","port":80}],
                     "rules":[{"matches":[{"headers":[{"name":"x-version","value":"v2"}]}],"backendRefs":[{"name":"echo-v2","port":80}]},
                              {"backendRefs":[{"name":"echo","port":80}]}]}}
            """, Namespace)));
    }

    private protected override async Task StartedAsync(int istiodPort, string state, CancellationToken ct)
    {
        StartEcho("echo-v2-1", "echo-v2", PodAddress(4));

        // istiod-lite creates the waypoint's Deployment and Service; the cluster would then give the Service a
        // ClusterIP and schedule the Deployment's pod. The test does both.
        JsonObject? deployment = null;
        await MeshRun.EventuallyAsync(() => Task.FromResult((deployment = Api.Get("apps/v1", "Deployment", Namespace, "wp")) is not null),
            TimeSpan.FromSeconds(30), () => Task.FromResult("istiod-lite created no Deployment for Gateway wp:\n" + Logs()));
        JsonObject? service = null;
        await MeshRun.EventuallyAsync(() => Task.FromResult((service = Api.Get("v1", "Service", Namespace, "wp")) is not null),
            TimeSpan.FromSeconds(30), () => Task.FromResult("istiod-lite created no Service for Gateway wp:\n" + Logs()));
        service!["spec"]!["clusterIP"] = ServiceAddress(7);
        service["spec"]!["clusterIPs"] = new JsonArray(ServiceAddress(7));
        Api.Put(service);

        var template = deployment!["spec"]!["template"]!;
        var uid = Guid.NewGuid().ToString();
        var pod = new JsonObject
        {
            ["apiVersion"] = "v1",
            ["kind"] = "Pod",
            ["metadata"] = new JsonObject
            {
                ["name"] = WaypointPod,
                ["namespace"] = Namespace,
                ["uid"] = uid,
                ["labels"] = template["metadata"]!["labels"]!.DeepClone(),
            },
            ["spec"] = template["spec"]!.DeepClone(),
            ["status"] = Json(Fill("""
                {"phase":"Running","podIP":"%0%","podIPs":[{"ip":"%1%"}],"conditions":[{"type":"Ready","status":"True"}]}
                """, WaypointAddress, WaypointAddress)),
        };
        pod["spec"]!["nodeName"] = Node1;
        Api.Put(pod);

        // The container's arguments, with what the kubelet would fill in: the downward API's values, the projected
        // token bound to this pod, the root from ConfigMap istio-ca-root-cert, istiod-lite's address.
        var container = template["spec"]!["containers"]![0]!;
        var tokenFile = Path.Combine(TempPath, "tokens", WaypointPod, "istio-token");
        Directory.CreateDirectory(Path.GetDirectoryName(tokenFile)!);
        File.WriteAllText(tokenFile, ProjectedTokens.Add(Api, Namespace, "wp", WaypointPod, uid, Node1));
        var args = new List<string>();
        foreach (var a in container["args"]!.AsArray())
        {
            args.Add(a!.GetValue<string>() switch
            {
                "$(NODE_NAME)" => Node1,
                "$(POD_NAMESPACE)" => Namespace,
                "$(POD_NAME)" => WaypointPod,
                "$(INSTANCE_IP)" => WaypointAddress,
                "/var/run/secrets/tokens/istio-token" => tokenFile,
                "/var/run/secrets/istio/root-cert.pem" => Path.Combine(state, "root-cert.pem"),
                WaypointIstiodDefault => $"https://127.0.0.1:{istiodPort}",
                var other => other,
            });
        }
        Started("waypoint-wp", Processes.Start("waypoint", args));
        var ready = $"http://{WaypointAddress}:15021/healthz/ready";
        await MeshRun.EventuallyAsync(() => MeshRun.HttpOkAsync(ready), TimeSpan.FromSeconds(60), () => Task.FromResult($"{ready} never answered OK:\n" + Logs()));
    }

    private const string WaypointIstiodDefault = "https://istiod.istio-system.svc:15012";

    internal Task<string> WaypointMetricsAsync() =>
        MeshRun.Plain.GetStringAsync($"http://{WaypointAddress}:15021/stats/prometheus", TestContext.Current.CancellationToken);
}

using System.Text.Json.Nodes;
using Ambient.Core.Protos.Discovery;
using Ambient.Core.Protos.Workload;
using Ambient.Core.Xds;
using Ambient.Istiod.Ca;
using Ambient.Istiod.Tests.Functional;
using Ambient.TestCommon;
using Ambient.TestCommon.Kube;
using Grpc.Core;
using Microsoft.Extensions.Logging;
using Xunit;
using static Ambient.Istiod.Tests.Kube.KubernetesConfigSourceTests;

namespace Ambient.Istiod.Tests.Kube;

/// <summary>
/// istiod-lite started as `--config-source kubernetes --kubeconfig FILE` (the options Program parses, the host it runs)
/// against the fake API server: it serves ztunnel xDS from the cluster's pods and writes Gateway API status back, and
/// acts as Istio's gateway deployment controller for class istio-waypoint: each waypoint Gateway gets a ServiceAccount,
/// Deployment and Service named after it, owned by it, applied once and again only when the Gateway changes, and
/// deleted with it.
/// </summary>
public sealed class KubernetesModeIstiodTests : IAsyncLifetime
{
    private static readonly TimeSpan Patience = TimeSpan.FromSeconds(20);
    private readonly TempDir _dir = new();
    private FakeKubeApiServer _server = null!;
    private IstiodHost _host = null!;

    public async ValueTask InitializeAsync()
    {
        _server = await FakeKubeApiServer.StartAsync(cancellationToken: TestContext.Current.CancellationToken);
        _server.Put(Objects.Namespace("shop"));
        _server.Put(Objects.ServiceAccount("shop", "web"));
        _server.Put(Objects.Pod("shop", "web-1", "10.244.1.7"));
        _server.Put(Objects.Service("shop", "web", "10.96.0.10", waypoint: "waypoint"));
        _server.Put(Objects.Gateway("shop", "waypoint"));
        _server.Put(Objects.HttpRoute("shop", "route"));
        var kubeconfig = _server.WriteKubeconfig(Path.Combine(_dir.Path, "kubeconfig"));
        var options = IstiodOptions.TryParse(["--config-source", "kubernetes", "--kubeconfig", kubeconfig, "--state", Path.Combine(_dir.Path, "state"),
            "--listen", "127.0.0.1:0", "--monitoring", "off", "--waypoint-image", "registry.test/waypoint:1", "--waypoint-istiod", "https://istiod.mesh.svc:15012"],
            out var error);
        Assert.True(options is not null, error);
        _host = await IstiodHost.StartAsync(options, l => l.SetMinimumLevel(LogLevel.Warning), TestContext.Current.CancellationToken);
    }

    public async ValueTask DisposeAsync()
    {
        if (_host is not null) await _host.DisposeAsync();
        if (_server is not null) await _server.DisposeAsync();
        _dir.Dispose();
    }

    [Fact]
    public async Task Serves_the_clusters_pods_to_a_ztunnel_and_pushes_a_pod_update()
    {
        // Kubernetes mode authenticates by TokenReview: the caller is web-1 itself, with a token bound to its pod.
        var uid = _server.Get("v1", "Pod", "shop", "web-1")!["metadata"]!["uid"]!.GetValue<string>();
        var token = _server.AddServiceAccountToken("shop", "web", ["istio-ca"], podName: "web-1", podUid: uid, nodeName: "node-a");
        using var client = new IstiodGrpcClient(_host.RootCertificatePath, $"127.0.0.1:{_host.GrpcEndpoint.Port}");
        using var call = client.StartDiscovery(IstiodGrpcClient.BearerOf(token));
        await call.RequestStream.WriteAsync(new DeltaDiscoveryRequest { TypeUrl = XdsTypeUrls.Address, ResourceNamesSubscribe = { "*" } }, TestContext.Current.CancellationToken);

        var first = Workloads(await NextAsync(call));
        var web = first["Kubernetes//Pod/shop/web-1"];
        Assert.Equal("10.244.1.7", new System.Net.IPAddress(web.Addresses[0].Span).ToString());
        Assert.Equal(("node-a", TunnelProtocol.Hbone, WorkloadStatus.Healthy), (web.Node, web.TunnelProtocol, web.Status));

        // The kubelet reports the pod not ready: ztunnels are told at once.
        _server.Put(Objects.Pod("shop", "web-1", "10.244.1.7", ready: false));
        // Other pushes may come first: the waypoint Deployment controller's own objects (its Service) arrive as changes too.
        Workload? updated = null;
        for (var push = 0; push < 5 && updated is null; push++)
        {
            Workloads(await NextAsync(call)).TryGetValue("Kubernetes//Pod/shop/web-1", out updated);
        }
        Assert.NotNull(updated);
        Assert.Equal(WorkloadStatus.Unhealthy, updated.Status);
    }

    [Fact]
    public async Task Writes_gateway_and_route_status_once_and_not_again_when_unchanged()
    {
        var gateway = await WaitForStatusAsync("Gateway", "waypoint", s => s["conditions"] is JsonArray { Count: > 0 });
        var accepted = gateway["conditions"]!.AsArray().Single(c => c!["type"]!.GetValue<string>() == "Accepted")!;
        Assert.Equal("True", accepted["status"]!.GetValue<string>());
        Assert.Equal(1, accepted["observedGeneration"]!.GetValue<long>());
        var route = await WaitForStatusAsync("HTTPRoute", "route", s => s["parents"] is JsonArray { Count: > 0 });
        var parent = route["parents"]![0]!;
        Assert.Equal("istio.io/mesh-controller", parent["controllerName"]!.GetValue<string>());
        Assert.Equal("web", parent["parentRef"]!["name"]!.GetValue<string>());
        Assert.Contains(parent["conditions"]!.AsArray(), c => c!["type"]!.GetValue<string>() == "Accepted" && c["status"]!.GetValue<string>() == "True");

        var writer = _host.StatusWriter!;
        await writer.Idle.WaitAsync(Patience, TestContext.Current.CancellationToken);
        var writes = writer.Writes;
        Assert.Equal(2, writes);

        // A change elsewhere in the mesh republishes; the status of both objects is the same, so nothing is written.
        var generation = _host.Config.Current.Generation;
        _server.Put(Objects.Pod("shop", "web-2", "10.244.1.8"));
        await _host.Config.WaitForGenerationAsync(generation + 1, TestContext.Current.CancellationToken).WaitAsync(Patience, TestContext.Current.CancellationToken);
        await Task.Delay(200, TestContext.Current.CancellationToken);
        await writer.Idle.WaitAsync(Patience, TestContext.Current.CancellationToken);
        Assert.Equal(writes, writer.Writes);
        Assert.Equal(2, _server.Requests.Count(r => r.StartsWith("PATCH ", StringComparison.Ordinal) && r.Contains("/status", StringComparison.Ordinal)));
    }

    [Fact]
    public async Task Creates_the_service_account_deployment_and_service_of_a_waypoint_owned_by_its_gateway()
    {
        var deployment = await WaitForAsync("apps/v1", "Deployment", "waypoint", _ => true);
        // Applied one after another: the last (the root ConfigMap) says all are there.
        await WaitForAsync("v1", "ConfigMap", "istio-ca-root-cert", _ => true);
        var gatewayUid = _server.Get("gateway.networking.k8s.io/v1", "Gateway", "shop", "waypoint")!["metadata"]!["uid"]!.GetValue<string>();
        foreach (var (apiVersion, kind) in new[] { ("v1", "ServiceAccount"), ("apps/v1", "Deployment"), ("v1", "Service") })
        {
            var o = _server.Get(apiVersion, kind, "shop", "waypoint");
            Assert.True(o is not null, $"no {kind} shop/waypoint");
            var owner = o["metadata"]!["ownerReferences"]![0]!;
            Assert.Equal(("Gateway", "waypoint", gatewayUid), (owner["kind"]!.GetValue<string>(), owner["name"]!.GetValue<string>(), owner["uid"]!.GetValue<string>()));
            Assert.Equal("waypoint", o["metadata"]!["labels"]!["gateway.networking.k8s.io/gateway-name"]!.GetValue<string>());
            Assert.Equal("waypoint", o["metadata"]!["labels"]!["istio.io/gateway-name"]!.GetValue<string>());
        }

        var pod = deployment["spec"]!["template"]!;
        Assert.Equal("waypoint", pod["metadata"]!["labels"]!["gateway.networking.k8s.io/gateway-name"]!.GetValue<string>());
        Assert.Equal("none", pod["metadata"]!["labels"]!["istio.io/dataplane-mode"]!.GetValue<string>());
        Assert.Equal("waypoint", pod["spec"]!["serviceAccountName"]!.GetValue<string>());
        var container = pod["spec"]!["containers"]![0]!;
        Assert.Equal("registry.test/waypoint:1", container["image"]!.GetValue<string>());
        var args = container["args"]!.AsArray().Select(a => a!.GetValue<string>()).ToList();
        Assert.Equal("https://istiod.mesh.svc:15012", args[args.IndexOf("--istiod") + 1]);
        Assert.Equal("/var/run/secrets/tokens/istio-token", args[args.IndexOf("--ca-token-file") + 1]);
        Assert.Equal("waypoint", args[args.IndexOf("--name") + 1]);
        Assert.Equal("$(POD_NAME)", args[args.IndexOf("--pod-name") + 1]);
        var token = pod["spec"]!["volumes"]!.AsArray().Single(v => v!["name"]!.GetValue<string>() == "istio-token")!;
        Assert.Equal("istio-ca", token["projected"]!["sources"]![0]!["serviceAccountToken"]!["audience"]!.GetValue<string>());

        var service = _server.Get("v1", "Service", "shop", "waypoint")!;
        var ports = service["spec"]!["ports"]!.AsArray().Select(p => p!["port"]!.GetValue<int>()).Order().ToArray();
        Assert.Equal([15008, 15021], ports);
        Assert.Equal("waypoint", service["spec"]!["selector"]!["gateway.networking.k8s.io/gateway-name"]!.GetValue<string>());
        // The waypoint pod mounts the mesh root from its own namespace.
        var root = _server.Get("v1", "ConfigMap", "shop", "istio-ca-root-cert")!;
        Assert.Equal(File.ReadAllText(_host.RootCertificatePath), root["data"]!["root-cert.pem"]!.GetValue<string>());
    }

    [Fact]
    public async Task Applies_once_and_not_again_while_the_gateway_is_unchanged_then_again_when_it_changes()
    {
        await WaitForAsync("apps/v1", "Deployment", "waypoint", _ => true);
        var controller = _host.WaypointDeployments!;
        await controller.Idle.WaitAsync(Patience, TestContext.Current.CancellationToken);
        Assert.Equal(1, Patches("deployments"));
        Assert.Equal(1, Patches("services"));
        Assert.Equal(1, Patches("serviceaccounts"));
        var writes = controller.Writes;

        // Another change in the mesh publishes a new config; the waypoint's objects are what they were: no write.
        var generation = _host.Config.Current.Generation;
        _server.Put(Objects.Pod("shop", "web-2", "10.244.1.8"));
        await _host.Config.WaitForGenerationAsync(generation + 1, TestContext.Current.CancellationToken).WaitAsync(Patience, TestContext.Current.CancellationToken);
        await Task.Delay(200, TestContext.Current.CancellationToken);
        await controller.Idle.WaitAsync(Patience, TestContext.Current.CancellationToken);
        Assert.Equal(writes, controller.Writes);
        Assert.Equal(1, Patches("deployments"));

        // The Gateway's labels change: they are carried onto its objects, so each is applied again.
        _server.Put(Objects.Gateway("shop", "waypoint", rev: "2"));
        var updated = await WaitForAsync("apps/v1", "Deployment", "waypoint", d => d["metadata"]!["labels"]!["rev"]?.GetValue<string>() == "2");
        Assert.Equal("waypoint", updated["spec"]!["template"]!["metadata"]!["labels"]!["gateway.networking.k8s.io/gateway-name"]!.GetValue<string>());
        await controller.Idle.WaitAsync(Patience, TestContext.Current.CancellationToken);
        Assert.Equal(2, Patches("deployments"));
        Assert.Equal(2, Patches("services"));
    }

    [Fact]
    public async Task Deletes_the_objects_when_the_gateway_is_deleted()
    {
        await WaitForAsync("apps/v1", "Deployment", "waypoint", _ => true);
        _server.Delete("gateway.networking.k8s.io/v1", "Gateway", "shop", "waypoint");
        var deadline = DateTime.UtcNow + Patience;
        while (_server.Get("apps/v1", "Deployment", "shop", "waypoint") is not null || _server.Get("v1", "Service", "shop", "waypoint") is not null
            || _server.Get("v1", "ServiceAccount", "shop", "waypoint") is not null)
        {
            Assert.True(DateTime.UtcNow < deadline, "the waypoint's objects outlived its Gateway");
            await Task.Delay(20, TestContext.Current.CancellationToken);
        }
        // The user's own Service is untouched.
        Assert.NotNull(_server.Get("v1", "Service", "shop", "web"));
    }

    private int Patches(string plural) =>
        _server.Requests.Count(r => r.StartsWith("PATCH ", StringComparison.Ordinal) && r.Contains("/namespaces/shop/" + plural + "/waypoint", StringComparison.Ordinal));

    private async Task<JsonObject> WaitForAsync(string apiVersion, string kind, string name, Func<JsonObject, bool> condition)
    {
        var deadline = DateTime.UtcNow + Patience;
        while (true)
        {
            if (_server.Get(apiVersion, kind, "shop", name) is { } o && condition(o)) return o;
            Assert.True(DateTime.UtcNow < deadline, $"no {kind} shop/{name} as expected: {_server.Get(apiVersion, kind, "shop", name)?.ToJsonString()}");
            await Task.Delay(20, TestContext.Current.CancellationToken);
        }
    }

    private async Task<JsonObject> WaitForStatusAsync(string kind, string name, Func<JsonObject, bool> condition)
    {
        var deadline = DateTime.UtcNow + Patience;
        while (true)
        {
            if (_server.Get("gateway.networking.k8s.io/v1", kind, "shop", name)?["status"] is JsonObject status && condition(status)) return status;
            Assert.True(DateTime.UtcNow < deadline, $"no status written to {kind} shop/{name}");
            await Task.Delay(20, TestContext.Current.CancellationToken);
        }
    }

    private static async Task<DeltaDiscoveryResponse> NextAsync(AsyncDuplexStreamingCall<DeltaDiscoveryRequest, DeltaDiscoveryResponse> call)
    {
        Assert.True(await call.ResponseStream.MoveNext(TestContext.Current.CancellationToken).WaitAsync(Patience, TestContext.Current.CancellationToken));
        var response = call.ResponseStream.Current;
        await call.RequestStream.WriteAsync(new DeltaDiscoveryRequest { TypeUrl = response.TypeUrl, ResponseNonce = response.Nonce }, TestContext.Current.CancellationToken);
        return response;
    }

    private static Dictionary<string, Workload> Workloads(DeltaDiscoveryResponse response)
    {
        var result = new Dictionary<string, Workload>(StringComparer.Ordinal);
        foreach (var r in response.Resources)
        {
            var address = Address.Parser.ParseFrom(r.Resource_.Value);
            if (address.Workload is { } w) result[w.Uid] = w;
        }
        return result;
    }
}

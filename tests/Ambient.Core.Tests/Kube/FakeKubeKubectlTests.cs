using System.Text.Json.Nodes;
using Ambient.TestCommon;
using Ambient.TestCommon.Kube;

namespace Ambient.Core.Tests.Kube;

/// <summary>
/// The fake API server is faithful where it counts: the real kubectl (1.32) lists, gets, applies, patches, deletes
/// and watches against it as against a cluster, built-in and CRD-backed kinds alike.
/// </summary>
public sealed class FakeKubeKubectlTests
{
    private const string Manifest = """
        apiVersion: v1
        kind: Namespace
        metadata:
          name: shop
          labels:
            istio.io/dataplane-mode: ambient
        ---
        apiVersion: v1
        kind: Service
        metadata:
          name: reviews
          namespace: shop
        spec:
          selector:
            app: reviews
          ports:
          - name: http
            port: 9080
        ---
        apiVersion: gateway.networking.k8s.io/v1
        kind: HTTPRoute
        metadata:
          name: reviews
          namespace: shop
        spec:
          parentRefs:
          - group: ""
            kind: Service
            name: reviews
            port: 9080
          rules:
          - backendRefs:
            - name: reviews
              port: 9080
        """;

    [Fact]
    public async Task Kubectl_applies_gets_and_lists_builtin_and_crd_kinds()
    {
        Assert.SkipUnless(Kubectl.IsAvailable, "kubectl is not installed");
        await using var server = await FakeKubeApiServer.StartAsync();
        using var kubectl = new Kubectl(server);
        using var dir = new TempDir();
        var file = dir.Write("shop.yaml", Manifest);

        var apply = await kubectl.RunAsync("apply", "--validate=false", "-f", file);
        Assert.True(apply.ExitCode == 0, apply.ToString());
        Assert.Contains("namespace/shop created", apply.StandardOutput, StringComparison.Ordinal);
        Assert.Contains("httproute.gateway.networking.k8s.io/reviews created", apply.StandardOutput, StringComparison.Ordinal);

        var route = server.Get("gateway.networking.k8s.io/v1", "HTTPRoute", "shop", "reviews");
        Assert.NotNull(route);
        Assert.Equal("reviews", route["spec"]!["parentRefs"]![0]!["name"]!.GetValue<string>());

        // A second apply with a change goes through the patch path and reports what changed.
        var again = await kubectl.RunAsync("apply", "--validate=false", "-f", dir.Write("shop.yaml", Manifest.Replace("port: 9080\n---", "port: 9081\n---", StringComparison.Ordinal)));
        Assert.True(again.ExitCode == 0, again.ToString());
        Assert.Contains("service/reviews configured", again.StandardOutput, StringComparison.Ordinal);
        Assert.Contains("httproute.gateway.networking.k8s.io/reviews unchanged", again.StandardOutput, StringComparison.Ordinal);

        var get = await kubectl.RunAsync("get", "httproutes", "-n", "shop");
        Assert.True(get.ExitCode == 0, get.ToString());
        Assert.Contains("reviews", get.StandardOutput, StringComparison.Ordinal);

        var json = await kubectl.RunAsync("get", "svc", "reviews", "-n", "shop", "-o", "json");
        Assert.True(json.ExitCode == 0, json.ToString());
        var service = JsonNode.Parse(json.StandardOutput)!;
        Assert.Equal(9081, service["spec"]!["ports"]![0]!["port"]!.GetValue<int>());

        var byLabel = await kubectl.RunAsync("get", "namespaces", "-l", "istio.io/dataplane-mode=ambient", "-o", "name");
        Assert.True(byLabel.ExitCode == 0, byLabel.ToString());
        Assert.Equal("namespace/shop", byLabel.StandardOutput.Trim());

        var delete = await kubectl.RunAsync("delete", "httproute", "reviews", "-n", "shop");
        Assert.True(delete.ExitCode == 0, delete.ToString());
        Assert.Null(server.Get("gateway.networking.k8s.io/v1", "HTTPRoute", "shop", "reviews"));
    }
}

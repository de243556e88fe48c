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
        Assert.True(apply.StandardError.Length == 0 && again.StandardError.Length == 0 && get.StandardError.Length == 0,
            apply.StandardError + again.StandardError + get.StandardError + get.StandardOutput);

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

    [Fact]
    public async Task Kubectl_get_watch_sees_an_event_as_it_happens()
    {
        Assert.SkipUnless(Kubectl.IsAvailable, "kubectl is not installed");
        await using var server = await FakeKubeApiServer.StartAsync();
        using var kubectl = new Kubectl(server);
        server.Put("""{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"first","namespace":"default"}}""");

        using var watch = kubectl.Start(["get", "configmaps", "-n", "default", "--watch", "-o", "name"]);
        try
        {
            using var cts = new CancellationTokenSource(TimeSpan.FromSeconds(30));
            Assert.Equal("configmap/first", await watch.StandardOutput.ReadLineAsync(cts.Token));
            while (server.OpenWatches == 0)
            {
                await Task.Delay(20, cts.Token);
            }
            server.Put("""{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"second","namespace":"default"}}""");
            Assert.Equal("configmap/second", await watch.StandardOutput.ReadLineAsync(cts.Token));
        }
        finally
        {
            watch.Kill(entireProcessTree: true);
            await watch.WaitForExitAsync();
        }
    }

    [Fact]
    public async Task Kubectl_applies_a_crd_then_objects_of_its_kind_and_server_dry_run_stores_nothing()
    {
        Assert.SkipUnless(Kubectl.IsAvailable, "kubectl is not installed");
        await using var server = await FakeKubeApiServer.StartAsync(new FakeKubeApiServerOptions { IstioSecurity = false });
        using var kubectl = new Kubectl(server);
        using var dir = new TempDir();
        var policy = dir.Write("policy.yaml", """
            apiVersion: security.istio.io/v1
            kind: AuthorizationPolicy
            metadata:
              name: deny-all
              namespace: default
            spec: {}
            """);
        var before = await kubectl.RunAsync("apply", "--validate=false", "-f", policy);
        Assert.NotEqual(0, before.ExitCode);
        Assert.Contains("AuthorizationPolicy", before.StandardError, StringComparison.Ordinal);

        var crd = dir.Write("crd.yaml", """
            apiVersion: apiextensions.k8s.io/v1
            kind: CustomResourceDefinition
            metadata:
              name: authorizationpolicies.security.istio.io
            spec:
              group: security.istio.io
              names:
                kind: AuthorizationPolicy
                listKind: AuthorizationPolicyList
                plural: authorizationpolicies
                singular: authorizationpolicy
                shortNames: [ap]
              scope: Namespaced
              versions:
              - name: v1
                served: true
                storage: true
                subresources:
                  status: {}
                schema:
                  openAPIV3Schema:
                    type: object
                    x-kubernetes-preserve-unknown-fields: true
            """);
        var installed = await kubectl.RunAsync("apply", "--validate=false", "-f", crd);
        Assert.True(installed.ExitCode == 0, installed.ToString());

        var dryRun = await kubectl.RunAsync("apply", "--validate=false", "--dry-run=server", "-f", policy);
        Assert.True(dryRun.ExitCode == 0, dryRun.ToString());
        Assert.Contains("(server dry run)", dryRun.StandardOutput, StringComparison.Ordinal);
        Assert.Null(server.Get("security.istio.io/v1", "AuthorizationPolicy", "default", "deny-all"));

        var applied = await kubectl.RunAsync("apply", "--validate=false", "-f", policy);
        Assert.True(applied.ExitCode == 0, applied.ToString());
        var listed = await kubectl.RunAsync("get", "ap", "-A", "-o", "name");
        Assert.True(listed.ExitCode == 0, listed.ToString());
        Assert.Equal("authorizationpolicy.security.istio.io/deny-all", listed.StandardOutput.Trim());
    }
}

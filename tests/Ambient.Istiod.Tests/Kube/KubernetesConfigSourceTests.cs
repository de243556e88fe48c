using System.Text.Json.Nodes;
using Ambient.Config.Kubernetes;
using Ambient.Core.Config;
using Ambient.TestCommon;
using Ambient.TestCommon.Kube;
using Microsoft.Extensions.Logging.Abstractions;
using Xunit;

namespace Ambient.Istiod.Tests.Kube;

/// <summary>The Kubernetes config source against the fake API server: list, watch, bookmarks, 410, dropped watches.</summary>
public sealed class KubernetesConfigSourceTests
{
    private static readonly TimeSpan Patience = TimeSpan.FromSeconds(20);

    internal static class Objects
    {
        public static string Namespace(string name, string mode = "ambient") =>
            Fill("""{"apiVersion":"v1","kind":"Namespace","metadata":{"name":"%name%","labels":{"istio.io/dataplane-mode":"%mode%"}}}""", ("name", name), ("mode", mode));

        public static string ServiceAccount(string ns, string name, string rev = "1") =>
            Fill("""{"apiVersion":"v1","kind":"ServiceAccount","metadata":{"name":"%name%","namespace":"%ns%","labels":{"rev":"%rev%"}}}""", ("ns", ns), ("name", name), ("rev", rev));

        public static string Pod(string ns, string name, string ip, string node = "node-a", string rev = "1", bool ready = true) =>
            Fill("""
            {"apiVersion":"v1","kind":"Pod","metadata":{"name":"%name%","namespace":"%ns%","labels":{"app":"web","rev":"%rev%"}},
             "spec":{"serviceAccountName":"web","nodeName":"%node%","containers":[{"name":"app","image":"web","ports":[{"name":"http","containerPort":8080}]}]},
             "status":{"phase":"Running","podIP":"%ip%","podIPs":[{"ip":"%ip%"}],"conditions":[{"type":"Ready","status":"%ready%"}]}}
            """, ("ns", ns), ("name", name), ("ip", ip), ("node", node), ("rev", rev), ("ready", ready ? "True" : "False"));

        public static string Service(string ns, string name, string ip, string rev = "1", string? waypoint = null) =>
            Fill("""
            {"apiVersion":"v1","kind":"Service","metadata":{"name":"%name%","namespace":"%ns%","labels":{"rev":"%rev%"%waypoint%}},
             "spec":{"clusterIP":"%ip%","selector":{"app":"web"},"ports":[{"name":"http","port":80,"targetPort":"http"}]}}
            """, ("ns", ns), ("name", name), ("ip", ip), ("rev", rev), ("waypoint", waypoint is null ? "" : ",\"istio.io/use-waypoint\":\"" + waypoint + "\""));

        public static string Gateway(string ns, string name, string rev = "1") =>
            Fill("""
            {"apiVersion":"gateway.networking.k8s.io/v1","kind":"Gateway","metadata":{"name":"%name%","namespace":"%ns%","labels":{"istio.io/waypoint-for":"service","rev":"%rev%"}},
             "spec":{"gatewayClassName":"istio-waypoint","listeners":[{"name":"mesh","port":15008,"protocol":"HBONE"}]}}
            """, ("ns", ns), ("name", name), ("rev", rev));

        public static string HttpRoute(string ns, string name, string rev = "1") =>
            Fill("""
            {"apiVersion":"gateway.networking.k8s.io/v1","kind":"HTTPRoute","metadata":{"name":"%name%","namespace":"%ns%","labels":{"rev":"%rev%"}},
             "spec":{"parentRefs":[{"group":"","kind":"Service","name":"web","port":80}],"rules":[{"backendRefs":[{"name":"web","port":80}]}]}}
            """, ("ns", ns), ("name", name), ("rev", rev));

        public static string ReferenceGrant(string ns, string name, string rev = "1") =>
            Fill("""
            {"apiVersion":"gateway.networking.k8s.io/v1beta1","kind":"ReferenceGrant","metadata":{"name":"%name%","namespace":"%ns%","labels":{"rev":"%rev%"}},
             "spec":{"from":[{"group":"gateway.networking.k8s.io","kind":"HTTPRoute","namespace":"other"}],"to":[{"group":"","kind":"Service"}]}}
            """, ("ns", ns), ("name", name), ("rev", rev));

        public static string AuthorizationPolicy(string ns, string name, string rev = "1") =>
            Fill("""
            {"apiVersion":"security.istio.io/v1","kind":"AuthorizationPolicy","metadata":{"name":"%name%","namespace":"%ns%","labels":{"rev":"%rev%"}},
             "spec":{"selector":{"matchLabels":{"app":"web"}},"action":"ALLOW","rules":[{"from":[{"source":{"principals":["cluster.local/ns/shop/sa/client"]}}]}]}}
            """, ("ns", ns), ("name", name), ("rev", rev));

        public static string PeerAuthentication(string ns, string name, string rev = "1") =>
            Fill("""
            {"apiVersion":"security.istio.io/v1","kind":"PeerAuthentication","metadata":{"name":"%name%","namespace":"%ns%","labels":{"rev":"%rev%"}},
             "spec":{"mtls":{"mode":"STRICT"}}}
            """, ("ns", ns), ("name", name), ("rev", rev));

        public static string EndpointSlice(string ns, string name, string service, string ip, string rev = "1", string? pod = null, bool ready = true) =>
            Fill("""
            {"apiVersion":"discovery.k8s.io/v1","kind":"EndpointSlice","metadata":{"name":"%name%","namespace":"%ns%","labels":{"kubernetes.io/service-name":"%service%","rev":"%rev%"}},
             "addressType":"IPv4","endpoints":[{"addresses":["%ip%"],"conditions":{"ready":%ready%}%target%}],"ports":[{"name":"http","port":8080,"protocol":"TCP"}]}
            """, ("ns", ns), ("name", name), ("service", service), ("ip", ip), ("rev", rev), ("ready", ready ? "true" : "false"),
                ("target", pod is null ? "" : ",\"targetRef\":{\"kind\":\"Pod\",\"namespace\":\"" + ns + "\",\"name\":\"" + pod + "\"}"));

        /// <summary>A Service without a selector: its endpoints are its EndpointSlices.</summary>
        public static string SelectorlessService(string ns, string name, string ip) =>
            Fill("""
            {"apiVersion":"v1","kind":"Service","metadata":{"name":"%name%","namespace":"%ns%"},
             "spec":{"clusterIP":"%ip%","ports":[{"name":"http","port":80}]}}
            """, ("ns", ns), ("name", name), ("ip", ip));

        private static string Fill(string template, params (string Name, string Value)[] values)
        {
            foreach (var (name, value) in values)
            {
                template = template.Replace("%" + name + "%", value, StringComparison.Ordinal);
            }
            return template;
        }

        /// <summary>The object of <paramref name="kind"/> named "x" in "shop", at revision <paramref name="rev"/> (a label).</summary>
        public static string Of(string kind, string rev) => kind switch
        {
            "Namespace" => Namespace("x").Replace("\"labels\":{", $"\"labels\":{{\"rev\":\"{rev}\",", StringComparison.Ordinal),
            "ServiceAccount" => ServiceAccount("shop", "x", rev),
            "Pod" => Pod("shop", "x", "10.244.1.9", rev: rev),
            "Service" => Service("shop", "x", "10.96.0.9", rev),
            "EndpointSlice" => EndpointSlice("shop", "x", "external", "192.0.2.9", rev),
            "Gateway" => Gateway("shop", "x", rev),
            "HTTPRoute" => HttpRoute("shop", "x", rev),
            "ReferenceGrant" => ReferenceGrant("shop", "x", rev),
            "AuthorizationPolicy" => AuthorizationPolicy("shop", "x", rev),
            "PeerAuthentication" => PeerAuthentication("shop", "x", rev),
            _ => throw new ArgumentOutOfRangeException(nameof(kind)),
        };
    }

    private static async Task<ConfigSnapshot> WaitForAsync(KubernetesConfigSource source, Func<ConfigSnapshot, bool> condition, string what)
    {
        var deadline = DateTime.UtcNow + Patience;
        while (true)
        {
            var current = source.Current;
            if (condition(current)) return current;
            if (DateTime.UtcNow > deadline)
            {
                Assert.Fail($"timed out waiting for {what}; generation {current.Generation}: {string.Join(", ", current.Resources.Select(r => r.Key))}; errors: {string.Join("; ", current.Errors)}");
            }
            await Task.Delay(20, TestContext.Current.CancellationToken);
        }
    }

    private static Resource? Find(ConfigSnapshot snapshot, string kind, string ns, string name) =>
        snapshot.Resources.FirstOrDefault(r => r.Kind == kind && r.Metadata.Namespace == ns && r.Metadata.Name == name);

    private static async Task<KubernetesConfigSource> StartAsync(FakeKubeApiServer server)
    {
        var source = new KubernetesConfigSource(server.CreateClient(), NullLogger.Instance);
        await source.StartAsync(TestContext.Current.CancellationToken).WaitAsync(Patience, TestContext.Current.CancellationToken);
        return source;
    }

    [Fact]
    public async Task Initial_sync_reads_every_kind_into_the_folder_records()
    {
        await using var server = await FakeKubeApiServer.StartAsync(cancellationToken: TestContext.Current.CancellationToken);
        server.Put(Objects.Namespace("shop"));
        server.Put(Objects.ServiceAccount("shop", "web"));
        server.Put(Objects.Pod("shop", "web-1", "10.244.1.7"));
        server.Put(Objects.Service("shop", "web", "10.96.0.10", waypoint: "waypoint"));
        server.Put(Objects.Gateway("shop", "waypoint"));
        server.Put(Objects.HttpRoute("shop", "route"));
        server.Put(Objects.ReferenceGrant("shop", "grant"));
        server.Put(Objects.AuthorizationPolicy("shop", "allow"));
        server.Put(Objects.PeerAuthentication("shop", "strict"));
        server.Put(Objects.EndpointSlice("shop", "external-1", "external", "10.244.1.7", pod: "web-1"));

        using var source = await StartAsync(server);
        var snapshot = source.Current;

        Assert.Equal(1, snapshot.Generation);
        Assert.Empty(snapshot.Errors);
        Assert.IsType<NamespaceResource>(Find(snapshot, "Namespace", "", "shop"));
        Assert.IsType<ServiceAccountResource>(Find(snapshot, "ServiceAccount", "shop", "web"));
        var pod = Assert.IsType<PodResource>(Find(snapshot, "Pod", "shop", "web-1"));
        Assert.Equal(("10.244.1.7", "node-a", true), (pod.PodIP, pod.NodeName, pod.Ready));
        Assert.Equal("10.96.0.10", Assert.IsType<ServiceResource>(Find(snapshot, "Service", "shop", "web")).ClusterIP);
        Assert.True(Assert.IsType<GatewayResource>(Find(snapshot, "Gateway", "shop", "waypoint")).IsWaypoint);
        Assert.IsType<HttpRouteResource>(Find(snapshot, "HTTPRoute", "shop", "route"));
        Assert.IsType<ReferenceGrantResource>(Find(snapshot, "ReferenceGrant", "shop", "grant"));
        Assert.IsType<AuthorizationPolicyResource>(Find(snapshot, "AuthorizationPolicy", "shop", "allow"));
        Assert.IsType<PeerAuthenticationResource>(Find(snapshot, "PeerAuthentication", "shop", "strict"));
        Assert.Equal(new ObjectKeyRef("shop", "web-1"), Assert.IsType<EndpointSliceResource>(Find(snapshot, "EndpointSlice", "shop", "external-1")).Endpoints[0].TargetPod);
    }

    [Theory]
    [InlineData("Namespace")]
    [InlineData("ServiceAccount")]
    [InlineData("Pod")]
    [InlineData("Service")]
    [InlineData("EndpointSlice")]
    [InlineData("Gateway")]
    [InlineData("HTTPRoute")]
    [InlineData("ReferenceGrant")]
    [InlineData("AuthorizationPolicy")]
    [InlineData("PeerAuthentication")]
    public async Task Watch_applies_add_update_and_delete(string kind)
    {
        await using var server = await FakeKubeApiServer.StartAsync(cancellationToken: TestContext.Current.CancellationToken);
        server.Put(Objects.Namespace("shop"));
        using var source = await StartAsync(server);
        var ns = kind == "Namespace" ? "" : "shop";

        var added = server.Put(Objects.Of(kind, "1"));
        await WaitForAsync(source, s => Find(s, kind, ns, "x")?.Metadata.Label("rev") == "1", $"{kind} x added");

        server.Put(Objects.Of(kind, "2"));
        await WaitForAsync(source, s => Find(s, kind, ns, "x")?.Metadata.Label("rev") == "2", $"{kind} x updated");

        Assert.True(server.Delete(added["apiVersion"]!.GetValue<string>(), kind, ns.Length == 0 ? null : ns, "x"));
        await WaitForAsync(source, s => Find(s, kind, ns, "x") is null, $"{kind} x deleted");
    }

    [Fact]
    public async Task A_watched_endpoint_slice_adds_moves_and_removes_the_endpoints_of_a_selectorless_service()
    {
        const string key = "shop/external.shop.svc.cluster.local";
        await using var server = await FakeKubeApiServer.StartAsync(cancellationToken: TestContext.Current.CancellationToken);
        server.Put(Objects.Namespace("shop"));
        server.Put(Objects.Pod("shop", "web-1", "10.244.1.7"));
        server.Put(Objects.SelectorlessService("shop", "external", "10.96.0.20"));
        using var source = await StartAsync(server);
        var cache = new Ambient.Core.Model.MeshBuildCache();
        Ambient.Core.Model.MeshSnapshot Build(ConfigSnapshot s) => Ambient.Core.Model.MeshBuilder.Build(s.Resources, null, cache);
        Assert.Empty(Build(source.Current).EndpointsOf(Build(source.Current).FindServiceByKey(key)!));

        // Added: the pod it names serves the Service on the slice's port.
        server.Put(Objects.EndpointSlice("shop", "external-1", "external", "10.244.1.7", pod: "web-1"));
        var added = Build(await WaitForAsync(source, s => Find(s, "EndpointSlice", "shop", "external-1") is not null, "the slice"));
        var entry = Assert.Single(added.FindPod("shop", "web-1")!.Services, s => s.ServiceKey == key);
        Assert.Equal(8080, Assert.Single(entry.Ports).TargetPort);

        // Updated: the endpoint is now an address outside the cluster's pods, and not ready.
        server.Put(Objects.EndpointSlice("shop", "external-1", "external", "192.0.2.30", rev: "2", ready: false));
        var updated = Build(await WaitForAsync(source, s => Find(s, "EndpointSlice", "shop", "external-1")?.Metadata.Label("rev") == "2", "the slice updated"));
        Assert.DoesNotContain(updated.FindPod("shop", "web-1")!.Services, s => s.ServiceKey == key);
        var outside = Assert.Single(updated.EndpointsOf(updated.FindServiceByKey(key)!)).Workload;
        Assert.Equal(("192.0.2.30", Ambient.Core.Protos.Workload.WorkloadStatus.Unhealthy), (outside.Addresses[0].ToString(), outside.Status));

        // Deleted: the Service has no endpoints again.
        Assert.True(server.Delete("discovery.k8s.io/v1", "EndpointSlice", "shop", "external-1"));
        var deleted = Build(await WaitForAsync(source, s => Find(s, "EndpointSlice", "shop", "external-1") is null, "the slice deleted"));
        Assert.Empty(deleted.EndpointsOf(deleted.FindServiceByKey(key)!));
    }

    [Fact]
    public async Task An_invalid_object_is_an_error_naming_it_and_keeps_its_last_valid_form()
    {
        await using var server = await FakeKubeApiServer.StartAsync(cancellationToken: TestContext.Current.CancellationToken);
        server.Put(Objects.Namespace("shop"));
        server.Put(Objects.HttpRoute("shop", "route"));
        using var source = await StartAsync(server);
        Assert.NotNull(Find(source.Current, "HTTPRoute", "shop", "route"));

        // What a cluster without the Gateway API's validation webhook could hold.
        server.Put(Objects.HttpRoute("shop", "route", rev: "2").Replace("\"port\":80}]}]", "\"port\":99999}]}]", StringComparison.Ordinal));
        var snapshot = await WaitForAsync(source, s => !s.Errors.IsEmpty, "the route's error");

        var error = Assert.Single(snapshot.Errors);
        Assert.StartsWith("HTTPRoute shop/route: spec.rules[0].backendRefs[0].port:", error.ToString(), StringComparison.Ordinal);
        Assert.Equal("1", Find(snapshot, "HTTPRoute", "shop", "route")!.Metadata.Label("rev"));
    }

    [Fact]
    public async Task Bookmarks_move_the_version_a_watch_resumes_from()
    {
        await using var server = await FakeKubeApiServer.StartAsync(new FakeKubeApiServerOptions { BookmarkInterval = null }, TestContext.Current.CancellationToken);
        using var source = await StartAsync(server);
        await WaitForAsync(source, _ => server.OpenWatches == source.Kinds.Count, "every watch open");

        // A change of another kind moves the server's version past the pod watch's.
        server.Put(Objects.Namespace("shop"));
        await WaitForAsync(source, s => Find(s, "Namespace", "", "shop") is not null, "the namespace");
        Assert.NotEqual(server.ResourceVersion.ToString(System.Globalization.CultureInfo.InvariantCulture), source.ResourceVersionOf("Pod"));

        server.SendBookmarks();
        var expected = server.ResourceVersion.ToString(System.Globalization.CultureInfo.InvariantCulture);
        await WaitForAsync(source, _ => source.ResourceVersionOf("Pod") == expected, "the pod watch at the bookmark's version");
    }

    [Fact]
    public async Task Expired_watch_relists_and_loses_no_event()
    {
        await using var server = await FakeKubeApiServer.StartAsync(new FakeKubeApiServerOptions { BookmarkInterval = null }, TestContext.Current.CancellationToken);
        server.Put(Objects.Namespace("shop"));
        server.Put(Objects.Pod("shop", "a", "10.244.1.1"));
        server.Put(Objects.Pod("shop", "b", "10.244.1.2"));
        using var source = await StartAsync(server);
        await WaitForAsync(source, _ => server.OpenWatches == source.Kinds.Count, "every watch open");

        // History is compacted past the pod watch's version while its connection is down: the resume gets 410 Gone.
        server.Put(Objects.Namespace("other"));
        server.Compact();
        server.DropWatches();
        server.Delete("v1", "Pod", "shop", "a");
        server.Put(Objects.Pod("shop", "b", "10.244.1.2", rev: "2"));
        server.Put(Objects.Pod("shop", "c", "10.244.1.3"));

        await WaitForAsync(source, s => Find(s, "Pod", "shop", "a") is null
            && Find(s, "Pod", "shop", "b")?.Metadata.Label("rev") == "2"
            && Find(s, "Pod", "shop", "c") is not null, "a deleted, b updated, c added");
        Assert.True(PodLists(server) >= 2, "the pods were listed again after 410 Gone");

        // The same through an ERROR event on an open watch.
        var lists = PodLists(server);
        await WaitForAsync(source, _ => server.OpenWatches == source.Kinds.Count, "every watch open again");
        server.ExpireWatches();
        server.Delete("v1", "Pod", "shop", "c");
        await WaitForAsync(source, s => Find(s, "Pod", "shop", "c") is null, "c deleted");
        await WaitForAsync(source, _ => PodLists(server) > lists, "a relist after the ERROR event");
    }

    [Fact]
    public async Task Dropped_watch_resumes_from_the_last_version_without_a_relist()
    {
        await using var server = await FakeKubeApiServer.StartAsync(new FakeKubeApiServerOptions { BookmarkInterval = null }, TestContext.Current.CancellationToken);
        server.Put(Objects.Namespace("shop"));
        server.Put(Objects.Pod("shop", "a", "10.244.1.1"));
        using var source = await StartAsync(server);
        await WaitForAsync(source, _ => server.OpenWatches == source.Kinds.Count, "every watch open");
        var version = source.ResourceVersionOf("Pod");

        server.DropWatches();
        server.Put(Objects.Pod("shop", "a", "10.244.1.1", ready: false));
        server.Put(Objects.Pod("shop", "b", "10.244.1.2"));

        await WaitForAsync(source, s => Find(s, "Pod", "shop", "a") is PodResource { Ready: false } && Find(s, "Pod", "shop", "b") is not null, "both changes");
        Assert.Equal(1, PodLists(server));
        Assert.Contains(server.Requests, r => r.StartsWith("GET /api/v1/pods?", StringComparison.Ordinal) && r.Contains("watch=true", StringComparison.Ordinal)
            && r.Contains("resourceVersion=" + version + "&", StringComparison.Ordinal));
    }

    // Pod list requests (not watches).
    private static int PodLists(FakeKubeApiServer server) =>
        server.Requests.Count(r => r.StartsWith("GET /api/v1/pods", StringComparison.Ordinal) && !r.Contains("watch=true", StringComparison.Ordinal));

    [Fact]
    public async Task A_missing_crd_is_an_error_and_the_rest_is_served()
    {
        await using var server = await FakeKubeApiServer.StartAsync(new FakeKubeApiServerOptions { IstioSecurity = false }, TestContext.Current.CancellationToken);
        server.Put(Objects.Namespace("shop"));
        using var source = await StartAsync(server);
        Assert.NotNull(Find(source.Current, "Namespace", "", "shop"));
        Assert.Contains(source.Current.Errors, e => e.ToString().Contains("AuthorizationPolicy", StringComparison.Ordinal));
    }

    internal static JsonObject Parse(string json) => JsonNode.Parse(json)!.AsObject();
}

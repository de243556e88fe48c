using System.Net;
using System.Threading.Channels;
using Ambient.TestCommon.Kube;
using k8s;
using k8s.Autorest;
using k8s.Models;

namespace Ambient.Core.Tests.Kube;

/// <summary>
/// KubernetesClient against the fake API server: list pages and selectors, watch events and bookmarks, 410 Gone after
/// compaction, resuming after a dropped connection, the status subresource, dryRun and TokenReview behave as on a
/// cluster.
/// </summary>
public sealed class FakeKubeClientTests
{
    private static readonly TimeSpan Wait = TimeSpan.FromSeconds(10);

    private static V1Pod Pod(string name, string node, string app) => new()
    {
        Metadata = new V1ObjectMeta { Name = name, NamespaceProperty = "default", Labels = new Dictionary<string, string> { ["app"] = app } },
        Spec = new V1PodSpec { NodeName = node, Containers = [new V1Container { Name = "app", Image = "app:1" }] },
        Status = new V1PodStatus { Phase = "Running", PodIP = "10.0.0.1" },
    };

    [Fact]
    public async Task List_filters_by_label_and_field_selectors_and_pages_with_continue()
    {
        await using var server = await FakeKubeApiServer.StartAsync(new FakeKubeApiServerOptions { BookmarkInterval = null });
        using var client = server.CreateClient();
        for (var i = 0; i < 5; i++)
        {
            await client.CoreV1.CreateNamespacedPodAsync(Pod("p" + i, i % 2 == 0 ? "node-a" : "node-b", i < 3 ? "web" : "db"), "default");
        }

        var onNodeA = await client.CoreV1.ListNamespacedPodAsync("default", fieldSelector: "spec.nodeName=node-a");
        Assert.Equal(["p0", "p2", "p4"], onNodeA.Items.Select(p => p.Metadata.Name));
        var webOnB = await client.CoreV1.ListPodForAllNamespacesAsync(labelSelector: "app in (web)", fieldSelector: "spec.nodeName!=node-a");
        Assert.Equal(["p1"], webOnB.Items.Select(p => p.Metadata.Name));
        var byName = await client.CoreV1.ListNamespacedPodAsync("default", fieldSelector: "metadata.name=p3");
        Assert.Equal("p3", Assert.Single(byName.Items).Metadata.Name);

        var first = await client.CoreV1.ListNamespacedPodAsync("default", limit: 2);
        Assert.Equal(["p0", "p1"], first.Items.Select(p => p.Metadata.Name));
        Assert.False(string.IsNullOrEmpty(first.Metadata.ContinueProperty));
        var second = await client.CoreV1.ListNamespacedPodAsync("default", limit: 2, continueParameter: first.Metadata.ContinueProperty);
        var third = await client.CoreV1.ListNamespacedPodAsync("default", limit: 2, continueParameter: second.Metadata.ContinueProperty);
        Assert.Equal(["p2", "p3"], second.Items.Select(p => p.Metadata.Name));
        Assert.Equal(["p4"], third.Items.Select(p => p.Metadata.Name));
        Assert.Null(third.Metadata.ContinueProperty);
        Assert.Equal(first.Metadata.ResourceVersion, third.Metadata.ResourceVersion);

        // Status is the subresource's: the create dropped it, as the apiserver's pod strategy does.
        Assert.Null(onNodeA.Items[0].Status);
    }

    [Fact]
    public async Task Watch_streams_events_and_bookmarks_from_the_list_resource_version()
    {
        await using var server = await FakeKubeApiServer.StartAsync(new FakeKubeApiServerOptions { BookmarkInterval = null });
        using var client = server.CreateClient();
        await client.CoreV1.CreateNamespacedPodAsync(Pod("before", "node-a", "web"), "default");
        var list = await client.CoreV1.ListNamespacedPodAsync("default");

        using var cts = new CancellationTokenSource(Wait);
        var events = Channel.CreateUnbounded<(WatchEventType Type, V1Pod Pod)>();
        var watch = Pump(client.CoreV1.WatchListNamespacedPodAsync("default", allowWatchBookmarks: true,
            resourceVersion: list.Metadata.ResourceVersion, cancellationToken: cts.Token), events.Writer);

        await client.CoreV1.CreateNamespacedPodAsync(Pod("after", "node-a", "web"), "default", cancellationToken: cts.Token);
        var added = await events.Reader.ReadAsync(cts.Token);
        Assert.Equal((WatchEventType.Added, "after"), (added.Type, added.Pod.Metadata.Name));

        await client.CoreV1.DeleteNamespacedPodAsync("after", "default", cancellationToken: cts.Token);
        var deleted = await events.Reader.ReadAsync(cts.Token);
        Assert.Equal((WatchEventType.Deleted, "after"), (deleted.Type, deleted.Pod.Metadata.Name));

        server.SendBookmarks();
        var bookmark = await events.Reader.ReadAsync(cts.Token);
        Assert.Equal(WatchEventType.Bookmark, bookmark.Type);
        Assert.Equal(server.ResourceVersion.ToString(System.Globalization.CultureInfo.InvariantCulture), bookmark.Pod.Metadata.ResourceVersion);

        await cts.CancelAsync();
        await watch;
    }

    [Fact]
    public async Task Watch_resumes_after_a_dropped_connection_without_losing_the_events_in_between()
    {
        await using var server = await FakeKubeApiServer.StartAsync(new FakeKubeApiServerOptions { BookmarkInterval = null });
        using var client = server.CreateClient();
        var list = await client.CoreV1.ListNamespacedPodAsync("default");
        using var cts = new CancellationTokenSource(Wait);
        var events = Channel.CreateUnbounded<(WatchEventType Type, V1Pod Pod)>();
        var firstWatch = Pump(client.CoreV1.WatchListNamespacedPodAsync("default", resourceVersion: list.Metadata.ResourceVersion,
            cancellationToken: cts.Token), events.Writer);
        await client.CoreV1.CreateNamespacedPodAsync(Pod("one", "node-a", "web"), "default", cancellationToken: cts.Token);
        var lastSeen = (await events.Reader.ReadAsync(cts.Token)).Pod.Metadata.ResourceVersion;

        Assert.Equal(1, server.DropWatches());
        await firstWatch;
        await client.CoreV1.CreateNamespacedPodAsync(Pod("two", "node-a", "web"), "default", cancellationToken: cts.Token);

        var resumed = Pump(client.CoreV1.WatchListNamespacedPodAsync("default", resourceVersion: lastSeen,
            cancellationToken: cts.Token), events.Writer);
        var missed = await events.Reader.ReadAsync(cts.Token);
        Assert.Equal((WatchEventType.Added, "two"), (missed.Type, missed.Pod.Metadata.Name));
        await cts.CancelAsync();
        await resumed;
    }

    [Fact]
    public async Task Watch_and_continue_from_compacted_history_get_410_Gone()
    {
        await using var server = await FakeKubeApiServer.StartAsync(new FakeKubeApiServerOptions { BookmarkInterval = null });
        using var client = server.CreateClient();
        await client.CoreV1.CreateNamespacedPodAsync(Pod("a", "node-a", "web"), "default");
        await client.CoreV1.CreateNamespacedPodAsync(Pod("b", "node-a", "web"), "default");
        var page = await client.CoreV1.ListNamespacedPodAsync("default", limit: 1);
        await client.CoreV1.CreateNamespacedPodAsync(Pod("c", "node-a", "web"), "default");
        server.Compact();

        var error = await Assert.ThrowsAsync<HttpOperationException>(() =>
            client.CoreV1.ListNamespacedPodAsync("default", limit: 1, continueParameter: page.Metadata.ContinueProperty));
        Assert.Equal(HttpStatusCode.Gone, error.Response.StatusCode);

        using var cts = new CancellationTokenSource(Wait);
        var errors = Channel.CreateUnbounded<Exception>();
        await foreach (var _ in client.CoreV1.WatchListNamespacedPodAsync("default", resourceVersion: page.Metadata.ResourceVersion,
            onError: e => errors.Writer.TryWrite(e), cancellationToken: cts.Token))
        {
            Assert.Fail("no event may come from compacted history");
        }
        var gone = Assert.IsType<KubernetesException>(await errors.Reader.ReadAsync(cts.Token));
        Assert.Equal(410, gone.Status.Code);
        Assert.Equal("Expired", gone.Status.Reason);

        // A live watch told its history is gone (as one that fell behind) gets the same ERROR event.
        var live = client.CoreV1.WatchListNamespacedPodAsync("default", resourceVersion: server.ResourceVersion.ToString(System.Globalization.CultureInfo.InvariantCulture),
            onError: e => errors.Writer.TryWrite(e), cancellationToken: cts.Token).GetAsyncEnumerator(cts.Token);
        var ended = live.MoveNextAsync().AsTask();
        await WaitUntil(() => server.OpenWatches == 1, cts.Token);
        server.ExpireWatches();
        Assert.False(await ended);
        Assert.Equal(410, Assert.IsType<KubernetesException>(await errors.Reader.ReadAsync(cts.Token)).Status.Code);
        await live.DisposeAsync();
    }

    [Fact]
    public async Task Status_subresource_owns_status_and_spec_changes_bump_generation()
    {
        await using var server = await FakeKubeApiServer.StartAsync();
        using var client = server.CreateClient();
        var gateway = new Dictionary<string, object>
        {
            ["apiVersion"] = "gateway.networking.k8s.io/v1", ["kind"] = "Gateway",
            ["metadata"] = new Dictionary<string, object> { ["name"] = "waypoint" },
            ["spec"] = new Dictionary<string, object> { ["gatewayClassName"] = "istio-waypoint" },
            ["status"] = new Dictionary<string, object> { ["conditions"] = new[] { new Dictionary<string, object> { ["type"] = "Programmed" } } },
        };
        await client.CustomObjects.CreateNamespacedCustomObjectAsync(gateway, "gateway.networking.k8s.io", "v1", "default", "gateways");
        var stored = server.Get("gateway.networking.k8s.io/v1", "Gateway", "default", "waypoint")!;
        Assert.Null(stored["status"]);
        Assert.Equal(1, stored["metadata"]!["generation"]!.GetValue<long>());

        var statusPatch = new V1Patch("""{"status":{"conditions":[{"type":"Programmed","status":"True"}]}}""", V1Patch.PatchType.MergePatch);
        await client.CustomObjects.PatchNamespacedCustomObjectStatusAsync(statusPatch, "gateway.networking.k8s.io", "v1", "default", "gateways", "waypoint");
        stored = server.Get("gateway.networking.k8s.io/v1", "Gateway", "default", "waypoint")!;
        Assert.Equal("True", stored["status"]!["conditions"]![0]!["status"]!.GetValue<string>());
        Assert.Equal(1, stored["metadata"]!["generation"]!.GetValue<long>());

        // The main resource ignores status and counts the spec change.
        var mainPatch = new V1Patch("""{"spec":{"gatewayClassName":"other"},"status":null}""", V1Patch.PatchType.MergePatch);
        await client.CustomObjects.PatchNamespacedCustomObjectAsync(mainPatch, "gateway.networking.k8s.io", "v1", "default", "gateways", "waypoint");
        stored = server.Get("gateway.networking.k8s.io/v1", "Gateway", "default", "waypoint")!;
        Assert.Equal("True", stored["status"]!["conditions"]![0]!["status"]!.GetValue<string>());
        Assert.Equal(2, stored["metadata"]!["generation"]!.GetValue<long>());

        // A stale resourceVersion is a conflict.
        var stale = new V1Patch("""{"metadata":{"resourceVersion":"1"},"spec":{"gatewayClassName":"x"}}""", V1Patch.PatchType.MergePatch);
        var conflict = await Assert.ThrowsAsync<HttpOperationException>(() =>
            client.CustomObjects.PatchNamespacedCustomObjectAsync(stale, "gateway.networking.k8s.io", "v1", "default", "gateways", "waypoint"));
        Assert.Equal(HttpStatusCode.Conflict, conflict.Response.StatusCode);
    }

    [Fact]
    public async Task DryRun_validates_without_storing_and_unknown_tokens_are_unauthorized()
    {
        await using var server = await FakeKubeApiServer.StartAsync();
        using var client = server.CreateClient();
        var ns = new V1Namespace { Metadata = new V1ObjectMeta { Name = "dry" } };
        var answered = await client.CoreV1.CreateNamespaceAsync(ns, dryRun: "All");
        Assert.Equal("dry", answered.Metadata.Name);
        Assert.Null(server.Get("v1", "Namespace", null, "dry"));

        var missingNamespace = await Assert.ThrowsAsync<HttpOperationException>(() =>
            client.CoreV1.CreateNamespacedServiceAccountAsync(new V1ServiceAccount { Metadata = new V1ObjectMeta { Name = "sa" } }, "dry"));
        Assert.Equal(HttpStatusCode.NotFound, missingNamespace.Response.StatusCode);

        using var stranger = server.CreateClient("not-a-token");
        var unauthorized = await Assert.ThrowsAsync<HttpOperationException>(() => stranger.CoreV1.ListNamespaceAsync());
        Assert.Equal(HttpStatusCode.Unauthorized, unauthorized.Response.StatusCode);
    }

    [Fact]
    public async Task TokenReview_reports_the_service_account_and_its_pod_for_the_right_audience_only()
    {
        await using var server = await FakeKubeApiServer.StartAsync();
        using var client = server.CreateClient();
        var token = server.AddServiceAccountToken("istio-system", "ztunnel", ["istio-ca"], podName: "ztunnel-x1", podUid: "uid-1", nodeName: "node-a");

        var review = await client.AuthenticationV1.CreateTokenReviewAsync(new V1TokenReview { Spec = new V1TokenReviewSpec { Token = token, Audiences = ["istio-ca"] } });
        Assert.True(review.Status.Authenticated);
        Assert.Equal("system:serviceaccount:istio-system:ztunnel", review.Status.User.Username);
        Assert.Equal(["ztunnel-x1"], review.Status.User.Extra["authentication.kubernetes.io/pod-name"]);
        Assert.Equal(["uid-1"], review.Status.User.Extra["authentication.kubernetes.io/pod-uid"]);
        Assert.Equal(["node-a"], review.Status.User.Extra["authentication.kubernetes.io/node-name"]);
        Assert.Equal(["istio-ca"], review.Status.Audiences);

        var wrongAudience = await client.AuthenticationV1.CreateTokenReviewAsync(new V1TokenReview { Spec = new V1TokenReviewSpec { Token = token, Audiences = ["other"] } });
        Assert.False(wrongAudience.Status.Authenticated);
        var unknown = await client.AuthenticationV1.CreateTokenReviewAsync(new V1TokenReview { Spec = new V1TokenReviewSpec { Token = "forged", Audiences = ["istio-ca"] } });
        Assert.False(unknown.Status.Authenticated);
    }

    private static async Task Pump(IAsyncEnumerable<(WatchEventType, V1Pod)> watch, ChannelWriter<(WatchEventType, V1Pod)> events)
    {
        try
        {
            await foreach (var (type, pod) in watch)
            {
                events.TryWrite((type, pod));
            }
        }
        catch (OperationCanceledException)
        {
        }
        catch (HttpRequestException)
        {
            // The dropped connection.
        }
        catch (IOException)
        {
        }
    }

    private static async Task WaitUntil(Func<bool> condition, CancellationToken cancellationToken)
    {
        while (!condition())
        {
            await Task.Delay(20, cancellationToken);
        }
    }
}

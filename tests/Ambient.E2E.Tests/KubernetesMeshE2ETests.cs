using System.Diagnostics;
using System.Net;
using System.Net.Sockets;
using System.Text.Json.Nodes;
using Ambient.TestCommon.Kube;

namespace Ambient.E2E.Tests;

/// <summary>
/// Kubernetes mode end to end, as processes: the fake API server holds the cluster (Namespaces, ServiceAccounts, Pods
/// with loopback pod IPs, Services); istiod-lite reads it with <c>--config-source kubernetes</c> (TokenReview auth);
/// two ztunnels (one per node) authenticate with the projected token of their own pod; echo backends run on their
/// pods' addresses, as loopback local mode runs them. One mesh for the whole class.
/// </summary>
public sealed class KubernetesMeshE2ETests(KubernetesMeshFixture mesh) : IClassFixture<KubernetesMeshFixture>
{
    private static readonly TimeSpan Patience = TimeSpan.FromSeconds(20);

    [Fact]
    public async Task Client_reaches_the_echo_Service_by_name_over_mutual_tls_across_nodes()
    {
        using var client = mesh.Client();
        Assert.Equal("echo-1", await mesh.GetAsync(client, "echo"));

        var ns = KubernetesMeshFixture.Namespace;
        string[] labels = ["reporter=\"destination\"", $"source_principal=\"spiffe://cluster.local/ns/{ns}/sa/client\"",
            $"destination_principal=\"spiffe://cluster.local/ns/{ns}/sa/echo\"", "connection_security_policy=\"mutual_tls\""];
        await MeshRun.EventuallyAsync(async () => MeshRun.Sum(await mesh.MetricsAsync(2), "istio_tcp_connections_opened_total", labels) > 0,
            Patience, async () => "node-2's ztunnel reports no mutual_tls connection from client to echo:\n" + await mesh.MetricsAsync(2) + mesh.Logs());
    }

    [Fact]
    public async Task A_pod_and_Service_added_while_running_become_reachable()
    {
        mesh.StartEcho("late-1", "late", mesh.PodAddress(3));
        mesh.Api.Put(KubernetesMeshFixture.Pod("late-1", "late", "late", KubernetesMeshFixture.Node1, mesh.PodAddress(3)));
        mesh.Api.Put(KubernetesMeshFixture.Service("late", "late", mesh.ServiceAddress(2)));

        using var client = mesh.Client();
        Assert.Equal("late-1", await mesh.EventuallyGetAsync(client, "late"));
    }

    [Fact]
    public async Task A_Service_without_a_selector_reaches_the_pod_its_EndpointSlice_names_over_mutual_tls()
    {
        var ns = KubernetesMeshFixture.Namespace;
        mesh.Api.Put(KubernetesMeshFixture.Service("manual", app: null, mesh.ServiceAddress(5)));
        mesh.Api.Put(KubernetesMeshFixture.EndpointSlice("manual-x1", "manual", "echo-1", mesh.PodAddress(2)));

        using var client = mesh.Client();
        Assert.Equal("echo-1", await mesh.EventuallyGetAsync(client, "manual"));
        string[] labels = ["reporter=\"source\"", "destination_service_name=\"manual\"", $"destination_principal=\"spiffe://cluster.local/ns/{ns}/sa/echo\"",
            "connection_security_policy=\"mutual_tls\""];
        await MeshRun.EventuallyAsync(async () => MeshRun.Sum(await mesh.MetricsAsync(1), "istio_tcp_connections_opened_total", labels) > 0,
            Patience, async () => "node-1's ztunnel reports no mutual_tls connection to the Service manual:\n" + await mesh.MetricsAsync(1) + mesh.Logs());
    }

    [Fact]
    public async Task A_watch_restart_loses_no_event_made_during_the_gap()
    {
        using var client = mesh.Client();
        var watches = WatchRequests();

        // The connections drop; a Service is created before istiod-lite's watches come back (they resume from the
        // last resourceVersion they saw, so the history since then replays it).
        Assert.True(mesh.Api.DropWatches() > 0, "no watch was open to drop");
        mesh.Api.Put(KubernetesMeshFixture.Service("gap-a", "echo", mesh.ServiceAddress(3)));
        Assert.Equal("echo-1", await mesh.EventuallyGetAsync(client, "gap-a"));
        Assert.True(WatchRequests() > watches, "istiod-lite did not watch again after the drop");

        // The history is compacted and every watch is told 410 Gone: istiod-lite must list again. Meanwhile gap-a is
        // deleted and gap-b created; the relist must drop the one and add the other.
        var lists = ListRequests();
        mesh.Api.Compact();
        mesh.Api.ExpireWatches();
        mesh.Api.Delete("v1", "Service", KubernetesMeshFixture.Namespace, "gap-a");
        mesh.Api.Put(KubernetesMeshFixture.Service("gap-b", "echo", mesh.ServiceAddress(4)));
        Assert.Equal("echo-1", await mesh.EventuallyGetAsync(client, "gap-b"));
        Assert.True(ListRequests() > lists, "istiod-lite did not list again after 410 Gone");
        await MeshRun.EventuallyAsync(async () => !await mesh.AnswersAsync(client, "gap-a"), Patience,
            () => Task.FromResult("the deleted Service gap-a is still reachable:\n" + mesh.Logs()));
    }

    private int WatchRequests() => mesh.Api.Requests.Count(r => r.StartsWith("GET ", StringComparison.Ordinal) && r.Contains("watch=true", StringComparison.Ordinal));

    private int ListRequests() => mesh.Api.Requests.Count(r => r.StartsWith("GET /api/v1/services", StringComparison.Ordinal) && !r.Contains("watch=true", StringComparison.Ordinal));
}

/// <summary>
/// The cluster and the processes of <see cref="KubernetesMeshE2ETests"/>, started once. A derived fixture adds to the
/// cluster before istiod-lite starts (<see cref="SeedCluster"/>) and starts more once the mesh runs (<see cref="StartedAsync"/>).
/// </summary>
public class KubernetesMeshFixture : IAsyncLifetime
{
    internal const string Namespace = "kshop";
    internal const string Node1 = "kube-node-1";
    internal const string Node2 = "kube-node-2";
    private readonly TempDir _dir = new();
    private readonly ChildProcesses _processes = new();
    private readonly List<(string Name, Process Process)> _named = [];

    internal FakeKubeApiServer Api { get; private set; } = null!;
    internal MeshAddresses Addresses { get; } = MeshAddresses.PickFree();

    /// <summary>Pod addresses share the node range this run checked free (node i is .i; pods from .20).</summary>
    internal string PodAddress(int index) => Addresses.Node(20 + index);

    /// <summary>Service VIPs in the loopback VIP range; nothing listens on them (the ztunnel resolves names to Services).</summary>
    internal string ServiceAddress(int index) => "127.200." + Addresses.NodeBase.Split('.')[2] + "." + index.ToString(System.Globalization.CultureInfo.InvariantCulture);

    public async ValueTask InitializeAsync()
    {
        var ct = TestContext.Current.CancellationToken;
        Api = await FakeKubeApiServer.StartAsync(cancellationToken: ct);
        Api.Put(Json(Fill("""{"apiVersion":"v1","kind":"Namespace","metadata":{"name":"%0%","labels":{"istio.io/dataplane-mode":"ambient"}}}""", Namespace)));
        Api.Put(Json("""{"apiVersion":"v1","kind":"Namespace","metadata":{"name":"istio-system"}}"""));
        foreach (var (ns, sa) in new[] { (Namespace, "client"), (Namespace, "echo"), ("istio-system", "ztunnel") })
        {
            Api.Put(Json(Fill("""{"apiVersion":"v1","kind":"ServiceAccount","metadata":{"name":"%0%","namespace":"%1%"}}""", sa, ns)));
        }
        Api.Put(Pod("client-1", "client", "client", Node1, PodAddress(1)));
        Api.Put(Pod("echo-1", "echo", "echo", Node2, PodAddress(2)));
        Api.Put(Service("echo", "echo", ServiceAddress(1)));
        SeedCluster();

        var kubeconfig = Api.WriteKubeconfig(Path.Combine(_dir.Path, "kubeconfig"));
        var state = Path.Combine(_dir.Path, "state");
        var istiod = Started("istiod-lite", _processes.Start("istiod-lite", ["--config-source", "kubernetes", "--kubeconfig", kubeconfig, "--state", state,
            "--listen", "127.0.0.1:0", "--monitoring", "off"], ("CA_TRUSTED_NODE_ACCOUNTS", "istio-system/ztunnel")));
        var port = await _processes.IstiodPortAsync(istiod, ct);

        StartEcho("echo-1", "echo", PodAddress(2));
        var index = 0;
        foreach (var node in new[] { Node1, Node2 })
        {
            index++;
            // The ztunnel's own pod (not host-network here: it needs an address for istiod-lite to know it) and the
            // projected token the kubelet would mount into it, bound to that pod.
            var uid = Guid.NewGuid().ToString();
            var pod = "ztunnel-" + node;
            Api.Put(Json(Fill("""
                {"apiVersion":"v1","kind":"Pod","metadata":{"name":"%0%","namespace":"istio-system","uid":"%1%","labels":{"app":"ztunnel"}},
                 "spec":{"serviceAccountName":"ztunnel","nodeName":"%2%","containers":[{"name":"istio-proxy","image":"ambient/ztunnel"}]},
                 "status":{"phase":"Running","podIP":"%3%","podIPs":[{"ip":"%4%"}],"conditions":[{"type":"Ready","status":"True"}]}}
                """, pod, uid, node, PodAddress(10 + index), PodAddress(10 + index))));
            var tokenFile = Path.Combine(_dir.Path, "tokens", node, "istio-token");
            Directory.CreateDirectory(Path.GetDirectoryName(tokenFile)!);
            File.WriteAllText(tokenFile, ProjectedTokens.Add(Api, "istio-system", "ztunnel", pod, uid, node));
            Started("ztunnel-" + node, _processes.Start("ztunnel", ["--node", node, "--address", Addresses.Node(index), "--root", Path.Combine(state, "root-cert.pem"),
                "--ca-token-file", tokenFile, "--istiod", $"https://127.0.0.1:{port}"]));
        }
        for (var i = 1; i <= 2; i++)
        {
            var ready = $"http://{Addresses.Node(i)}:15021/healthz/ready";
            await MeshRun.EventuallyAsync(() => MeshRun.HttpOkAsync(ready), TimeSpan.FromSeconds(60), () => Task.FromResult($"{ready} never answered OK:\n" + Logs()));
        }
        var echo = new IPEndPoint(IPAddress.Parse(PodAddress(2)), 8080);
        await MeshRun.EventuallyAsync(() => ListensAsync(echo), TimeSpan.FromSeconds(60), () => Task.FromResult($"echo-1 does not listen on {echo}:\n" + Logs()));
        await StartedAsync(port, state, ct);
    }

    /// <summary>More objects in the cluster istiod-lite first lists.</summary>
    private protected virtual void SeedCluster()
    {
    }

    /// <summary>Runs once istiod-lite (gRPC on <paramref name="istiodPort"/>, root in <paramref name="state"/>), the ztunnels and echo-1 are up.</summary>
    private protected virtual Task StartedAsync(int istiodPort, string state, CancellationToken ct) => Task.CompletedTask;

    private protected ChildProcesses Processes => _processes;

    private protected string TempPath => _dir.Path;

    /// <summary>The echo sample on a pod's address, with the environment `local up` gives a pod.</summary>
    internal void StartEcho(string pod, string serviceAccount, string address) =>
        Started("pod-" + pod, _processes.Start("ambient-samples", ["echo"], ("POD_IP", address), ("PORTS", "8080"), ("POD_NAME", pod),
            ("POD_NAMESPACE", Namespace), ("SERVICE_ACCOUNT", serviceAccount)));

    /// <summary>An HTTP client in client-1: through node-1's ztunnel SOCKS5 front door on the pod's address.</summary>
    internal MeshRun.PodClient Client() =>
        MeshRun.ClientIn(new MeshRun.Component("client-1", "pod", 0, 0, PodAddress(1), Node1, "", 0), keepAlive: false);

    internal static string Url(string service) => $"http://{service}.{Namespace}.svc.cluster.local/";

    /// <summary>GET the Service by name; returns the answering pod, failing with every process's log.</summary>
    internal async Task<string> GetAsync(MeshRun.PodClient client, string service)
    {
        try
        {
            return await client.GetAsync(Url(service), TestContext.Current.CancellationToken);
        }
        catch (HttpRequestException e)
        {
            Assert.Fail($"{Url(service)}: {e.Message}\n{Logs()}");
            throw;
        }
    }

    /// <summary>Retries until the Service answers (the change has to travel API server → istiod-lite → ztunnel).</summary>
    internal async Task<string> EventuallyGetAsync(MeshRun.PodClient client, string service)
    {
        var sw = Stopwatch.StartNew();
        while (true)
        {
            try
            {
                return await client.GetAsync(Url(service), TestContext.Current.CancellationToken);
            }
            catch (Exception e) when (e is HttpRequestException or TaskCanceledException && sw.Elapsed < TimeSpan.FromSeconds(20))
            {
                await Task.Delay(150, TestContext.Current.CancellationToken);
            }
            catch (Exception e) when (e is HttpRequestException or TaskCanceledException)
            {
                Assert.Fail($"{Url(service)} never answered: {e.Message}\n{Logs()}");
                throw;
            }
        }
    }

    internal async Task<bool> AnswersAsync(MeshRun.PodClient client, string service)
    {
        try
        {
            await client.GetAsync(Url(service), TestContext.Current.CancellationToken);
            return true;
        }
        catch (Exception e) when (e is HttpRequestException or TaskCanceledException)
        {
            return false;
        }
    }

    internal Task<string> MetricsAsync(int node) =>
        MeshRun.Plain.GetStringAsync($"http://{Addresses.Node(node)}:15020/metrics", TestContext.Current.CancellationToken);

    internal string Logs()
    {
        lock (_named) return _processes.Logs([.. _named]);
    }

    internal static JsonObject Pod(string name, string serviceAccount, string app, string node, string ip) => Json(Fill("""
        {"apiVersion":"v1","kind":"Pod","metadata":{"name":"%0%","namespace":"%1%","uid":"%2%","labels":{"app":"%3%"}},
         "spec":{"serviceAccountName":"%4%","nodeName":"%5%","containers":[{"name":"app","image":"ambient/echo","ports":[{"name":"http","containerPort":8080}]}]},
         "status":{"phase":"Running","podIP":"%6%","podIPs":[{"ip":"%7%"}],"conditions":[{"type":"Ready","status":"True"}]}}
        """, name, Namespace, Guid.NewGuid(), app, serviceAccount, node, ip, ip));

    /// <summary>A Service selecting the pods labelled app=<paramref name="app"/>; with a null app, one without a selector.</summary>
    internal static JsonObject Service(string name, string? app, string clusterIp) => Json(Fill("""
        {"apiVersion":"v1","kind":"Service","metadata":{"name":"%0%","namespace":"%1%"},
         "spec":{"clusterIP":"%2%","clusterIPs":["%3%"]%4%,"ports":[{"name":"http","port":80,"targetPort":8080}]}}
        """, name, Namespace, clusterIp, clusterIp, app is null ? "" : ",\"selector\":{\"app\":\"" + app + "\"}"));

    /// <summary>The EndpointSlice of <paramref name="service"/> with one ready endpoint: <paramref name="pod"/> at its address, port http 8080.</summary>
    internal static JsonObject EndpointSlice(string name, string service, string pod, string ip) => Json(Fill("""
        {"apiVersion":"discovery.k8s.io/v1","kind":"EndpointSlice","metadata":{"name":"%0%","namespace":"%1%","labels":{"kubernetes.io/service-name":"%2%"}},
         "addressType":"IPv4","endpoints":[{"addresses":["%3%"],"conditions":{"ready":true},"targetRef":{"kind":"Pod","namespace":"%1%","name":"%4%"}}],
         "ports":[{"name":"http","port":8080,"protocol":"TCP"}]}
        """, name, Namespace, service, ip, pod));

    internal static JsonObject Json(string text) => JsonNode.Parse(text)!.AsObject();

    // %0%, %1%, ... of a JSON template (fewer than ten values); raw interpolated strings cannot hold JSON's "}}}".
    internal static string Fill(string template, params object[] values)
    {
        for (var i = 0; i < values.Length; i++)
        {
            template = template.Replace("%" + i.ToString(System.Globalization.CultureInfo.InvariantCulture) + "%",
                Convert.ToString(values[i], System.Globalization.CultureInfo.InvariantCulture), StringComparison.Ordinal);
        }
        return template;
    }

    private protected Process Started(string name, Process process)
    {
        lock (_named) _named.Add((name, process));
        return process;
    }

    private protected static async Task<bool> ListensAsync(IPEndPoint endpoint)
    {
        using var socket = new Socket(SocketType.Stream, ProtocolType.Tcp);
        try
        {
            await socket.ConnectAsync(endpoint, TestContext.Current.CancellationToken);
            return true;
        }
        catch (SocketException)
        {
            return false;
        }
    }

    public async ValueTask DisposeAsync()
    {
        await _processes.DisposeAsync();
        if (Api is not null) await Api.DisposeAsync();
        _dir.Dispose();
    }
}

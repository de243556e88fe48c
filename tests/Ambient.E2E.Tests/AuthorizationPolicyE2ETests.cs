using System.Diagnostics;
using System.Globalization;
using System.Text.Json;
using Ambient.TestCommon;

namespace Ambient.E2E.Tests;

/// <summary>
/// AuthorizationPolicy enforced by ztunnel (L4) on a running local mesh, real processes throughout, one mesh for the
/// whole class: three clients (client and other in one namespace, client in a second namespace) call one echo pod on
/// the other node, and each step writes the policies live into the config folder, then waits until the three
/// outcomes are the expected ones (each step changes at least one of them, so a stale push cannot pass). Then a DENY
/// is added under steady traffic (a new connection every ~10 ms) and must cut the denied client off within 1 s of the
/// write, without one failed request for the client that stays allowed.
/// </summary>
public sealed class AuthorizationPolicyE2ETests
{
    private static readonly TimeSpan Propagation = TimeSpan.FromSeconds(20);
    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    private static string Yaml(string ns) =>
        MeshYaml.Namespace(ns) + MeshYaml.Namespace(Second(ns))
        + MeshYaml.ServiceAccount(ns, "client") + MeshYaml.ServiceAccount(ns, "other") + MeshYaml.ServiceAccount(ns, "echo")
        + MeshYaml.ServiceAccount(Second(ns), "client")
        + MeshYaml.Sleep(ns, "client", "client", "node-a") + MeshYaml.Sleep(ns, "other", "other", "node-a")
        + MeshYaml.Sleep(Second(ns), "client", "client", "node-a")
        + MeshYaml.Echo(ns, "echo", "echo", "node-b");

    private static string Second(string ns) => ns + "b";

    private static string Policy(string ns, string name, string spec, string? annotations = null) => $"""
        apiVersion: security.istio.io/v1
        kind: AuthorizationPolicy
        metadata:
          name: {name}
          namespace: {ns}{(annotations is null ? "" : "\n  annotations: " + annotations)}
        spec:
        {spec}
        ---

        """;

    /// <summary>Replaces the policies file in one rename, so istiod-lite never reads half of it; returns when.</summary>
    private static void WritePolicies(MeshRun mesh, string yaml)
    {
        var temp = Path.Combine(mesh.TempPath, "policies.tmp");
        File.WriteAllText(temp, yaml);
        File.Move(temp, Path.Combine(mesh.ConfigFolder, "policies.yaml"), overwrite: true);
    }

    /// <param name="Url">The echo Service every client calls.</param>
    private sealed record Clients(string Url, MeshRun.PodClient Client, MeshRun.PodClient Other, MeshRun.PodClient SecondClient) : IDisposable
    {
        public void Dispose()
        {
            Client.Dispose();
            Other.Dispose();
            SecondClient.Dispose();
        }
    }

    /// <summary>Null when the request was answered by the echo pod, else what went wrong.</summary>
    private static async Task<string?> TryGetAsync(MeshRun.PodClient client, string url)
    {
        try
        {
            var pod = await client.GetAsync(url, Ct);
            return pod == "echo" ? null : "answered by " + pod;
        }
        catch (Exception e) when (e is HttpRequestException or TaskCanceledException)
        {
            return e.GetType().Name + ": " + e.Message;
        }
    }

    /// <summary>"client=allowed other=denied second/client=allowed": one new connection per client.</summary>
    private static async Task<string> OutcomesAsync(Clients clients) =>
        string.Join(" ", await Outcome(clients, clients.Client, "client"), await Outcome(clients, clients.Other, "other"),
            await Outcome(clients, clients.SecondClient, "second/client"));

    private static async Task<string> Outcome(Clients clients, MeshRun.PodClient client, string name) =>
        name + (await TryGetAsync(client, clients.Url + "/" + Guid.NewGuid().ToString("N")[..8]) is null ? "=allowed" : "=denied");

    /// <summary>Writes <paramref name="yaml"/> and waits until the three clients get <paramref name="expected"/>
    /// ("client=allowed other=denied second/client=allowed").</summary>
    private static async Task StepAsync(MeshRun mesh, Clients clients, string step, string yaml, string expected)
    {
        WritePolicies(mesh, yaml);
        var last = "";
        var clock = Stopwatch.StartNew();
        await MeshRun.EventuallyAsync(async () => (last = await OutcomesAsync(clients)) == expected, Propagation,
            () => Task.FromResult($"{step}: expected {expected}, last saw {last} ({clock.Elapsed.TotalSeconds:0.0} s after the write)"));
        // Still so on a second look: the outcome is the policies', not a transient.
        Assert.Equal(expected, await OutcomesAsync(clients));
        TestContext.Current.TestOutputHelper?.WriteLine($"{step}: {expected} ({clock.Elapsed.TotalMilliseconds:0} ms after the write)");
    }

    [Fact]
    public async Task PrincipalNamespaceIpBlockPolicies_L7Conversion_DryRun_AndADenyUnderSteadyTraffic()
    {
        using var mesh = await MeshRun.UpAsync("apz", Yaml);
        var ns = mesh.Namespace;
        var ns2 = Second(ns);
        var url = $"http://echo.{ns}.svc.cluster.local";
        var client = mesh.Pod("client");
        var other = mesh.Pod("other");
        using var clients = new Clients(url, MeshRun.ClientIn(client, keepAlive: false, fromPodAddress: true), MeshRun.ClientIn(other, keepAlive: false, fromPodAddress: true),
            MeshRun.ClientIn(mesh.Get($"pod-{ns2}-client"), keepAlive: false, fromPodAddress: true));
        const string allAllowed = "client=allowed other=allowed second/client=allowed";
        var onEcho = "  selector: {matchLabels: {app: echo}}\n";
        var td = MeshRun.TrustDomain;

        await MeshRun.EventuallyAsync(async () => await OutcomesAsync(clients) == allAllowed, Propagation,
            async () => "without policies every client should be allowed: " + await OutcomesAsync(clients));

        await StepAsync(mesh, clients, "principal DENY", Policy(ns, "deny-other", onEcho + $$$"""
              action: DENY
              rules: [{from: [{source: {principals: ["{{{td}}}/ns/{{{ns}}}/sa/other"]}}]}]
            """), "client=allowed other=denied second/client=allowed");

        await StepAsync(mesh, clients, "principal ALLOW", Policy(ns, "allow-client", onEcho + $$$"""
              action: ALLOW
              rules: [{from: [{source: {principals: ["{{{td}}}/ns/{{{ns}}}/sa/client"]}}]}]
            """), "client=allowed other=denied second/client=denied");

        // Namespace-wide (no selector): every workload of the namespace.
        await StepAsync(mesh, clients, "namespace ALLOW", Policy(ns, "allow-second", $$$"""
              action: ALLOW
              rules: [{from: [{source: {namespaces: ["{{{ns2}}}"]}}]}]
            """), "client=denied other=denied second/client=allowed");

        await StepAsync(mesh, clients, "namespace DENY", Policy(ns, "deny-second", onEcho + $$$"""
              action: DENY
              rules: [{from: [{source: {namespaces: ["{{{ns2}}}"]}}]}]
            """), "client=allowed other=allowed second/client=denied");

        await StepAsync(mesh, clients, "ipBlocks DENY", Policy(ns, "deny-client-ip", onEcho + $$$"""
              action: DENY
              rules: [{from: [{source: {ipBlocks: ["{{{client.Address}}}/32"]}}]}]
            """), "client=denied other=allowed second/client=allowed");

        await StepAsync(mesh, clients, "ipBlocks ALLOW", Policy(ns, "allow-other-ip", onEcho + $$$"""
              action: ALLOW
              rules: [{from: [{source: {ipBlocks: ["{{{other.Address}}}/32"]}}]}]
            """), "client=denied other=allowed second/client=denied");

        // `spec: {}`: an ALLOW policy with no rules, which allows nothing.
        await StepAsync(mesh, clients, "allow-nothing", Policy(ns, "allow-nothing", "  {}\n"), "client=denied other=denied second/client=denied");

        // DENY with an HTTP attribute beside a port: ztunnel leaves the method out and enforces the rest of the rule
        // (deny other on the echo port, whatever the method). An operation made only of HTTP attributes would leave an
        // empty match, which never matches: istiod's conversion, not tested here again.
        await StepAsync(mesh, clients, "DENY with L7 attribute", Policy(ns, "deny-other-get", onEcho + $$$"""
              action: DENY
              rules: [{from: [{source: {principals: ["{{{td}}}/ns/{{{ns}}}/sa/other"]}}], to: [{operation: {ports: ["8080"], methods: [GET]}}]}]
            """), "client=allowed other=denied second/client=allowed");

        // ALLOW with an HTTP attribute: that rule never matches at ztunnel (fail closed); the plain rule still does.
        await StepAsync(mesh, clients, "ALLOW with L7 attribute", Policy(ns, "allow-get", onEcho + $$$"""
              action: ALLOW
              rules:
              - from: [{source: {namespaces: ["{{{ns}}}"]}}]
                to: [{operation: {methods: [GET]}}]
              - from: [{source: {namespaces: ["{{{ns2}}}"]}}]
            """), "client=denied other=denied second/client=allowed");
        // `get authorizationpolicy` shows where it is enforced and the conversion warning, from istiod-lite.
        var get = await mesh.CtlAsync(TimeSpan.FromSeconds(60), "get", "ap", "allow-get", "-n", ns, "-o", "json");
        Assert.True(get.Code == 0, get.Output);
        using (var doc = JsonDocument.Parse(get.Output[get.Output.IndexOf('{', StringComparison.Ordinal)..]))
        {
            var status = doc.RootElement.GetProperty("status");
            Assert.Equal("ztunnel", status.GetProperty("enforcedBy").GetString());
            Assert.Contains(status.GetProperty("warnings").EnumerateArray(),
                w => w.GetString() == "rules[0]: L7 attributes (methods) in an ALLOW rule enforced by ztunnel: this rule never matches");
        }

        // Dry run: a DENY-everything policy only logs; the enforced DENY of other shows the push arrived.
        await StepAsync(mesh, clients, "dry-run", Policy(ns, "deny-all-dry", onEcho + "  action: DENY\n  rules: [{}]\n", annotations: "{istio.io/dry-run: \"true\"}")
            + Policy(ns, "deny-other", onEcho + $$$"""
              action: DENY
              rules: [{from: [{source: {principals: ["{{{td}}}/ns/{{{ns}}}/sa/other"]}}]}]
            """), "client=allowed other=denied second/client=allowed");
        var destination = mesh.Ztunnel("node-b");
        await MeshRun.EventuallyAsync(() => Task.FromResult(MeshRun.ReadLog(destination).Contains($"dry-run policies would deny: explicitly denied by: {ns}/deny-all-dry", StringComparison.Ordinal)),
            TimeSpan.FromSeconds(5), () => Task.FromResult("the destination ztunnel did not log the dry-run decision:\n" + MeshRun.ReadLog(destination)));

        await StepAsync(mesh, clients, "no policies", "", allAllowed);
        await DenyUnderSteadyTrafficAsync(mesh, url, ns, td);
    }

    private sealed record Request(TimeSpan Start, TimeSpan End, string? Error);

    /// <summary>One client's requests, each on a new connection, ~10 ms apart, until stopped.</summary>
    private static Task<List<Request>> LoopAsync(MeshRun.Component pod, string url, Stopwatch clock, CancellationToken stop) => Task.Run(async () =>
    {
        var results = new List<Request>();
        using var http = MeshRun.ClientIn(pod, keepAlive: false, fromPodAddress: true);
        while (!stop.IsCancellationRequested)
        {
            var start = clock.Elapsed;
            var error = await TryGetAsync(http, url + "/steady");
            results.Add(new Request(start, clock.Elapsed, error));
            try { await Task.Delay(10, stop); } catch (OperationCanceledException) { break; }
        }
        return results;
    });

    private static async Task DenyUnderSteadyTrafficAsync(MeshRun mesh, string url, string ns, string td)
    {
        var clock = Stopwatch.StartNew();
        using var stop = new CancellationTokenSource();
        var allowed = LoopAsync(mesh.Pod("client"), url, clock, stop.Token);
        var denied = LoopAsync(mesh.Pod("other"), url, clock, stop.Token);
        await Task.Delay(1500, Ct);
        var written = clock.Elapsed;
        WritePolicies(mesh, Policy(ns, "deny-other-live", $$$"""
              selector: {matchLabels: {app: echo}}
              action: DENY
              rules: [{from: [{source: {principals: ["{{{td}}}/ns/{{{ns}}}/sa/other"]}}]}]
            """));
        await Task.Delay(3000, Ct);
        await stop.CancelAsync();
        var kept = await allowed;
        var cut = await denied;

        string Show(IEnumerable<Request> requests) => string.Join("\n", requests.Select(r =>
            $"{(r.Start - written).TotalMilliseconds,8:0} ms .. {(r.End - written).TotalMilliseconds,8:0} ms {r.Error ?? "ok"}"));
        // The client that stays allowed never fails, before, during or after the change.
        Assert.True(kept.Count > 50, $"too few requests from the allowed client ({kept.Count})");
        Assert.True(kept.All(r => r.Error is null), "an allowed request failed:\n" + Show(kept.Where(r => r.Error is not null)));
        // The denied client: every request before the first denial answered, every one after it denied.
        var first = cut.FindIndex(r => r.Error is not null);
        Assert.True(first > 0, "the denied client was never denied, or was denied before the write:\n" + Show(cut));
        Assert.True(cut[first..].All(r => r.Error is not null), "allowed again after the first denial:\n" + Show(cut[first..]));
        Assert.True(cut.Count - first > 20, "too few requests after the denial:\n" + Show(cut));
        var lastAllowed = cut[first - 1].Start - written;
        var firstDenied = cut[first].Start - written;
        TestContext.Current.TestOutputHelper?.WriteLine(string.Create(CultureInfo.InvariantCulture,
            $"DENY under steady traffic: took effect between {lastAllowed.TotalMilliseconds:0} and {firstDenied.TotalMilliseconds:0} ms after the file write ({cut.Count + kept.Count} requests, {cut.Count - first} denied, 0 allowed ones failed)"));
        Assert.True(firstDenied < TimeSpan.FromSeconds(1), $"the DENY took effect only {firstDenied.TotalMilliseconds:0} ms after the write:\n" + Show(cut));
    }
}

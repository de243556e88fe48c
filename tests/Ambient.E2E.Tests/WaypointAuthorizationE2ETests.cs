using System.Diagnostics;
using System.Net;
using Ambient.TestCommon;

namespace Ambient.E2E.Tests;

/// <summary>
/// AuthorizationPolicy enforced by the waypoint (L7) on a running local mesh, real processes throughout: two clients
/// in the namespace call the echo Service through the namespace's waypoint, and each step writes a policy that
/// targets the Service (targetRefs) live into the config folder, then waits until the requests get the expected
/// answers. A denied request is 403 <c>RBAC: access denied</c> from the waypoint and never reaches the echo pod (its
/// log of every request it received is checked), and the waypoint's metrics count it with response_flags RBAC.
/// </summary>
public sealed class WaypointAuthorizationE2ETests
{
    private static readonly TimeSpan Propagation = TimeSpan.FromSeconds(30);
    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    private static string Yaml(string ns) =>
        MeshYaml.Namespace(ns)
        + MeshYaml.ServiceAccount(ns, "client") + MeshYaml.ServiceAccount(ns, "other") + MeshYaml.ServiceAccount(ns, "echo")
        + MeshYaml.Sleep(ns, "client", "client", "node-a") + MeshYaml.Sleep(ns, "other", "other", "node-a")
        + MeshYaml.Echo(ns, "echo", "echo", "node-b");

    /// <summary>A policy on the echo Service (enforced by its waypoint), written in one rename.</summary>
    private static void WritePolicy(MeshRun mesh, string spec)
    {
        var yaml = $"""
            apiVersion: security.istio.io/v1
            kind: AuthorizationPolicy
            metadata: {"{"}name: on-echo, namespace: {mesh.Namespace}{"}"}
            spec:
              targetRefs: [{"{"}kind: Service, group: "", name: echo{"}"}]
            {spec}
            """;
        var temp = Path.Combine(mesh.TempPath, "policy.tmp");
        File.WriteAllText(temp, yaml);
        File.Move(temp, Path.Combine(mesh.ConfigFolder, "policy.yaml"), overwrite: true);
    }

    private sealed record Probe(string Name, ConformanceClient Client, HttpMethod Method, string Path, (string, string)[] Headers, int Expected);

    /// <summary>Waits until every probe gets its expected status (new connection each), then checks once more.</summary>
    private static async Task StepAsync(MeshRun mesh, string step, string spec, params Probe[] probes)
    {
        WritePolicy(mesh, spec);
        var clock = Stopwatch.StartNew();
        var last = "";
        async Task<bool> AllAsExpected()
        {
            var seen = new List<string>();
            var ok = true;
            foreach (var p in probes)
            {
                ConformanceResponse r;
                try
                {
                    r = await p.Client.SendAsync(p.Method, $"http://echo.{mesh.Namespace}.svc.cluster.local{p.Path}", p.Headers);
                }
                catch (HttpRequestException e)
                {
                    // While the waypoint comes up the client's ztunnel may not reach it yet (SOCKS reply 4).
                    seen.Add($"{p.Name}={e.Message}");
                    ok = false;
                    continue;
                }
                seen.Add($"{p.Name}={r.Code}");
                ok &= r.Code == p.Expected;
                if (r.Code == 403) Assert.Equal("RBAC: access denied", r.Body);
            }
            last = string.Join(" ", seen);
            return ok;
        }
        await MeshRun.EventuallyAsync(AllAsExpected, Propagation,
            () => Task.FromResult($"{step}: expected {string.Join(" ", probes.Select(p => p.Name + "=" + p.Expected))}, last saw {last}"));
        Assert.True(await AllAsExpected(), $"{step}: not stable: {last}");
        TestContext.Current.TestOutputHelper?.WriteLine($"{step}: {last} ({clock.Elapsed.TotalMilliseconds:0} ms after the write)");
    }

    [Fact]
    public async Task MethodPathHeaderHostAndPrincipalRules_AtTheWaypoint_Deny403BeforeTheBackend()
    {
        using var mesh = await MeshRun.UpAsync("wpz", Yaml);
        var ns = mesh.Namespace;
        var apply = await mesh.CtlAsync(TimeSpan.FromSeconds(90), "waypoint", "apply", "-n", ns, "--enroll-namespace", "--wait");
        Assert.True(apply.Code == 0, $"waypoint apply failed ({apply.Code}):\n{apply.Output}");
        using var client = new ConformanceClient(mesh.Pod("client"), keepAlive: false);
        using var other = new ConformanceClient(mesh.Pod("other"), keepAlive: false);
        var td = MeshRun.TrustDomain;
        (string, string)[] none = [];

        // Method: only POST is denied. Until the waypoint has the policy, POST reaches the echo (200).
        await StepAsync(mesh, "DENY methods", """
              action: DENY
              rules: [{to: [{operation: {methods: [POST]}}]}]
            """,
            new Probe("client POST", client, HttpMethod.Post, "/m", none, 403),
            new Probe("client GET", client, HttpMethod.Get, "/m", none, 200));

        // The denied request never reached the echo pod: it logs every request it receives.
        var marker = "/never-seen-" + Guid.NewGuid().ToString("N")[..8];
        Assert.Equal(403, (await client.SendAsync(HttpMethod.Post, $"http://echo.{ns}.svc.cluster.local{marker}")).Code);
        Assert.Equal(200, (await client.SendAsync(HttpMethod.Get, $"http://echo.{ns}.svc.cluster.local/seen{marker}")).Code);
        var logs = await mesh.CtlAsync(TimeSpan.FromSeconds(30), "logs", "echo", "-n", ns);
        Assert.Contains("/seen" + marker, logs.Output);
        Assert.DoesNotContain(" " + marker, logs.Output.Replace("/seen" + marker, "", StringComparison.Ordinal));

        // Paths: ALLOW only /public/* (prefix form); everything else is denied because an ALLOW exists.
        await StepAsync(mesh, "ALLOW paths", """
              action: ALLOW
              rules: [{to: [{operation: {paths: ["/public/*"]}}]}]
            """,
            new Probe("client /public/a", client, HttpMethod.Get, "/public/a", none, 200),
            new Probe("client /private", client, HttpMethod.Get, "/private", none, 403));

        // Header condition: DENY when x-block: yes.
        await StepAsync(mesh, "DENY request.headers", """
              action: DENY
              rules: [{when: [{key: "request.headers[x-block]", values: ["yes"]}]}]
            """,
            new Probe("client x-block", client, HttpMethod.Get, "/h", [("x-block", "yes")], 403),
            new Probe("client no header", client, HttpMethod.Get, "/h", none, 200));

        // Hosts: the Host the client sent (the Service's name), case-insensitive; another host does not match.
        await StepAsync(mesh, "ALLOW hosts (other host)", """
              action: ALLOW
              rules: [{to: [{operation: {hosts: ["nothing.example.com"]}}]}]
            """,
            new Probe("client", client, HttpMethod.Get, "/host", none, 403));
        await StepAsync(mesh, "ALLOW hosts (the Service's)", $$$"""
              action: ALLOW
              rules: [{to: [{operation: {hosts: ["ECHO.{{{ns}}}.svc.cluster.local"]}}]}]
            """,
            new Probe("client", client, HttpMethod.Get, "/host", none, 200));

        // Principals: the waypoint sees the original client's identity (not a ztunnel's).
        await StepAsync(mesh, "ALLOW principals", $$$"""
              action: ALLOW
              rules: [{from: [{source: {principals: ["{{{td}}}/ns/{{{ns}}}/sa/client"]}}]}]
            """,
            new Probe("client", client, HttpMethod.Get, "/p", none, 200),
            new Probe("other", other, HttpMethod.Get, "/p", none, 403));

        // The waypoint counted the denials as Istio's waypoint does.
        var waypoint = mesh.ReadState().Components.Single(c => c.Kind == "waypoint");
        var metrics = await MeshRun.Plain.GetStringAsync($"http://{waypoint.Address}:15021/stats/prometheus", Ct);
        Assert.True(MeshRun.Sum(metrics, "istio_requests_total", "reporter=\"waypoint\"", "response_code=\"403\"", "response_flags=\"RBAC\"",
            $"source_principal=\"spiffe://{td}/ns/{ns}/sa/other\"") >= 1, metrics);
    }
}

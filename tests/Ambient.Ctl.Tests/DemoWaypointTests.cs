using Ambient.Config.Yaml;
using Ambient.Core.Config;
using Ambient.Core.Protos.Waypoint;
using Ambient.Ctl.Cli;
using Ambient.Ctl.Demo;
using Ambient.Ctl.Inspect;
using Ambient.Ctl.Waypoints;
using Ambient.TestCommon;

namespace Ambient.Ctl.Tests;

/// <summary>The pure parts of the demo's waypoint steps (6-8): the route it writes, its verdicts, its table, its cleanup.</summary>
public class DemoWaypointTests
{
    [Fact]
    public void Route_IsAHeaderMatchToV2_ThenANinetyTenSplit_OnServiceEchoPort80()
    {
        var parsed = ManifestParser.Parse("/demo/route.yaml", DemoWaypoint.RouteYaml());
        Assert.True(parsed.IsClean, string.Join("; ", parsed.Errors));
        var route = Assert.IsType<HttpRouteResource>(Assert.Single(parsed.Resources)).Spec;
        var parent = Assert.Single(route.ParentRefs);
        Assert.Equal(("Service", "echo", 80u), (parent.Kind, parent.Name, parent.Port));
        Assert.Equal(2, route.Rules.Count);
        var header = Assert.Single(Assert.Single(route.Rules[0].Matches).Headers);
        Assert.Equal(("x-version", "v2", HeaderMatchType.HeaderExact), (header.Name, header.Value, header.Type));
        Assert.Equal("echo-v2", Assert.Single(route.Rules[0].BackendRefs).BackendRef.Name);
        Assert.Equal([("echo-v1", 90), ("echo-v2", 10)], route.Rules[1].BackendRefs.Select(b => (b.BackendRef.Name, (int)b.Weight)));
    }

    [Fact]
    public void Steps_OnACopyOfTheSampleMesh_ReadBackClean_AndRemoveLeavesEveryFileAsItWas()
    {
        using var dir = new TempDir();
        foreach (var f in Directory.GetFiles(RepoPaths.SampleMesh, "*.yaml")) File.Copy(f, Path.Combine(dir.Path, Path.GetFileName(f)));
        var original = Snapshot(dir.Path);

        // What step 6 does to the folder: the waypoint as `waypoint apply --enroll-namespace`, then the route.
        var spec = new WaypointSpec(DemoWaypoint.Namespace, DemoWaypoint.Name, WaypointLabels.DefaultFor);
        Assert.Equal(ExitCodes.Ok, WaypointCommand.Apply(dir.Path, spec, enrollNamespace: true, TextWriter.Null, TextWriter.Null));
        Assert.NotNull(DemoWaypoint.WriteRoute(dir.Path, out var error));
        Assert.Null(error);
        var config = MeshConfig.Read(dir.Path);
        Assert.Empty(config.Errors);
        Assert.Contains(config.Resources, r => r is HttpRouteResource { Metadata.Name: DemoWaypoint.RouteName });
        Assert.Contains(config.Resources, r => r is NamespaceResource n && n.Metadata.Name == "demo" && n.Metadata.Label(WaypointLabels.Use) == "waypoint");
        // The route's backends are the sample's per-version Services.
        foreach (var version in new[] { "v1", "v2" })
        {
            var service = Assert.IsType<ServiceResource>(Assert.Single(config.Resources, r => r.Kind == "Service" && r.Metadata.Name == "echo-" + version));
            Assert.Equal(version, service.Selector["version"]);
        }

        DemoWaypoint.Remove(dir.Path);
        Assert.Equal(original, Snapshot(dir.Path));
    }

    [Fact]
    public void DeleteRoute_LeavesAFileTheDemoDidNotWrite()
    {
        using var dir = new TempDir();
        var path = DemoWaypoint.RouteFile(dir.Path);
        File.WriteAllText(path, "# mine\n");
        DemoWaypoint.DeleteRoute(dir.Path);
        Assert.True(File.Exists(path));
        Assert.NotNull(DemoWaypoint.WriteRoute(dir.Path, out _));
        DemoWaypoint.DeleteRoute(dir.Path);
        Assert.False(File.Exists(path));
    }

    [Theory]
    [InlineData(91, 9, 100, null)]
    [InlineData(99, 1, 100, null)]
    [InlineData(100, 0, 100, "no request went to echo-v2")]
    [InlineData(60, 40, 100, "40 of 100 requests went to echo-v2")]
    [InlineData(90, 8, 100, "2 of 100 requests were not answered")]
    public void SplitProblem_AcceptsNinetyTenAndRejectsWhatIsNot(int v1, int v2, int total, string? problem)
    {
        var answers = new Dictionary<string, int> { ["echo-v1"] = v1, ["echo-v2"] = v2 };
        var verdict = DemoWaypoint.SplitProblem(answers, total);
        if (problem is null) Assert.Null(verdict);
        else Assert.StartsWith(problem, verdict, StringComparison.Ordinal);
    }

    [Fact]
    public void Tally_NamesThePodsInOrder() =>
        Assert.Equal("echo-v1 91 / echo-v2 9", DemoWaypoint.Tally(new Dictionary<string, int> { ["echo-v2"] = 9, ["echo-v1"] = 91 }));

    [Fact]
    public void RequestsSeen_IsTheGrowthOfTheWaypointsRequestCounter_PerSourceDestinationAndCode()
    {
        const string client = "spiffe://cluster.local/ns/demo/sa/client";
        const string echo = "spiffe://cluster.local/ns/demo/sa/echo";
        static string Row(string workload, string code, int value, string reporter = "waypoint") =>
            $"istio_requests_total{{reporter=\"{reporter}\",source_principal=\"{client}\",destination_workload=\"{workload}\"," +
            $"destination_workload_namespace=\"demo\",destination_principal=\"{echo}\",response_code=\"{code}\"}} {value}\n";
        var before = PrometheusText.Parse(Row("echo-v1", "200", 5) + Row("echo-v2", "200", 1));
        var after = PrometheusText.Parse("# TYPE istio_requests_total counter\n" + Row("echo-v1", "200", 95) + Row("echo-v2", "200", 31)
            + Row("echo-v2", "503", 2) + Row("echo-v1", "200", 7, reporter: "destination") + "istio_request_bytes_sum{reporter=\"waypoint\"} 9\n");
        var rows = DemoWaypoint.RequestsSeen(before, after);
        Assert.Equal(
        [
            new WaypointRequests(client, "demo/echo-v1", echo, "200", 90),
            new WaypointRequests(client, "demo/echo-v2", echo, "200", 30),
            new WaypointRequests(client, "demo/echo-v2", echo, "503", 2),
        ], rows);
        Assert.Equal(9, DemoWaypoint.Growth(before, after, "istio_request_bytes_sum"));
    }

    [Fact]
    public void Render_AddsWhatTheWaypointSaw_In80Columns_IdentitiesWhole()
    {
        var checks = new List<DemoCheck>
        {
            new("7. waypoint: 90/10 split", "demo/client -> echo.demo.svc.cluster.local:80", "SOCKS5 -> ztunnel -> waypoint -> ztunnel", "mTLS",
                "spiffe://cluster.local/ns/demo/sa/client", "spiffe://cluster.local/ns/demo/sa/echo", "echo-v1 91 / echo-v2 9", 40_000, 1.2, true, null),
        };
        var waypoint = new List<WaypointRequests>
        {
            new("spiffe://cluster.local/ns/demo/sa/client", "demo/echo-v1", "spiffe://cluster.local/ns/demo/sa/echo", "200", 91),
            new("spiffe://cluster.local/ns/demo/sa/client", "demo/echo-v2", "spiffe://cluster.local/ns/demo/sa/echo", "200", 29),
        };
        var text = DemoCommand.Render(checks, waypoint, new OutputStyle(80, false));
        var lines = text.TrimEnd('\n').Split('\n');
        Assert.All(lines, l => Assert.True(l.Length <= 80, $"{l.Length} > 80: {l}"));
        Assert.Contains(lines, l => l.StartsWith("What the waypoint saw", StringComparison.Ordinal));
        Assert.Contains(lines, l => l.Contains("demo/echo-v2", StringComparison.Ordinal));
        Assert.Equal(3, lines.Count(l => l.Contains("spiffe://cluster.local/ns/demo/sa/client", StringComparison.Ordinal)));
        Assert.DoesNotContain("What the waypoint saw", DemoCommand.Render(checks, [], new OutputStyle(80, false)), StringComparison.Ordinal);
    }

    private static Dictionary<string, string> Snapshot(string folder) =>
        Directory.GetFiles(folder).ToDictionary(f => Path.GetFileName(f), File.ReadAllText);
}

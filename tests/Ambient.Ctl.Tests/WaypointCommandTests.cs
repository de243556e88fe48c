using System.Net;
using Ambient.Config.Yaml;
using Ambient.Core.Config;
using Ambient.Ctl.Cli;
using Ambient.Ctl.Inspect;
using Ambient.Ctl.Local;
using Ambient.Ctl.Waypoints;
using Ambient.TestCommon;

namespace Ambient.Ctl.Tests;

public class WaypointCommandTests
{
    private static readonly OutputStyle Wide = new(200, Color: false);

    private static TempDir Mesh()
    {
        var dir = new TempDir();
        dir.Write("namespaces.yaml", MeshYaml.Namespace("shop") + MeshYaml.Namespace("other"));
        return dir;
    }

    private static (int Code, string Out, string Err) Apply(string config, WaypointSpec spec, bool enroll = false)
    {
        var o = new StringWriter();
        var e = new StringWriter();
        return (WaypointCommand.Apply(config, spec, enroll, o, e), o.ToString(), e.ToString());
    }

    private static List<Resource> Resources(string config)
    {
        var snapshot = MeshConfig.Read(config);
        return [.. snapshot.Resources, .. snapshot.Ignored];
    }

    [Theory]
    [InlineData("waypoint apply -n shop")]
    [InlineData("waypoint apply -n shop --name wp --for all --enroll-namespace --wait --timeout 90s")]
    [InlineData("waypoint list -A")]
    [InlineData("waypoint status -n shop --name wp")]
    [InlineData("waypoint delete -n shop wp other")]
    [InlineData("waypoint delete -n shop --all")]
    [InlineData("get po -A -o wide")]
    [InlineData("logs deploy/echo -n shop --tail 10 -f")]
    [InlineData("exec deploy/echo -n shop -- curl -s http://echo")]
    public void Parses(string line) => Assert.Empty(CommandLine.Build().Parse(line).Errors);

    [Theory]
    [InlineData("waypoint apply --for everything")]
    [InlineData("waypoint apply --timeout soon")]
    public void Rejects(string line) => Assert.NotEmpty(CommandLine.Build().Parse(line).Errors);

    [Fact]
    public void Apply_WritesTheGatewayIstioctlGenerates_AndEnrollsTheNamespace()
    {
        using var dir = Mesh();
        var (code, output, error) = Apply(dir.Path, new WaypointSpec("shop", "waypoint", "service"), enroll: true);
        Assert.True(code == 0, error);
        Assert.Equal("waypoint shop/waypoint applied\nnamespace shop labeled with \"istio.io/use-waypoint: waypoint\"\n", output.ReplaceLineEndings("\n"));
        var file = Path.Combine(dir.Path, "waypoint-shop-waypoint.yaml");
        var text = File.ReadAllText(file);
        Assert.StartsWith(WaypointFiles.Marker, text, StringComparison.Ordinal);
        Assert.Contains("apiVersion: gateway.networking.k8s.io/v1\nkind: Gateway\n", text, StringComparison.Ordinal);
        Assert.Contains("  name: waypoint\n  namespace: shop\n  labels:\n    istio.io/waypoint-for: service\n", text, StringComparison.Ordinal);
        Assert.Contains("  gatewayClassName: istio-waypoint\n  listeners:\n  - name: mesh\n    port: 15008\n    protocol: HBONE\n", text, StringComparison.Ordinal);
        Assert.True(ManifestParser.Parse(file, text).IsClean);
        var ns = Resources(dir.Path).OfType<NamespaceResource>().Single(n => n.Metadata.Name == "shop");
        Assert.Equal("waypoint", ns.Metadata.Label(WaypointLabels.Use));

        // Again, with another --for: rewritten in place.
        Assert.Equal(0, Apply(dir.Path, new WaypointSpec("shop", "waypoint", "all")).Code);
        Assert.Contains("istio.io/waypoint-for: all", File.ReadAllText(file), StringComparison.Ordinal);
    }

    [Fact]
    public void Apply_NeverOverwritesAUserFile_NorShadowsAGatewayDeclaredElsewhere()
    {
        using var dir = Mesh();
        dir.Write("waypoint-shop-waypoint.yaml", "# mine\n");
        var (code, _, error) = Apply(dir.Path, new WaypointSpec("shop", "waypoint", "service"));
        Assert.Equal(ExitCodes.InvalidInput, code);
        Assert.Contains("was not written by ambientctl", error, StringComparison.Ordinal);
        Assert.Equal("# mine\n", File.ReadAllText(Path.Combine(dir.Path, "waypoint-shop-waypoint.yaml")));

        dir.Write("gateways.yaml", "apiVersion: gateway.networking.k8s.io/v1\nkind: Gateway\nmetadata: {name: wp, namespace: shop}\nspec:\n  gatewayClassName: istio-waypoint\n  listeners: [{name: mesh, port: 15008, protocol: HBONE}]\n");
        (code, _, error) = Apply(dir.Path, new WaypointSpec("shop", "wp", "service"));
        Assert.Equal(ExitCodes.InvalidInput, code);
        Assert.Contains("already declared at", error, StringComparison.Ordinal);
        Assert.False(File.Exists(Path.Combine(dir.Path, "waypoint-shop-wp.yaml")));
    }

    [Theory]
    [InlineData("nosuch", "waypoint", "namespace \"nosuch\" not found")]
    [InlineData("shop", "Bad_Name", "waypoint name 'Bad_Name'")]
    public void Apply_RejectsBadInput(string ns, string name, string message)
    {
        using var dir = Mesh();
        var (code, _, error) = Apply(dir.Path, new WaypointSpec(ns, name, "service"));
        Assert.Equal(ExitCodes.InvalidInput, code);
        Assert.Contains(message, error, StringComparison.Ordinal);
    }

    [Fact]
    public void ListAndDelete_OnlyOurFilesAreDeleted()
    {
        using var dir = Mesh();
        Apply(dir.Path, new WaypointSpec("shop", "waypoint", "service"));
        Apply(dir.Path, new WaypointSpec("other", "east", "workload"));
        dir.Write("user.yaml", "apiVersion: gateway.networking.k8s.io/v1\nkind: Gateway\nmetadata: {name: mine, namespace: shop, labels: {istio.io/waypoint-for: all}}\nspec:\n  gatewayClassName: istio-waypoint\n  listeners: [{name: mesh, port: 15008, protocol: HBONE}]\n");
        var list = new StringWriter();
        var resources = Resources(dir.Path);
        // A Gateway the parser does not type yet counts as a waypoint only in our own files.
        var expected = resources.Exists(r => r is GatewayResource) ? 3 : 2;
        WaypointCommand.List(resources, new MeshRuntime(resources.Where(r => r is not UnknownResource).ToList(), null), null, list, Wide);
        var lines = list.ToString().Split('\n', StringSplitOptions.RemoveEmptyEntries);
        Assert.Equal(["NAMESPACE", "NAME", "WAYPOINT-FOR", "PROGRAMMED"], lines[0].Split(' ', StringSplitOptions.RemoveEmptyEntries));
        Assert.Equal(expected, lines.Length - 1);
        Assert.Contains(lines, l => l.Split(' ', StringSplitOptions.RemoveEmptyEntries) is ["other", "east", "workload", "-"]);

        var o = new StringWriter();
        var e = new StringWriter();
        Assert.Equal(ExitCodes.Failed, WaypointCommand.Delete(dir.Path, "shop", ["waypoint", "mine", "nosuch"], false, o, e));
        Assert.Equal("waypoint shop/waypoint deleted\n", o.ToString().ReplaceLineEndings("\n"));
        Assert.Contains("waypoint shop/nosuch not found", e.ToString(), StringComparison.Ordinal);
        Assert.False(File.Exists(Path.Combine(dir.Path, "waypoint-shop-waypoint.yaml")));
        Assert.True(File.Exists(Path.Combine(dir.Path, "user.yaml")));

        o = new StringWriter();
        Assert.Equal(0, WaypointCommand.Delete(dir.Path, "other", [], true, o, e));
        Assert.Equal("waypoint other/east deleted\n", o.ToString().ReplaceLineEndings("\n"));
        Assert.Equal(ExitCodes.InvalidInput, WaypointCommand.Delete(dir.Path, "other", ["a"], true, o, e));
    }

    private sealed class FakeReadiness(int readyAfter) : IWaypointReadiness
    {
        public int Calls { get; private set; }
        public Task<(bool Serving, string Reason)> CheckAsync(string @namespace, string name, CancellationToken ct) =>
            Task.FromResult(++Calls >= readyAfter ? (true, "process 7") : (false, "the local mesh runs no process for it yet"));
    }

    [Fact]
    public async Task Wait_PollsUntilServing_OrTimesOutSayingWhy()
    {
        var spec = new WaypointSpec("shop", "waypoint", "service");
        var o = new StringWriter();
        var e = new StringWriter();
        var readiness = new FakeReadiness(3);
        Assert.Equal(0, await WaypointCommand.WaitAsync(readiness, spec, TimeSpan.FromSeconds(30), o, e, TestContext.Current.CancellationToken));
        Assert.Equal(3, readiness.Calls);
        Assert.Contains("waypoint shop/waypoint is serving", o.ToString(), StringComparison.Ordinal);

        Assert.Equal(ExitCodes.Failed, await WaypointCommand.WaitAsync(new FakeReadiness(int.MaxValue), spec, TimeSpan.FromMilliseconds(300), o, e,
            TestContext.Current.CancellationToken));
        Assert.Contains("is not serving after 0s: the local mesh runs no process for it yet", e.ToString(), StringComparison.Ordinal);
    }

    [Fact]
    public async Task LocalStateReadiness_NeedsTheProcessAndItsHboneListener()
    {
        var record = new ComponentRecord("waypoint-shop-waypoint", "waypoint", 99, 1, "127.0.3.1", null, "/tmp/wp.log", 0);
        var state = new LocalState(1, 1, "/cfg", "/state", "127.0.0.1", LocalState.PhaseReady, null, [record]);
        var listening = false;
        IPEndPoint? probed = null;
        var readiness = new LocalStateWaypointReadiness(() => state, ep => { probed = ep; return Task.FromResult(listening); });
        var ct = TestContext.Current.CancellationToken;
        Assert.False((await readiness.CheckAsync("shop", "waypoint", ct)).Serving);
        Assert.Equal(new IPEndPoint(IPAddress.Parse("127.0.3.1"), 15008), probed);
        listening = true;
        Assert.True((await readiness.CheckAsync("shop", "waypoint", ct)).Serving);
        Assert.Contains("runs no process", (await readiness.CheckAsync("shop", "other", ct)).Reason, StringComparison.Ordinal);
        state = state with { Components = [record with { Pid = 0 }] };
        Assert.Contains("not running", (await readiness.CheckAsync("shop", "waypoint", ct)).Reason, StringComparison.Ordinal);
        Assert.Contains("no local mesh", (await new LocalStateWaypointReadiness(() => null, _ => Task.FromResult(true)).CheckAsync("a", "b", ct)).Reason,
            StringComparison.Ordinal);
    }

    [Theory]
    [InlineData("90s", 90)]
    [InlineData("2m", 120)]
    [InlineData("45", 45)]
    public void Timeout_Parses(string text, int seconds) => Assert.Equal(TimeSpan.FromSeconds(seconds), WaypointCommand.ParseTimeout(text));
}

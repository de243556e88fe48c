using System.Collections.Immutable;
using System.Net;
using Ambient.Core.Config;
using Ambient.Core.Model;
using Ambient.Ctl.Local;
using Ambient.TestCommon;

namespace Ambient.Ctl.Tests;

public class MeshPlanTests
{
    [Fact]
    public void Dns_upstreams_take_ip_or_ip_port_with_53_by_default_and_anything_else_is_refused()
    {
        var error = new StringWriter();
        Assert.Equal(["127.0.0.1:5353", "10.0.0.2:53", "[fd00::53]:53"],
            Ambient.Ctl.Cli.LocalCommands.ParseDnsUpstreams(["127.0.0.1:5353", "10.0.0.2", "fd00::53"], error)!.Value.Select(e => e.ToString()));
        Assert.Null(Ambient.Ctl.Cli.LocalCommands.ParseDnsUpstreams(["resolver.example"], error));
        Assert.Contains("--dns-upstream: 'resolver.example'", error.ToString());
    }

    [Fact]
    public void SampleMesh_PlansTwoNodesAndEveryPodAtTheAddressIstiodPublishes()
    {
        var plan = MeshPlan.Load(RepoPaths.SampleMesh, out var errors);
        Assert.Empty(errors);
        Assert.NotNull(plan);
        Assert.Equal(["node-1", "node-2"], plan.Nodes.Keys);
        Assert.Equal(IPAddress.Parse("127.0.1.1"), plan.Nodes["node-1"]);
        Assert.Equal(IPAddress.Parse("127.0.1.2"), plan.Nodes["node-2"]);
        var assignment = LoopbackAddressAllocator.AssignAll(plan.Resources);
        Assert.Equal(4, plan.Containers.Length);
        foreach (var c in plan.Containers)
        {
            Assert.Equal(assignment.PodAddress(c.Namespace, c.Pod), c.Address);
            Assert.True(IPAddress.IsLoopback(c.Address));
        }
        var echo = Assert.Single(plan.Containers, c => c.Pod == "echo-v1");
        Assert.Equal(8080, echo.Port);
        Assert.Equal("node-2", echo.Node);
        Assert.Equal("echo", echo.ServiceAccount);
        Assert.Equal("v1", echo.Env["VERSION"]);
    }

    [Fact]
    public void InvalidFolder_ReportsEveryProblemWithFileAndLine()
    {
        using var dir = new TempDir();
        var file = dir.Write("bad.yaml", """
            apiVersion: v1
            kind: Namespace
            metadata:
              name: shop
            ---
            apiVersion: v1
            kind: Pod
            metadata:
              name: web
              namespace: shop
            spec:
              containers:
                - name: web
                  image: nginx
            ---
            apiVersion: v1
            kind: Pod
            metadata:
              name: tool
              namespace: shop
            spec:
              nodeName: node-1
              containers:
                - name: tool
                  command: ["no-such-program-ambient-test"]
            """);
        var plan = MeshPlan.Load(dir.Path, out var errors);
        Assert.Null(plan);
        Assert.Contains(errors, e => e.Source == new SourceLocation(file, 6) && e.Field == "spec.nodeName");
        Assert.Contains(errors, e => e.Source.Line == 6 && e.Field == "spec.containers[web].image" && e.Message.Contains("nginx", StringComparison.Ordinal));
        Assert.Contains(errors, e => e.Source.Line == 16 && e.Field == "spec.containers[tool].command"
            && e.Message.Contains("no-such-program-ambient-test", StringComparison.Ordinal));
    }

    [Fact]
    public void YamlSyntaxError_IsReportedWithItsFile()
    {
        using var dir = new TempDir();
        var file = dir.Write("broken.yaml", "apiVersion: v1\nkind: Pod\nmetadata: [unclosed\n");
        Assert.Null(MeshPlan.Load(dir.Path, out var errors));
        Assert.Contains(errors, e => e.Source.File == file && e.Source.Line > 0);
    }

    [Fact]
    public void PodNamingAnUndeclaredServiceAccount_IsRefusedWithFileAndLine()
    {
        using var dir = new TempDir();
        dir.Write("ns.yaml", MeshYaml.Namespace("tools", dataplaneMode: null));
        var file = dir.Write("pod.yaml", MeshYaml.Sleep("tools", "web", "wbe", "node-1"));
        Assert.Null(MeshPlan.Load(dir.Path, out var errors));
        var error = Assert.Single(errors);
        Assert.Equal(new SourceLocation(file, 1), error.Source);
        Assert.Equal("spec.serviceAccountName", error.Field);
        Assert.Contains("serviceaccount \"wbe\" not found", error.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void AFile_IsAWholeConfig()
    {
        using var dir = new TempDir();
        var file = dir.Write("one.yaml", MeshYaml.Namespace("tools", dataplaneMode: null) + MeshYaml.Sleep("tools", "web", "default", "node-1"));
        dir.Write("broken.yaml", "this: [is not read");
        var plan = MeshPlan.Load(file, out var errors);
        Assert.Empty(errors);
        Assert.Equal(file, plan!.ConfigFolder);
        Assert.Equal("tools/web", Assert.Single(plan.Containers).DisplayName);
        Assert.Equal(Path.GetFullPath(Path.Combine(dir.Path, "..", ".ambient-state")), LocalMeshOptions.DefaultStateFolder(file));
    }

    [Fact]
    public void ErrorLines_HaveNoEmptyField()
    {
        using var dir = new TempDir();
        dir.Write("demo.yaml", "apiVersion: v1\nkind: Pod\nmetadata: [unclosed\n");
        Assert.Null(MeshPlan.Load(dir.Path, out var errors));
        var text = new StringWriter();
        Ambient.Ctl.Cli.LocalCommands.PrintErrors(text, errors);
        Assert.Matches(@"demo\.yaml:\d+: YAML syntax error", text.ToString());
        Assert.DoesNotContain(": :", text.ToString(), StringComparison.Ordinal);
    }

    [Fact]
    public void SameProcess_IgnoresLabelsEnrolmentAndLines_NotWhatRuns()
    {
        var plan = MeshPlan.Load(RepoPaths.SampleMesh, out _)!;
        var echo = plan.Containers.First(c => c.Pod == "echo-v1");
        Assert.True(echo.SameProcess(echo with { InMesh = !echo.InMesh, Source = new SourceLocation("/elsewhere.yaml", 99) }));
        Assert.False(echo.SameProcess(echo with { Image = MeshPlan.SleepImage }));
        Assert.False(echo.SameProcess(echo with { Env = echo.Env.SetItem("VERSION", "v9") }));
        Assert.False(echo.SameProcess(echo with { Args = ["--verbose"] }));
        Assert.False(echo.SameProcess(echo with { Port = 9090 }));
    }

    [Fact]
    public void Plan_LeavesOutOnlyThePodsThatCannotRun_AndKnowsEnrolment()
    {
        var plan = MeshPlan.Load(RepoPaths.SampleMesh, out _)!;
        var bad = plan.Resources.Select(r => r is PodResource { Metadata.Name: "echo-v2" } p
            ? p with { Containers = [p.Containers[0] with { Image = "nginx" }] }
            : r).ToImmutableArray();
        var pods = MeshPlan.Plan(bad);
        Assert.Contains(pods.Problems, e => e.Message.Contains("nginx", StringComparison.Ordinal));
        Assert.Equal(["demo/client", "demo/echo-v1", "legacy/legacy-echo"], pods.Containers.Select(c => c.DisplayName).Order());
        Assert.True(pods.Containers.Single(c => c.Pod == "client").InMesh);
        Assert.False(pods.Containers.Single(c => c.Pod == "legacy-echo").InMesh);
    }

    [Fact]
    public void MissingOrEmptyFolder_IsAnError()
    {
        using var dir = new TempDir();
        Assert.Null(MeshPlan.Load(Path.Combine(dir.Path, "nope"), out var missing));
        Assert.Contains("no such file or folder", Assert.Single(missing).Message, StringComparison.Ordinal);
        Assert.Null(MeshPlan.Load(dir.Path, out var empty));
        Assert.Contains("no *.yaml", Assert.Single(empty).Message, StringComparison.Ordinal);
    }

    [Fact]
    public void CommandPods_GetTheirEnvironmentAndExpandedArguments()
    {
        using var dir = new TempDir();
        dir.Write("ns.yaml", MeshYaml.Namespace("tools", dataplaneMode: null) + MeshYaml.ServiceAccount("tools", "web"));
        dir.Write("pod.yaml", """
            apiVersion: v1
            kind: Pod
            metadata:
              name: web
              namespace: tools
            spec:
              nodeName: node-1
              serviceAccountName: web
              containers:
                - name: web
                  command: ["sh", "-c"]
                  args: ["serve $(POD_IP):$(PORT) $$(LITERAL) $(GREETING)"]
                  ports:
                    - containerPort: 9000
                  env:
                    - name: GREETING
                      value: hi-$(POD_NAME)
            """);
        var plan = MeshPlan.Load(dir.Path, out var errors);
        Assert.Empty(errors);
        var c = Assert.Single(plan!.Containers);
        var env = LocalMesh.PodEnvironment(c);
        Assert.Equal(c.Address.ToString(), env["POD_IP"]);
        Assert.Equal("9000", env["PORT"]);
        Assert.Equal("web", env["SERVICE_ACCOUNT"]);
        Assert.Equal("tools", env["POD_NAMESPACE"]);
        Assert.Equal("hi-web", env["GREETING"]);
        Assert.Equal($"serve {c.Address}:9000 $(LITERAL) hi-web", HostPrograms.Expand(c.Args[0], env));
    }

    [Fact]
    public void PortCheck_NamesTheBusyEndpointAndItsOwner()
    {
        var plan = MeshPlan.Load(RepoPaths.SampleMesh, out _)!;
        var echo = plan.Containers.First(c => c.Pod == "echo-v1");
        using var squatter = new System.Net.Sockets.TcpListener(echo.Address, 8080);
        squatter.Start();
        var e = Assert.Throws<LocalMeshException>(() => LocalMesh.CheckPorts(plan,
            new LocalMeshOptions(Path.GetTempPath(), IPAddress.Parse("127.0.0.1"), null, TimeSpan.FromSeconds(1))));
        Assert.Contains($"{echo.Address}:8080 (pod demo/echo-v1 port 8080)", e.Message, StringComparison.Ordinal);
    }
}

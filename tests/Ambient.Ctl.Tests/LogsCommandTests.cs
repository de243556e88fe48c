using Ambient.Config.Yaml;
using Ambient.Core.Config;
using Ambient.Ctl.Cli;
using Ambient.Ctl.Inspect;
using Ambient.Ctl.Local;
using Ambient.TestCommon;

namespace Ambient.Ctl.Tests;

public class LogsCommandTests
{
    private static ComponentRecord Pod(string component, string ns, string pod, int pid, string log) =>
        new(component, "pod", pid, 1, "127.0.2.1", "node-1", log, 0, new PodRecord(ns, pod, "default", true, new Dictionary<string, string>()));

    private static LocalState State(params ComponentRecord[] components) =>
        new(1, 1, "/cfg", "/state", "127.0.0.1", LocalState.PhaseReady, null, components);

    // Pods as a Deployment generates them: <deployment>-<hash>-<suffix>, label pod-template-hash.
    private const string DeploymentPods = """
        apiVersion: apps/v1
        kind: Deployment
        metadata: {name: echo, namespace: shop}
        spec: {replicas: 2}
        ---
        apiVersion: v1
        kind: Pod
        metadata: {name: echo-5d8f7c-abcde, namespace: shop, labels: {app: echo, pod-template-hash: 5d8f7c}}
        spec: {nodeName: node-1, containers: [{name: echo, image: ambient/echo}]}
        ---
        apiVersion: v1
        kind: Pod
        metadata: {name: echo-5d8f7c-vwxyz, namespace: shop, labels: {app: echo, pod-template-hash: 5d8f7c}}
        spec: {nodeName: node-1, containers: [{name: echo, image: ambient/echo}]}
        ---
        apiVersion: v1
        kind: Pod
        metadata: {name: echo-other, namespace: shop, labels: {app: echo}}
        spec: {nodeName: node-1, containers: [{name: echo, image: ambient/echo}]}
        """;

    private static IReadOnlyList<Resource> Parse(string yaml)
    {
        var parsed = ManifestParser.Parse("mesh.yaml", yaml);
        return parsed.Resources;
    }

    [Fact]
    public async Task Tail_PrintsTheLastLines()
    {
        using var dir = new TempDir();
        var file = dir.Write("pod.log", "one\ntwo\nthree\nfour\n");
        var output = new StringWriter();
        await LogsCommand.PrintAsync(file, 2, false, output, TestContext.Current.CancellationToken);
        Assert.Equal("three\nfour\n", output.ToString().ReplaceLineEndings("\n"));
        output = new StringWriter();
        await LogsCommand.PrintAsync(file, -1, false, output, TestContext.Current.CancellationToken);
        Assert.Equal("one\ntwo\nthree\nfour\n", output.ToString().ReplaceLineEndings("\n"));
        output = new StringWriter();
        await LogsCommand.PrintAsync(file, 0, false, output, TestContext.Current.CancellationToken);
        Assert.Equal("", output.ToString());
    }

    [Fact]
    public async Task Follow_PrintsWhatIsAppendedUntilCancelled()
    {
        using var dir = new TempDir();
        var file = dir.Write("pod.log", "before\n");
        var output = new StringWriter();
        using var stop = CancellationTokenSource.CreateLinkedTokenSource(TestContext.Current.CancellationToken);
        var follow = LogsCommand.PrintAsync(file, 1, true, TextWriter.Synchronized(output), stop.Token);
        await Task.Delay(300, TestContext.Current.CancellationToken);
        await File.AppendAllTextAsync(file, "after\npartial", TestContext.Current.CancellationToken);
        for (var i = 0; i < 50 && !output.ToString().Contains("after", StringComparison.Ordinal); i++) await Task.Delay(100, TestContext.Current.CancellationToken);
        await stop.CancelAsync();
        Assert.Equal(0, await follow);
        Assert.Equal("before\nafter\n", output.ToString().ReplaceLineEndings("\n"));
    }

    [Fact]
    public void Find_APodsLogFile_DefaultingToTheFirstContainer()
    {
        var state = State(
            Pod("pod-shop-web-app", "shop", "web", 10, "/logs/pod-shop-web-app.log"),
            Pod("pod-shop-web-sidecar", "shop", "web", 11, "/logs/pod-shop-web-sidecar.log"),
            Pod("pod-shop-one", "shop", "one", 12, "/logs/pod-shop-one.log"));
        var error = new StringWriter();
        Assert.Equal("/logs/pod-shop-one.log", LogsCommand.Find(state, "one", "shop", null, () => [], error));
        Assert.Equal("/logs/pod-shop-one.log", LogsCommand.Find(state, "pod/one", "shop", null, () => [], error));
        Assert.Equal("/logs/pod-shop-web-app.log", LogsCommand.Find(state, "web", "shop", null, () => [], error));
        Assert.Contains("Defaulted container \"app\" out of: app, sidecar", error.ToString(), StringComparison.Ordinal);
        Assert.Equal("/logs/pod-shop-web-sidecar.log", LogsCommand.Find(state, "web", "shop", "sidecar", () => [], error));
        Assert.Null(LogsCommand.Find(state, "web", "shop", "nosuch", () => [], error));
        Assert.Null(LogsCommand.Find(state, "nosuch", "shop", null, () => [], error));
        Assert.Contains("logs: no pod 'shop/nosuch'", error.ToString(), StringComparison.Ordinal);
    }

    [Fact]
    public void Deploy_ResolvesToTheFirstReadyPodOfTheDeployment()
    {
        var resources = Parse(DeploymentPods);
        var state = State(
            Pod("pod-shop-echo-5d8f7c-abcde", "shop", "echo-5d8f7c-abcde", 0, "/logs/a.log"), // restarting: not ready
            Pod("pod-shop-echo-5d8f7c-vwxyz", "shop", "echo-5d8f7c-vwxyz", 21, "/logs/b.log"),
            Pod("pod-shop-echo-other", "shop", "echo-other", 22, "/logs/c.log"));
        var error = new StringWriter();
        Assert.Equal("/logs/b.log", LogsCommand.Find(state, "deploy/echo", "shop", null, () => resources, error));
        Assert.Equal(("echo-5d8f7c-vwxyz", "shop"),
            PodTargets.Resolve("deployment/echo", "shop", state, () => resources, TemplateHashDeploymentPods.Instance, "exec", out _));

        Assert.Null(PodTargets.Resolve("deploy/nosuch", "shop", state, () => resources, TemplateHashDeploymentPods.Instance, "exec", out var missing));
        Assert.Equal("exec: deployments.apps \"nosuch\" not found in namespace shop", missing);
        var down = State(Pod("pod-shop-echo-5d8f7c-abcde", "shop", "echo-5d8f7c-abcde", 0, "/logs/a.log"));
        Assert.Null(PodTargets.Resolve("deploy/echo", "shop", down, () => resources, TemplateHashDeploymentPods.Instance, "exec", out var notReady));
        Assert.Contains("no ready pod of deployment shop/echo", notReady, StringComparison.Ordinal);
        // The old namespace/name form of exec still works.
        Assert.Equal(("echo-other", "shop"), PodTargets.Resolve("shop/echo-other", null, state, () => resources, TemplateHashDeploymentPods.Instance, "exec", out _));
    }
}

using System.Collections.Immutable;
using System.Net;
using Ambient.Core.Config;
using Ambient.Core.Model;
using Ambient.Istiod.Ca;
using Ambient.TestCommon;
using Microsoft.Extensions.Logging;

namespace Ambient.Istiod.Tests.Config;

/// <summary>The controller knows its config only as an <see cref="IConfigSource"/>: no folder, no YAML here.</summary>
public sealed class MeshControllerTests : IDisposable
{
    private static readonly ImmutableSortedDictionary<string, string> NoLabels = ImmutableSortedDictionary<string, string>.Empty;
    private readonly TempDir _state = new();
    private readonly ListLogger _logs = new(LogLevel.Information);
    private readonly ILoggerFactory _loggerFactory;

    public MeshControllerTests()
    {
        _loggerFactory = LoggerFactory.Create(b => b.AddProvider(_logs));
    }

    public void Dispose()
    {
        _loggerFactory.Dispose();
        _state.Dispose();
    }

    [Fact]
    public async Task Serves_an_in_memory_source_and_follows_its_updates_and_errors()
    {
        var source = new InMemoryConfigSource(AmbientNamespace("demo"), Pod("demo", "a", "node-a", "10.0.0.1"));
        await source.StartAsync(CancellationToken.None);
        var tokens = new NodeTokens(_state.Path);
        using var controller = new MeshController(source, new MeshOptions(), tokens, _loggerFactory.CreateLogger<MeshController>());

        // The first snapshot is served before any change: what the first client sees.
        Assert.Equal(1, controller.Discovery.Current.Number);
        Assert.Equal([IPAddress.Parse("10.0.0.1")], Assert.Single(controller.Snapshot.Workloads).Addresses);
        Assert.True(File.Exists(NodeTokens.TokenPath(_state.Path, "node-a")));

        // An update: a second pod on a new node is published to discovery, and that node gets a token.
        source.Publish([AmbientNamespace("demo"), Pod("demo", "a", "node-a", "10.0.0.1"), Pod("demo", "b", "node-b", "10.0.0.2")]);
        Assert.Equal(2, controller.Discovery.Current.Number);
        Assert.Equal(2, controller.Snapshot.Workloads.Length);
        Assert.NotNull(controller.Snapshot.FindPod("demo", "b"));
        Assert.True(File.Exists(NodeTokens.TokenPath(_state.Path, "node-b")));

        // An error: the source keeps the last good resources and reports what it could not read; the controller keeps
        // serving those resources and says how many errors the generation has.
        var error = new ConfigError(new SourceLocation("pod demo/c", 1), "spec.nodeName", "Required value");
        source.Publish([AmbientNamespace("demo"), Pod("demo", "a", "node-a", "10.0.0.1"), Pod("demo", "b", "node-b", "10.0.0.2")], error);
        Assert.Equal(3, controller.Discovery.Current.Number);
        Assert.Equal(2, controller.Snapshot.Workloads.Length);
        Assert.Contains(_logs.Entries, e => e.Message.Contains("discovery generation 3 published: 2 workloads, 0 services, 1 config errors", StringComparison.Ordinal));

        // Disposed, the controller no longer follows the source.
        controller.Dispose();
        source.Publish([AmbientNamespace("demo")]);
        Assert.Equal(3, controller.Discovery.Current.Number);
    }

    [Fact]
    public async Task Finds_pods_by_name_with_uid_service_account_and_node_following_the_source()
    {
        var source = new InMemoryConfigSource(AmbientNamespace("demo"), Pod("demo", "a", "node-a", "10.0.0.1") with { Uid = "uid-a" });
        await source.StartAsync(CancellationToken.None);
        using var controller = new MeshController(source, new MeshOptions(), new NodeTokens(_state.Path), _loggerFactory.CreateLogger<MeshController>());

        Assert.True(controller.TryGetPod("demo", "a", out var pod));
        Assert.Equal(new KnownPod("uid-a", "default", "node-a"), pod);
        Assert.False(controller.TryGetPod("demo", "b", out _));

        // Re-created under the same name: the new uid is what a token must match.
        source.Publish([AmbientNamespace("demo"), Pod("demo", "a", "node-b", "10.0.0.2") with { Uid = "uid-a2" }]);
        Assert.True(controller.TryGetPod("demo", "a", out pod));
        Assert.Equal(new KnownPod("uid-a2", "default", "node-b"), pod);
    }

    private static NamespaceResource AmbientNamespace(string name) =>
        new("v1", new ObjectMeta(name, "", NoLabels.Add("istio.io/dataplane-mode", "ambient"), NoLabels), new SourceLocation("namespace " + name, 1));

    private static PodResource Pod(string ns, string name, string node, string ip) =>
        new("v1", new ObjectMeta(name, ns, NoLabels, NoLabels), new SourceLocation($"pod {ns}/{name}", 1), "default", node,
            [new ContainerSpec("app", "app:1", [], [], [], NoLabels)], ip);
}

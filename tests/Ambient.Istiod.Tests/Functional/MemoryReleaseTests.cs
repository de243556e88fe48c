using System.Diagnostics;
using System.Globalization;
using System.Net;
using System.Text;
using Ambient.TestCommon;
using Microsoft.Extensions.Logging;

namespace Ambient.Istiod.Tests.Functional;

/// <summary>
/// After a large part of the mesh leaves the config folder, istiod-lite compacts its heap and returns the memory
/// (a removed 10 MiB file left it at 2.3-2.7x its RSS before, bench/run.sh memory); a mesh that only grows does not.
/// </summary>
public sealed class MemoryReleaseTests
{
    private const string BaseMesh = """
        apiVersion: v1
        kind: Namespace
        metadata: {name: small, labels: {istio.io/dataplane-mode: ambient}}
        ---
        apiVersion: v1
        kind: Pod
        metadata: {name: p, namespace: small}
        spec: {nodeName: node-1, containers: [{name: main, image: ambient/sleep}]}
        """;

    [Fact]
    public async Task Removing_most_of_the_mesh_returns_memory_once_and_growing_it_does_not()
    {
        using var dir = new TempDir();
        var config = Path.Combine(dir.Path, "mesh");
        Directory.CreateDirectory(config);
        File.WriteAllText(Path.Combine(config, "base.yaml"), BaseMesh);
        var logs = new ListLogger();
        var options = new IstiodOptions(config, Path.Combine(dir.Path, "state"), new IPEndPoint(IPAddress.Loopback, 0), null, "Kubernetes", "cluster.local");
        await using var host = await IstiodHost.StartAsync(options,
            l => l.SetMinimumLevel(LogLevel.Information).AddProvider(logs), CancellationToken.None);

        // 1,200 pods and 12 services arrive: the level only grows.
        var staged = Path.Combine(dir.Path, "big.yaml");
        File.WriteAllText(staged, ManyPods(1200));
        File.Move(staged, Path.Combine(config, "big.yaml"));
        await UntilAsync(() => host.Mesh.Snapshot.Workloads.Length == 1201, "the 1,200 pods to be published");
        Assert.Empty(Releases(logs));

        File.Delete(Path.Combine(config, "big.yaml"));
        await UntilAsync(() => host.Mesh.Snapshot.Workloads.Length == 1, "the removal to be published");
        // The release waits for 5 s without a further drop, then runs once.
        await UntilAsync(() => Releases(logs).Count == 1, "a memory release after the removal");
        Assert.Contains("load fell from 1213 to 1 workloads and services", Releases(logs)[0].Message, StringComparison.Ordinal);
    }

    private static List<CapturedLogEntry> Releases(ListLogger logs) =>
        [.. logs.Entries.Where(e => e.Message.Contains("memory returned to the OS", StringComparison.Ordinal))];

    private static async Task UntilAsync(Func<bool> condition, string what)
    {
        // Generous for a loaded 2-core machine: a rescan, a rebuild of 1,200 pods, then the 5 s quiet period.
        var deadline = Stopwatch.StartNew();
        while (!condition())
        {
            Assert.True(deadline.Elapsed < TimeSpan.FromSeconds(60), "timed out waiting for " + what);
            await Task.Delay(50);
        }
    }

    private static string ManyPods(int count)
    {
        var yaml = new StringBuilder("""
            apiVersion: v1
            kind: Namespace
            metadata: {name: big, labels: {istio.io/dataplane-mode: ambient}}

            """);
        for (var i = 0; i < count; i++)
        {
            yaml.Append(CultureInfo.InvariantCulture, $$"""
                ---
                apiVersion: v1
                kind: Pod
                metadata:
                  name: p{{i}}
                  namespace: big
                  labels: {group: g{{i % 12}}}
                spec: {nodeName: node-2, containers: [{name: main, image: ambient/echo}]}

                """);
        }
        for (var s = 0; s < 12; s++)
        {
            yaml.Append(CultureInfo.InvariantCulture, $$"""
                ---
                apiVersion: v1
                kind: Service
                metadata: {name: s{{s}}, namespace: big}
                spec:
                  selector: {group: g{{s}}}
                  ports: [{name: tcp, port: 80}]

                """);
        }
        return yaml.ToString();
    }
}

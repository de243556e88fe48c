using Ambient.Config.Yaml;
using Ambient.Core.Config;
using Ambient.TestCommon;

namespace Ambient.Core.Tests.Config;

public sealed class FolderConfigSourceTests : IDisposable
{
    // Generous ceiling for "eventually"; the pick-up-within-1s promise is asserted separately on a manual clock.
    private static readonly TimeSpan Eventually = TimeSpan.FromSeconds(10);

    private readonly TempDir _dir = new();
    private readonly ListLogger<FolderConfigSource> _log = new();

    public void Dispose() => _dir.Dispose();

    private static string Pod(string name, int port) => $"""
        apiVersion: v1
        kind: Pod
        metadata:
          name: {name}
          namespace: demo
        spec:
          containers:
            - name: app
              ports:
                - containerPort: {port}
        """;

    private FolderConfigSource Start()
    {
        var source = new FolderConfigSource(_dir.Path, _log, TimeSpan.FromMilliseconds(50));
        source.Start();
        return source;
    }

    private static async Task<ConfigSnapshot> NextAsync(FolderConfigSource source, long after)
    {
        using var cts = new CancellationTokenSource(Eventually);
        return await source.WaitForGenerationAsync(after + 1, cts.Token);
    }

    // One write can raise several watcher events (truncate, then write), and on a loaded machine the later ones may
    // arrive after the test moved the clock: each restarts the quiet period. Serve every debounce timer until the
    // scan has run; the rescan timer is never advanced, so the result is still the watcher's doing.
    private static async Task<ConfigSnapshot> NextAfterDebounceAsync(FolderConfigSource source, long after, ManualTimeProvider time, TimeSpan debounce)
    {
        using var cts = new CancellationTokenSource(Eventually);
        var next = source.WaitForGenerationAsync(after + 1, cts.Token);
        while (!next.IsCompleted)
        {
            foreach (var due in time.PendingTimers)
            {
                if (due <= debounce)
                {
                    time.Advance(due);
                    break;
                }
            }

            await Task.WhenAny(next, Task.Delay(20, cts.Token));
        }

        return await next;
    }

    private static string[] Keys(ConfigSnapshot s) => s.Resources.Select(r => r.Key).ToArray();

    [Fact]
    public void InitialLoadIsSynchronousSortedAndRecursive()
    {
        _dir.Write("b.yaml", MeshYaml.ServiceAccount("demo", "zeta") + MeshYaml.ServiceAccount("demo", "alpha"));
        _dir.Write("nested/deeper/c.yml", MeshYaml.Namespace("demo", dataplaneMode: null));
        _dir.Write("notes.txt", MeshYaml.Namespace("not-config", dataplaneMode: null));
        _dir.Write(".hidden.yaml", MeshYaml.Namespace("hidden", dataplaneMode: null));

        using var source = Start();

        var s = source.Current;
        Assert.Equal(1, s.Generation);
        Assert.Equal(new[] { "Namespace//demo", "ServiceAccount/demo/alpha", "ServiceAccount/demo/zeta" }, Keys(s));
        Assert.Empty(s.Errors);
        Assert.Equal(Path.Combine(_dir.Path, "nested", "deeper", "c.yml"), s.Resources[0].Source.File);
    }

    [Fact]
    public void EmptyFolderStillPublishesGenerationOne()
    {
        using var source = Start();

        Assert.Equal(1, source.Current.Generation);
        Assert.Empty(source.Current.Resources);
    }

    [Fact]
    public void MissingFolderIsAClearError()
    {
        using var source = new FolderConfigSource(Path.Combine(_dir.Path, "nope"), _log);

        var ex = Assert.Throws<DirectoryNotFoundException>(source.Start);
        Assert.Contains("nope", ex.Message, StringComparison.Ordinal);
    }

    // "Live reload (< 1 s)" is a promise in the source's own clock: a manual one, so it holds on a loaded machine too.
    // Real time only bounds how long the test waits for the watcher's event.
    private static readonly TimeSpan Promised = TimeSpan.FromSeconds(1);

    [Fact]
    public async Task EditIsPickedUpWithinOneSecond()
    {
        var file = _dir.Write("pods.yaml", Pod("echo", 8080));
        var time = new ManualTimeProvider();
        var debounce = TimeSpan.FromMilliseconds(150);
        using var source = new FolderConfigSource(_dir.Path, _log, debounce, time);
        source.Start();
        Assert.Equal(8080, ((PodResource)source.Current.Resources[0]).Containers[0].Ports[0].Port);
        await time.WaitForTimerAsync(due => due == FolderConfigSource.RescanPeriod, Eventually, "the first rescan");

        File.WriteAllText(file, Pod("echo", 9090));
        // The watcher's event starts the debounce: a timer shorter than the rescan, so it is the event that is served.
        var quiet = await time.WaitForTimerAsync(due => due <= debounce, Eventually, "the debounce after the watcher event");
        time.Advance(quiet);
        var next = await NextAfterDebounceAsync(source, 1, time, debounce);

        Assert.Equal(2, next.Generation);
        Assert.Equal(9090, ((PodResource)next.Resources[0]).Containers[0].Ports[0].Port);
        Assert.True(time.Elapsed < FolderConfigSource.RescanPeriod, $"took {time.Elapsed} of the source's time: not the watcher's doing");
        Assert.True(time.Elapsed < Promised, $"took {time.Elapsed} of the source's time");
    }

    [Fact]
    public async Task PeriodicRescanAloneSeesChangesWithinOneSecond()
    {
        var file = _dir.Write("pods.yaml", Pod("echo", 8080));
        var time = new ManualTimeProvider();
        using var source = new FolderConfigSource(_dir.Path, _log, time: time) { UseFileSystemWatcher = false };
        source.Start();
        var period = await time.WaitForTimerAsync(due => due > TimeSpan.Zero, Eventually, "the periodic rescan");
        Assert.True(period < Promised, $"the rescan period is {period}");

        File.WriteAllText(file, Pod("echo", 9090) + "\n");
        time.Advance(period - TimeSpan.FromTicks(1));
        Assert.Equal(1, source.Current.Generation); // the scan sleeps on that timer: nothing is read before it fires
        time.Advance(TimeSpan.FromTicks(1));
        var next = await NextAsync(source, 1);

        Assert.Equal(9090, ((PodResource)next.Resources[0]).Containers[0].Ports[0].Port);
        Assert.Equal(period, time.Elapsed);
    }

    [Fact]
    public async Task BrokenFileKeepsLastGoodResourcesUntilFixed()
    {
        var file = _dir.Write("pods.yaml", Pod("echo", 8080) + "\n---\n" + MeshYaml.ServiceAccount("demo", "echo"));
        using var source = Start();
        var good = source.Current;
        Assert.Equal(2, good.Resources.Length);

        // Break one document: every resource of the file stays as it was, the error is reported.
        File.WriteAllText(file, Pod("echo", 70000) + "\n---\n" + MeshYaml.ServiceAccount("demo", "echo-renamed"));
        var broken = await NextAsync(source, good.Generation);
        Assert.Equal(good.Resources, broken.Resources);
        var error = Assert.Single(broken.Errors);
        Assert.Equal(new SourceLocation(file, 10), error.Source);
        Assert.Equal("spec.containers[0].ports[0].containerPort", error.Field);
        Assert.Equal(1, _log.Count(m => m.Contains("ports[0].containerPort", StringComparison.Ordinal)));

        // Fix it differently: the new content takes effect and the error goes away.
        File.WriteAllText(file, Pod("echo", 7070) + "\n---\n" + MeshYaml.ServiceAccount("demo", "echo-renamed"));
        var fixedUp = await NextAsync(source, broken.Generation);
        Assert.Empty(fixedUp.Errors);
        Assert.Equal(new[] { "Pod/demo/echo", "ServiceAccount/demo/echo-renamed" }, Keys(fixedUp));
        Assert.Equal(7070, ((PodResource)fixedUp.Resources[0]).Containers[0].Ports[0].Port);
    }

    [Fact]
    public async Task SyntaxErrorInANewFileKeepsTheDocumentsBeforeIt()
    {
        using var source = Start();

        var file = _dir.Write("new.yaml", MeshYaml.ServiceAccount("demo", "first") + "kind: [unclosed\n---\n" + MeshYaml.ServiceAccount("demo", "third"));
        var s = await NextAsync(source, 1);

        Assert.Equal(new[] { "ServiceAccount/demo/first" }, Keys(s));
        var error = Assert.Single(s.Errors);
        Assert.Equal(file, error.Source.File);
        Assert.StartsWith("YAML syntax error", error.Message, StringComparison.Ordinal);
    }

    [Fact]
    public async Task AddedAndDeletedFilesAddAndRemoveResources()
    {
        _dir.Write("a.yaml", MeshYaml.ServiceAccount("demo", "a"));
        using var source = Start();

        var b = _dir.Write("sub/b.yaml", MeshYaml.ServiceAccount("demo", "b"));
        var added = await NextAsync(source, 1);
        Assert.Equal(new[] { "ServiceAccount/demo/a", "ServiceAccount/demo/b" }, Keys(added));

        File.Delete(b);
        var removed = await NextAsync(source, added.Generation);
        Assert.Equal(new[] { "ServiceAccount/demo/a" }, Keys(removed));

        // Renaming a file away from a config extension removes it too.
        File.Move(Path.Combine(_dir.Path, "a.yaml"), Path.Combine(_dir.Path, "a.yaml.bak"));
        var renamed = await NextAsync(source, removed.Generation);
        Assert.Empty(renamed.Resources);
    }

    [Fact]
    public async Task DuplicateAcrossFilesLaterPathLosesUntilTheFirstGoesAway()
    {
        var a = _dir.Write("a.yaml", Pod("echo", 1111));
        var b = _dir.Write("b.yaml", "\n\n" + Pod("echo", 2222));
        using var source = Start();

        var s = source.Current;
        var pod = (PodResource)Assert.Single(s.Resources);
        Assert.Equal(1111, pod.Containers[0].Ports[0].Port);
        var error = Assert.Single(s.Errors);
        Assert.Equal(new SourceLocation(b, 3), error.Source);
        Assert.Contains($"duplicate Pod/demo/echo: already defined at {a}:1", error.Message, StringComparison.Ordinal);

        File.Delete(a);
        var after = await NextAsync(source, s.Generation);
        Assert.Equal(2222, ((PodResource)Assert.Single(after.Resources)).Containers[0].Ports[0].Port);
        Assert.Empty(after.Errors);
    }

    [Fact]
    public async Task UnknownKindsAreKeptAndReportedOnce()
    {
        _dir.Write("route.yaml", "apiVersion: gateway.networking.k8s.io/v1alpha2\nkind: TLSRoute\nmetadata: {name: r, namespace: demo}\n");
        using var source = Start();

        var ignored = Assert.Single(source.Current.Ignored);
        Assert.Equal("TLSRoute/demo/r", ignored.Key);
        Assert.Empty(source.Current.Resources);

        // More generations: the route must not be reported again.
        _dir.Write("x.yaml", MeshYaml.ServiceAccount("demo", "x"));
        var g2 = await NextAsync(source, 1);
        _dir.Write("x.yaml", MeshYaml.ServiceAccount("demo", "y"));
        var g3 = await NextAsync(source, g2.Generation);
        Assert.Single(g3.Ignored);
        Assert.Equal(1, _log.Count(m => m.Contains("TLSRoute/demo/r", StringComparison.Ordinal) && m.StartsWith("Ignoring", StringComparison.Ordinal)));
    }

    [Fact]
    public async Task DeploymentPodsKeepTheirNamesWhenTheReplicaCountChanges()
    {
        static string Deployment(int replicas) => $$$"""
            apiVersion: apps/v1
            kind: Deployment
            metadata: {name: web, namespace: demo}
            spec:
              replicas: {{{replicas}}}
              selector: {matchLabels: {app: web}}
              template:
                metadata: {labels: {app: web}}
                spec: {containers: [{name: web, image: ambient/echo}]}
            """;
        _dir.Write("web.yaml", Deployment(2));
        using var source = Start();
        var before = source.Current.Resources.OfType<PodResource>().Select(p => p.Metadata.Name).ToList();
        Assert.Equal(2, before.Count);
        Assert.Single(source.Current.Resources.OfType<DeploymentResource>());

        _dir.Write("web.yaml", Deployment(3));
        var after = await NextAsync(source, source.Current.Generation);

        var names = after.Resources.OfType<PodResource>().Select(p => p.Metadata.Name).ToList();
        Assert.Equal(3, names.Count);
        Assert.Subset(names.ToHashSet(), before.ToHashSet());
        // Pods that stayed are the very same records, so the supervisor leaves their processes alone.
        foreach (var name in before)
        {
            Assert.Equal(source.Current.Resources.OfType<PodResource>().Single(p => p.Metadata.Name == name),
                after.Resources.OfType<PodResource>().Single(p => p.Metadata.Name == name));
        }
    }

    [Fact]
    public async Task RewritingIdenticalContentDoesNotBumpTheGeneration()
    {
        var file = _dir.Write("a.yaml", MeshYaml.ServiceAccount("demo", "a"));
        using var source = Start();

        File.WriteAllText(file, MeshYaml.ServiceAccount("demo", "a"));
        File.SetLastWriteTimeUtc(file, DateTime.UtcNow.AddSeconds(5));
        await Task.Delay(1200);
        Assert.Equal(1, source.Current.Generation);

        // ...while a real change right after still gets through.
        File.WriteAllText(file, MeshYaml.ServiceAccount("demo", "b"));
        Assert.Equal(new[] { "ServiceAccount/demo/b" }, Keys(await NextAsync(source, 1)));
    }

    [Fact]
    public async Task AThrowingHandlerDoesNotStopTheWatcher()
    {
        var file = _dir.Write("a.yaml", MeshYaml.ServiceAccount("demo", "a"));
        using var source = Start();
        var seen = new List<long>();
        source.Changed += _ => throw new InvalidOperationException("subscriber bug");
        source.Changed += s => { lock (seen) seen.Add(s.Generation); };

        File.WriteAllText(file, MeshYaml.ServiceAccount("demo", "b"));
        await NextAsync(source, 1);
        File.WriteAllText(file, MeshYaml.ServiceAccount("demo", "c"));
        var g3 = await NextAsync(source, 2);

        Assert.Equal(new[] { "ServiceAccount/demo/c" }, Keys(g3));
        await Task.Delay(100);
        lock (seen) Assert.Equal(new long[] { 2, 3 }, seen);
        Assert.Equal(2, _log.Count(m => m.Contains("handler failed", StringComparison.Ordinal)));
    }

    [Fact]
    public async Task ErrorsAreLoggedOncePerDistinctError()
    {
        _dir.Write("bad.yaml", "apiVersion: v1\nkind: ServiceAccount\nmetadata: {namespace: demo}\n");
        using var source = Start();
        Assert.Single(source.Current.Errors);

        _dir.Write("other.yaml", MeshYaml.ServiceAccount("demo", "o"));
        var g2 = await NextAsync(source, 1);
        Assert.Single(g2.Errors);

        Assert.Equal(1, _log.Count(m => m.StartsWith("Config error at", StringComparison.Ordinal)));
    }

    [Fact]
    public void A_whole_file_error_is_logged_without_an_empty_field()
    {
        _dir.Write("broken.yaml", "kind: [unclosed\n");
        using var source = Start();
        var line = Assert.Single(_log.Entries, e => e.Message.StartsWith("Config error at", StringComparison.Ordinal)).Message;
        Assert.Contains("broken.yaml:", line, StringComparison.Ordinal);
        Assert.DoesNotContain(": :", line, StringComparison.Ordinal);
    }

    [Fact]
    public async Task WaitForGenerationHonoursCancellationAndDispose()
    {
        var source = Start();
        using (var cts = new CancellationTokenSource(TimeSpan.FromMilliseconds(100)))
        {
            await Assert.ThrowsAnyAsync<OperationCanceledException>(() => source.WaitForGenerationAsync(5, cts.Token));
        }
        var pending = source.WaitForGenerationAsync(5, CancellationToken.None);
        source.Dispose();
        await Assert.ThrowsAsync<ObjectDisposedException>(() => pending);
        Assert.Equal(1, (await source.WaitForGenerationAsync(1, CancellationToken.None)).Generation);
    }
}

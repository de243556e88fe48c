using System.Security.Cryptography.X509Certificates;
using Ambient.Core.Protos.Workload;
using Ambient.Core.Xds;
using Ambient.TestCommon;
using Ambient.Dataplane.Xds;
using Microsoft.Extensions.Logging;
using static Ambient.Ztunnel.Tests.State.TestMeshes;

namespace Ambient.Ztunnel.Tests.State;

/// <summary>The delta xDS client against a real istiod-lite: sync, live edits, removals, restarts, bad credentials.</summary>
public sealed class DeltaXdsClientTests : IAsyncLifetime
{
    private static readonly TimeSpan Sync = TimeSpan.FromSeconds(15);
    private IstiodTestHost _istiod = null!;
    private readonly ListLogger _log = new();

    public async ValueTask InitializeAsync() => _istiod = await IstiodTestHost.StartAsync(Demo());

    public async ValueTask DisposeAsync() => await _istiod.DisposeAsync();

    [Fact]
    public async Task Initial_sync_has_every_workload_and_service_then_edits_and_deletions_arrive()
    {
        await using var client = _istiod.CreateXdsClient("node-1", _log);
        MeshSnapshotHolder published = new();
        client.SnapshotChanged += s => published.Last = s;
        client.Start();
        await client.WaitForSyncAsync(TestContext.Current.CancellationToken).WaitAsync(Sync, TestContext.Current.CancellationToken);

        var snapshot = client.Current;
        Assert.Same(snapshot, published.Last);
        Assert.Equal(4, snapshot.Workloads.Length);
        Assert.Equal(TunnelProtocol.Hbone, snapshot.FindWorkloadByUid(Uid + "demo/echo-v1")!.TunnelProtocol);
        Assert.Equal(TunnelProtocol.None, snapshot.FindWorkloadByUid(Uid + "legacy/legacy-echo")!.TunnelProtocol);
        Assert.Equal("node-2", snapshot.FindWorkloadByUid(Uid + "demo/echo-v2")!.Node);
        Assert.NotNull(snapshot.FindServiceByHostname("echo.demo.svc.cluster.local"));
        Assert.Equal(4, snapshot.Services.Length);
        Assert.Equal(2, snapshot.EndpointsOf(snapshot.FindServiceByHostname("echo.demo")!).Length);
        Assert.Empty(client.Authorizations);
        Assert.True(client.Stats.Connected);
        Assert.Equal(0, client.Stats.Nacks);

        // A new pod arrives as a push on the open stream: no reconnect (which would also bring it, later), no NACK.
        // How soon istiod sees the edit is FolderConfigSourceTests' business, on a manual clock; a wall-clock bound
        // here would only measure the machine's load.
        var connects = client.Stats.Connects;
        _istiod.WriteConfig("extra.yaml", Pod("echo-v3", "demo", "node-1", "echo", "echo"));
        var withNew = await Eventually.SnapshotAsync(client, s => s.FindWorkloadByUid(Uid + "demo/echo-v3") is not null, "echo-v3 to arrive", seconds: 15);
        Assert.Equal(connects, client.Stats.Connects);
        Assert.True(client.Stats.Connected);
        Assert.Equal(3, withNew.EndpointsOf(withNew.FindServiceByKey("demo/echo.demo.svc.cluster.local")!).Length);

        // Deleting the pod's file removes it (removed_resources) and its endpoint.
        _istiod.DeleteConfig("extra.yaml");
        var without = await Eventually.SnapshotAsync(client, s => s.FindWorkloadByUid(Uid + "demo/echo-v3") is null, "echo-v3 to disappear");
        Assert.Equal(2, without.EndpointsOf(without.FindServiceByKey("demo/echo.demo.svc.cluster.local")!).Length);
        Assert.Equal(0, client.Stats.Nacks);
        Assert.NotEmpty(_istiod.Log.Matching("xDS ACK from node-1"));
    }

    [Fact]
    public async Task Keeps_the_last_snapshot_while_istiod_is_down_and_receives_only_the_difference_after_restart()
    {
        await using var client = _istiod.CreateXdsClient("node-1", _log);
        client.Start();
        await client.WaitForSyncAsync(TestContext.Current.CancellationToken).WaitAsync(Sync, TestContext.Current.CancellationToken);
        Assert.Equal(8, client.Stats.FirstResponseResources[XdsTypeUrls.Address]);
        var before = client.Current;

        await _istiod.StopAsync();
        await Eventually.TrueAsync(() => !client.Stats.Connected, TimeSpan.FromSeconds(10), "the client to notice istiod stopped");
        // While disconnected the last snapshot stays in effect, also after a failed reconnect attempt.
        var connectsAtOutage = client.Stats.Connects;
        await Eventually.TrueAsync(() => client.Stats.Connects > connectsAtOutage, TimeSpan.FromSeconds(15), "a reconnect attempt while istiod is down");
        Assert.False(client.Stats.Connected);
        Assert.Same(before, client.Current);
        Assert.NotNull(client.Stats.LastError);
        var connectsWhileDown = client.Stats.Connects;

        // Change the mesh while istiod is down: one new pod, one removed.
        _istiod.WriteConfig("extra.yaml", Pod("echo-v3", "demo", "node-1", "echo", "echo"));
        File.Delete(Path.Combine(_istiod.ConfigFolder, "nobody.yaml"));
        await _istiod.StartAgainAsync();

        var after = await Eventually.SnapshotAsync(client,
            s => s.FindWorkloadByUid(Uid + "demo/echo-v3") is not null, "the reconnect to deliver echo-v3", seconds: 15);
        Assert.Null(after.FindServiceByKey("demo/nobody.demo.svc.cluster.local"));
        Assert.Equal(before.Workloads.Length + 1, after.Workloads.Length);
        var stats = client.Stats;
        // Delivered by a stream started after the outage, which is up and answering.
        Assert.True(stats.Connects > connectsWhileDown, $"no stream was started after istiod came back ({stats.Connects} connects, {connectsWhileDown} while down)");
        Assert.True(stats.Connected);
        Assert.Null(stats.LastError);
        // initial_resource_versions made istiod send only what changed: the new pod, plus echo's endpoints
        // unchanged => exactly one resource added and one removed.
        Assert.Equal(1, stats.FirstResponseResources[XdsTypeUrls.Address]);
        Assert.Equal(1, stats.FirstResponseRemoved[XdsTypeUrls.Address]);
        Assert.NotEmpty(_istiod.Log.Matching("Address 1 resources, 1 removed"));
    }

    [Fact]
    public async Task A_bad_token_is_logged_clearly_and_retried_without_a_snapshot()
    {
        await using var client = _istiod.CreateXdsClient("node-1", _log, token: () => "not-a-token");
        client.Start();
        await Eventually.TrueAsync(() => client.Stats.Connects >= 3, TimeSpan.FromSeconds(10), "three connection attempts");
        var errors = _log.Matching("refused node 'node-1' credentials", LogLevel.Error);
        Assert.NotEmpty(errors);
        Assert.Contains("Bearer", errors[0], StringComparison.Ordinal);
        Assert.False(client.WaitForSyncAsync(TestContext.Current.CancellationToken).IsCompleted);
        Assert.Empty(client.Current.Workloads);
        Assert.Contains("Unauthenticated", client.Stats.LastError, StringComparison.Ordinal);
    }

    [Fact]
    public async Task An_istiod_whose_certificate_does_not_chain_to_the_configured_root_is_refused()
    {
        using var other = TestCertificates.CreateRoot("other root");
        await using var client = _istiod.CreateXdsClient("node-1", _log, roots: [X509CertificateLoader.LoadCertificate(other.RawData)]);
        client.Start();
        await Eventually.TrueAsync(() => client.Stats.Connects >= 2, TimeSpan.FromSeconds(10), "two connection attempts");
        Assert.False(client.WaitForSyncAsync(TestContext.Current.CancellationToken).IsCompleted);
        Assert.Empty(client.Current.Workloads);
        Assert.NotEmpty(_log.Matching("xDS stream to", LogLevel.Warning));
    }

    private sealed class MeshSnapshotHolder
    {
        public Ambient.Core.Model.MeshSnapshot? Last { get; set; }
    }
}

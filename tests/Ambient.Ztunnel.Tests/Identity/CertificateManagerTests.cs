using System.Security.Cryptography.X509Certificates;
using Ambient.Core.Identity;
using Ambient.TestCommon;
using Ambient.Dataplane.Identity;
using Ambient.Dataplane.State;
using Ambient.Ztunnel.Tests.State;
using Microsoft.Extensions.Logging;

namespace Ambient.Ztunnel.Tests.Identity;

/// <summary>The certificate manager against a real istiod-lite CA: issuance, refusal, renewal, CA outages.</summary>
public sealed class CertificateManagerTests : IAsyncLifetime
{
    private static readonly SpiffeId Echo = SpiffeId.Parse("spiffe://cluster.local/ns/demo/sa/echo");
    private static readonly SpiffeId ClientId = SpiffeId.Parse("spiffe://cluster.local/ns/demo/sa/client");
    private readonly ListLogger _log = new();
    private IstiodTestHost _istiod = null!;

    public async ValueTask InitializeAsync() => _istiod = await IstiodTestHost.StartAsync(TestMeshes.Demo());

    public async ValueTask DisposeAsync() => await _istiod.DisposeAsync();

    private static readonly TimeSpan MaxBackoff = TimeSpan.FromSeconds(1);

    // Real time only bounds how long the test waits for an event; what is asserted about timing is in the clock's terms.
    private static readonly TimeSpan EventDeadline = TimeSpan.FromSeconds(15);

    private CertificateManager Manager(string node, TimeSpan? ttl = null, TimeProvider? time = null) => new(new CertificateManagerOptions
    {
        CaAddress = _istiod.Address,
        Token = () => _istiod.TokenOf(node),
        RequestedTtl = ttl ?? TimeSpan.FromHours(24),
        InitialBackoff = TimeSpan.FromMilliseconds(200),
        MaxBackoff = MaxBackoff,
        Time = time ?? TimeProvider.System,
    }, TrustBundle.FromPem(File.ReadAllText(Path.Combine(_istiod.StateFolder, "root-cert.pem"))), _log.CreateLogger("certs"));

    private static Task<WorkloadCertificate> CertificateAsync(CertificateManager m, SpiffeId id, Func<WorkloadCertificate, bool>? condition = null, double seconds = 10)
        => Eventually.ValueAsync(
            () => m.TryGetWorkloadCertificate(id.ToString(), out var c) && (condition?.Invoke(c) ?? true) ? c : null,
            TimeSpan.FromSeconds(seconds), "a certificate for " + id);

    [Fact]
    public async Task Follows_the_local_hbone_identities_of_the_node_and_drops_those_that_leave()
    {
        await using var xds = _istiod.CreateXdsClient("node-2", _log);
        var state = new ProxyState("node-2");
        xds.SnapshotChanged += state.Update;
        xds.Start();
        await xds.WaitForSyncAsync().WaitAsync(TimeSpan.FromSeconds(15), TestContext.Current.CancellationToken);
        await using var manager = Manager("node-2");
        manager.Attach(state);

        var issued = await CertificateAsync(manager, Echo);
        Assert.True(manager.TryGetCertificate(Echo, out var cert, out var chain));
        Assert.True(cert.HasPrivateKey);
        Assert.Equal(["spiffe://cluster.local/ns/demo/sa/echo"], CertificateSpiffe.GetUriSans(cert));
        Assert.True(manager.Trust.ValidateChain(cert, chain, out var identity, out var error), error);
        Assert.Equal(Echo, identity);
        Assert.Equal(manager.Trust.Roots[0].Thumbprint, chain[^1].Thumbprint);
        // Cached TLS contexts stay valid: the same instances come back until renewal.
        Assert.True(manager.TryGetCertificate(Echo.ToString(), out var again, out var chainAgain));
        Assert.Same(cert, again);
        Assert.Same(chain, chainAgain);
        Assert.Same(issued.CertificateWithKey, cert);
        Assert.InRange(issued.NotAfter - issued.NotBefore, TimeSpan.FromHours(24), TimeSpan.FromHours(24.1));
        Assert.True(manager.AllReady);

        // Only node-2's in-mesh identities: legacy-echo (not in the mesh) and client (node-1) get nothing.
        var rows = manager.Snapshot();
        var row = Assert.Single(rows);
        Assert.Equal(Echo.ToString(), row.Identity);
        Assert.Equal(CertificateState.Ready, row.State);
        Assert.Equal(cert.SerialNumber, row.SerialNumber);
        Assert.Equal(issued.RefreshAt, row.NextAttempt);
        Assert.False(manager.TryGetCertificate(ClientId, out _, out _));

        // Both echo pods leave the node: the identity is dropped.
        _istiod.DeleteConfig("echo.yaml");
        await Eventually.TrueAsync(() => manager.Snapshot().IsEmpty, TimeSpan.FromSeconds(10), "the echo identity to be dropped");
        Assert.False(manager.TryGetCertificate(Echo, out _, out _));
        Assert.True(manager.AllReady);
    }

    [Fact]
    public async Task An_identity_of_another_node_is_refused_by_istiod_and_reported_while_retrying()
    {
        await using var manager = Manager("node-1");
        manager.SetIdentities([Echo, ClientId]);
        await CertificateAsync(manager, ClientId);
        await Eventually.TrueAsync(() => manager.Snapshot()[1].Failures >= 2, TimeSpan.FromSeconds(10), "two refused attempts for echo");

        var echoRow = manager.Snapshot().Single(r => r.Identity == Echo.ToString());
        Assert.Equal(CertificateState.Failed, echoRow.State);
        Assert.Null(echoRow.SerialNumber);
        Assert.Contains("Unauthenticated", echoRow.LastError, StringComparison.Ordinal);
        Assert.Contains("no running pod", echoRow.LastError, StringComparison.Ordinal);
        Assert.False(manager.AllReady);
        Assert.False(manager.TryGetCertificate(Echo, out _, out _));
        Assert.NotEmpty(_log.Matching("certificate for spiffe://cluster.local/ns/demo/sa/echo not obtained", LogLevel.Warning));
        Assert.Equal(CertificateState.Ready, manager.Snapshot().Single(r => r.Identity == ClientId.ToString()).State);
    }

    [Fact]
    public async Task Renews_at_half_life_with_a_new_serial_and_serves_the_old_certificate_until_then()
    {
        // The manager's clock moves only when the test moves it; istiod's CA issues in real time.
        var time = new ManualTimeProvider();
        var received = time.GetUtcNow();
        await using var manager = Manager("node-2", TimeSpan.FromSeconds(6), time);
        manager.SetIdentities([Echo]);
        var first = await CertificateAsync(manager, Echo);

        // The CA back-dates NotBefore by 2 minutes, so NotBefore + half the lifetime of a 6 s certificate is long past
        // when it arrives: the renewal is due at half the life that remained on receipt.
        Assert.Equal(received + (first.NotAfter - received) / 2, first.RefreshAt);
        var renewalDue = first.RefreshAt - received;
        Assert.Equal(renewalDue, await time.WaitForTimerAsync(due => due == renewalDue, EventDeadline, "the renewal at half-life"));

        // One tick before that instant the renewal has not run (the worker sleeps on that timer), and the very same
        // certificate is served.
        time.Advance(renewalDue - TimeSpan.FromTicks(1));
        Assert.True(manager.TryGetCertificate(Echo, out var current, out _));
        Assert.Same(first.CertificateWithKey, current);
        Assert.Equal([TimeSpan.FromTicks(1)], time.PendingTimers);

        time.Advance(TimeSpan.FromTicks(1));
        var second = await CertificateAsync(manager, Echo, c => c.SerialNumber != first.SerialNumber, seconds: EventDeadline.TotalSeconds);
        // Received exactly at the half-life instant (its own renewal is computed from that moment), well before expiry.
        Assert.Equal(first.RefreshAt, time.GetUtcNow());
        Assert.Equal(WorkloadCertificate.ComputeRefreshAt(second.NotBefore, second.NotAfter, first.RefreshAt), second.RefreshAt);
        Assert.True(first.RefreshAt < first.NotAfter);
        // istiod's CA runs on real time, in which both were issued moments apart (possibly within one second).
        Assert.True(second.NotAfter >= first.NotAfter);
        // The replaced certificate was not disposed under whoever still holds it.
        Assert.NotNull(first.CertificateWithKey.GetECDsaPrivateKey());
        Assert.True(manager.Trust.ValidateChain(second.CertificateWithKey, second.Chain, out var id, out var error), error);
        Assert.Equal(Echo, id);
    }

    [Fact]
    public async Task Keeps_serving_the_certificate_while_istiod_is_down_and_recovers_when_it_returns()
    {
        var time = new ManualTimeProvider();
        var received = time.GetUtcNow();
        await using var manager = Manager("node-2", TimeSpan.FromSeconds(14), time);
        manager.SetIdentities([Echo]);
        var first = await CertificateAsync(manager, Echo);
        var renewalDue = first.RefreshAt - received;
        await time.WaitForTimerAsync(due => due == renewalDue, EventDeadline, "the renewal at half-life");
        await _istiod.StopAsync();

        // The renewal (~7 s into the certificate's life) fails; each failure arms a backoff of at most MaxBackoff,
        // and the old certificate is served meanwhile.
        time.Advance(renewalDue);
        for (var failures = 1; failures <= 3; failures++)
        {
            await Eventually.TrueAsync(() => manager.Snapshot()[0].Failures >= failures, EventDeadline, $"failed renewal {failures}");
            var backoff = await time.WaitForTimerAsync(due => due > TimeSpan.Zero && due <= MaxBackoff, EventDeadline, $"the backoff after failure {failures}");
            var row = manager.Snapshot()[0];
            Assert.Equal(CertificateState.Retrying, row.State);
            Assert.Equal(first.SerialNumber, row.SerialNumber);
            Assert.True(manager.TryGetCertificate(Echo, out var stillServed, out _));
            Assert.Same(first.CertificateWithKey, stillServed);
            Assert.True(manager.AllReady);
            if (failures < 3) time.Advance(backoff);
        }
        Assert.NotEmpty(_log.Matching("still serving serial " + first.SerialNumber, LogLevel.Warning));

        // istiod is back: the next retries succeed (a first one may still meet the restart half-way).
        await _istiod.StartAgainAsync();
        WorkloadCertificate? renewed = null;
        for (var retry = 0; retry < 4 && renewed is null; retry++)
        {
            var failuresBefore = manager.Snapshot()[0].Failures;
            time.Advance(await time.WaitForTimerAsync(due => due > TimeSpan.Zero && due <= MaxBackoff, EventDeadline, "the next retry"));
            await Eventually.TrueAsync(() =>
            {
                if (manager.TryGetWorkloadCertificate(Echo.ToString(), out var c) && c.SerialNumber != first.SerialNumber)
                {
                    renewed = c;
                    return true;
                }
                return manager.Snapshot()[0].Failures > failuresBefore;
            }, EventDeadline, "the retry's outcome");
        }
        Assert.NotNull(renewed);
        // Renewal, three to six backoffs of at most 1 s: recovered while the old certificate was still valid.
        Assert.True(time.GetUtcNow() < first.NotAfter, $"recovered at {time.GetUtcNow():O}, after the old certificate expired at {first.NotAfter:O}");
        Assert.Equal(CertificateState.Ready, manager.Snapshot()[0].State);
        Assert.Equal(0, manager.Snapshot()[0].Failures);
        Assert.NotEqual(first.SerialNumber, renewed.SerialNumber);
    }

    [Fact]
    public void Refresh_time_is_half_life_or_half_the_remaining_life_for_back_dated_short_certificates()
    {
        var t0 = new DateTimeOffset(2025, 1, 1, 0, 0, 0, TimeSpan.Zero);
        Assert.Equal(t0.AddHours(12) - TimeSpan.FromMinutes(1),
            WorkloadCertificate.ComputeRefreshAt(t0 - TimeSpan.FromMinutes(2), t0.AddHours(24), t0));
        Assert.Equal(t0.AddSeconds(3), WorkloadCertificate.ComputeRefreshAt(t0 - TimeSpan.FromMinutes(2), t0.AddSeconds(6), t0));
    }
}

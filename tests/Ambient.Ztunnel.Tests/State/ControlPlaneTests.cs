using Ambient.Core.Identity;
using Ambient.TestCommon;
using Ambient.Dataplane.Control;
using Microsoft.Extensions.Logging;

namespace Ambient.Ztunnel.Tests.State;

/// <summary>Discovery, proxy state and certificates wired together against a real istiod-lite.</summary>
public sealed class ControlPlaneTests : IAsyncLifetime
{
    private IstiodTestHost _istiod = null!;
    private readonly ListLogger _log = new();

    public async ValueTask InitializeAsync() => _istiod = await IstiodTestHost.StartAsync(TestMeshes.Demo());

    public async ValueTask DisposeAsync() => await _istiod.DisposeAsync();

    private ControlPlane Create(string node, string? tokenPath = null) => ControlPlane.Create(new ControlPlaneOptions
    {
        IstiodAddress = _istiod.Address,
        RootCertificatePath = Path.Combine(_istiod.StateFolder, "root-cert.pem"),
        TokenPath = tokenPath ?? Path.Combine(_istiod.StateFolder, "tokens", node + ".token"),
        NodeName = node,
    }, LoggerFactory.Create(b => b.AddProvider(_log).SetMinimumLevel(LogLevel.Debug)));

    [Fact]
    public async Task Becomes_ready_with_the_mesh_and_certificates_for_the_local_identities()
    {
        await using var control = Create("node-2");
        Assert.False(control.IsReady);
        control.Start();
        await control.WaitUntilReadyAsync(TestContext.Current.CancellationToken).WaitAsync(TimeSpan.FromSeconds(15), TestContext.Current.CancellationToken);
        Assert.True(control.IsReady);
        Assert.Equal(2, control.State.LocalWorkloads.InMesh.Length);
        Assert.True(control.Certificates.TryGetCertificate(SpiffeId.Parse("spiffe://cluster.local/ns/demo/sa/echo"), out _, out _));
        Assert.True(control.State.ResolveDestination(control.State.LocalWorkloads.InMesh[0], "echo", 80).Succeeded);
    }

    [Fact]
    public async Task A_missing_token_file_is_reported_by_name_and_never_ready()
    {
        var missing = Path.Combine(_istiod.StateFolder, "tokens", "node-9.token");
        await using var control = Create("node-9", missing);
        control.Start();
        await Eventually.TrueAsync(() => control.Xds.Stats.LastError is not null, TimeSpan.FromSeconds(10), "a connection error");
        Assert.Contains("node-9.token", control.Xds.Stats.LastError, StringComparison.Ordinal);
        Assert.False(control.IsReady);
        Assert.Throws<IOException>(() => ControlPlane.Create(new ControlPlaneOptions
        {
            IstiodAddress = _istiod.Address,
            RootCertificatePath = Path.Combine(_istiod.StateFolder, "no-such-root.pem"),
            TokenPath = missing,
            NodeName = "node-9",
        }, LoggerFactory.Create(_ => { })));
    }
}

using System.Security.Cryptography.X509Certificates;
using System.Text.Json;
using Ambient.Core.Identity;
using Ambient.Core.Xds;
using Ambient.Istiod.Ca;
using Ambient.TestCommon;
using Ambient.Dataplane.Xds;

namespace Ambient.Ztunnel.Tests.Functional;

/// <summary>
/// A root rotation through real ztunnels and an in-process istiod-lite: the proxies learn old + new roots by the xDS
/// push, re-request their leaves when told, and end up presenting leaves of the new root and trusting it alone,
/// while a tunnel opened before the rotation keeps carrying bytes.
/// </summary>
[System.Runtime.Versioning.UnsupportedOSPlatform("windows")]
public sealed class RootRotationTests
{
    private const string Echo = "spiffe://cluster.local/ns/rotate/sa/echo";
    private const string Client = "spiffe://cluster.local/ns/rotate/sa/client";

    [Fact]
    public async Task Rotation_moves_every_proxy_to_the_new_root_without_breaking_an_open_tunnel()
    {
        await using var mesh = await MeshEnvironment.StartAsync("rotate");
        using var dir = new TempDir();
        using var next = CaStore.LoadOrCreate(Path.Combine(dir.Path, "next"));
        var newRoot = next.CreateTrustBundle();
        var oldRoot = mesh.Nodes["node-1"].Certificates.Trust;
        using var before = await mesh.Socks5ConnectAsync("client", "echo.rotate.svc.cluster.local", 80);
        await RenewalTests.RoundTripAsync(before);

        await mesh.Istiod.Rotation.RotateAsync(next, TestContext.Current.CancellationToken).WaitAsync(TimeSpan.FromSeconds(60), TestContext.Current.CancellationToken);

        foreach (var (name, node) in mesh.Nodes)
        {
            Assert.True(node.Certificates.Trust.SameRootsAs(newRoot), $"{name} trusts {node.Certificates.Trust.Describe()}");
        }
        foreach (var (node, identity) in new[] { ("node-1", Client), ("node-2", Echo) })
        {
            Assert.True(mesh.Nodes[node].Certificates.TryGetCertificate(identity, out var leaf, out _));
            Assert.True(newRoot.ValidateChain(leaf, null, out var error), $"{identity}: {error}");
            Assert.False(oldRoot.ValidateChain(leaf, null, out _), $"{identity} still holds a leaf of the old root");
        }
        // A fresh handshake both ways under the new root only, the old tunnel and a new one carry bytes.
        var hbone = mesh.Nodes["node-2"].HboneListeners[mesh.PodAddress("echo-v1")];
        await RenewalTests.PresentedSerialAsync(mesh, hbone, Client, Echo);
        await RenewalTests.RoundTripAsync(before);
        using var after = await mesh.Socks5ConnectAsync("client", "echo.rotate.svc.cluster.local", 80);
        await RenewalTests.RoundTripAsync(after);

        // config_dump shows it as Istio's does: rootCerts per certificate, plus the bundle itself.
        using var dump = JsonDocument.Parse(await mesh.ConfigDumpAsync("node-2"));
        var bundle = dump.RootElement.GetProperty("trustBundle").EnumerateArray().Select(e => e.GetString()!).ToList();
        Assert.True(TrustBundle.FromRootPems(bundle, "cluster.local").SameRootsAs(newRoot));
        var cert = Assert.Single(dump.RootElement.GetProperty("certificates").EnumerateArray());
        Assert.Equal(bundle, cert.GetProperty("rootCerts").EnumerateArray().Select(e => e.GetString()!));
        using var dumped = X509Certificate2.CreateFromPem(cert.GetProperty("certChain")[0].GetString());
        Assert.True(newRoot.ValidateChain(dumped, null, out var dumpError), dumpError);
        Assert.Empty(mesh.Warnings());
    }

    [Fact]
    public async Task A_bad_bundle_push_is_refused_and_the_current_bundle_stays()
    {
        await using var mesh = await MeshEnvironment.StartAsync("rotate");
        var certs = mesh.Nodes["node-1"].Certificates;
        var held = certs.Trust;
        using var leaf = X509Certificate2.CreateFromPem(TestCertificates.IssueServer(TestCertificates.CreateRoot()).ExportCertificatePem());

        Assert.Contains("trust domain 'other.domain'", certs.ApplyTrustBundle(new TrustBundleUpdate("other.domain", held.RootPems(), 0)), StringComparison.Ordinal);
        Assert.Contains("is not a CA certificate", certs.ApplyTrustBundle(new TrustBundleUpdate("cluster.local", [leaf.ExportCertificatePem()], 0)), StringComparison.Ordinal);
        Assert.Contains("no root certificate", certs.ApplyTrustBundle(new TrustBundleUpdate("cluster.local", [], 0)), StringComparison.Ordinal);
        Assert.Same(held, certs.Trust);
    }
}

using System.Net;
using Ambient.Istiod.Ca;
using Ambient.TestCommon;

namespace Ambient.Istiod.Tests.Functional;

/// <summary>istiod-lite --ca-dir: a bad plug-in CA stops the start with one line naming the file.</summary>
public sealed class PlugInCaStartTests
{
    [Fact]
    public void The_istiod_lite_process_refuses_an_expired_intermediate_with_one_line_naming_ca_cert()
    {
        using var dir = new TempDir();
        using var cacerts = new PlugInCaFolder("ec:P-384", CaKeyFormat.Sec1, intermediateDays: -1);
        var config = dir.Write("mesh/ns.yaml", MeshYaml.Namespace("demo", dataplaneMode: null));

        // Refused before anything listens, so the process exits by itself (a hang fails with a timeout).
        var (code, stdout, stderr) = ChildProcess.Run(Path.Combine(AppContext.BaseDirectory, "istiod-lite"), TimeSpan.FromSeconds(60), "--config", config, "--state", Path.Combine(dir.Path, "state"),
            "--listen", "127.0.0.1:0", "--monitoring", "off", "--ca-dir", cacerts.Folder);

        Assert.True(code == 1, $"exit {code}; stdout: {stdout}; stderr: {stderr}");
        var lines = stderr.Split('\n', StringSplitOptions.RemoveEmptyEntries);
        var line = Assert.Single(lines);
        Assert.StartsWith($"istiod-lite: plug-in CA file '{cacerts.CaCert}'", line, StringComparison.Ordinal);
        Assert.Contains("expired at", line, StringComparison.Ordinal);
        Assert.DoesNotContain("listen", stdout, StringComparison.OrdinalIgnoreCase);
    }

    [Fact]
    public async Task The_host_serves_the_plug_in_root_as_its_trust_bundle_and_refuses_before_listening()
    {
        using var dir = new TempDir();
        using var cacerts = new PlugInCaFolder("ec:P-256", CaKeyFormat.EncryptedPkcs8);
        var config = Path.GetDirectoryName(dir.Write("mesh/ns.yaml", MeshYaml.Namespace("demo", dataplaneMode: null)))!;
        var options = new IstiodOptions(config, Path.Combine(dir.Path, "state"), new IPEndPoint(IPAddress.Loopback, 0), null,
            "Kubernetes", "cluster.local", cacerts.Folder, cacerts.PasswordFile);

        await using (var host = await IstiodHost.StartAsync(options, null, CancellationToken.None))
        {
            Assert.Equal(cacerts.RootCert, host.RootCertificatePath);
            Assert.False(File.Exists(Path.Combine(dir.Path, "state", CaStore.RootKeyFile)), "no self-signed root is made beside a plug-in CA");
        }

        File.Delete(cacerts.CertChain);
        var ex = await Assert.ThrowsAsync<CaStateException>(() => IstiodHost.StartAsync(options, null, CancellationToken.None));
        Assert.Contains($"'{cacerts.CertChain}' is missing", ex.Message, StringComparison.Ordinal);
    }
}

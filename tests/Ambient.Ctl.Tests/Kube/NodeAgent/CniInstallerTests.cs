using System.Text.Json.Nodes;
using Ambient.Cni;
using Ambient.Ctl.Kube.NodeAgent;
using Ambient.TestCommon;
using Microsoft.Extensions.Logging.Abstractions;

namespace Ambient.Ctl.Tests.Kube.NodeAgent;

/// <summary>The plugin's place in the node's CNI chain, in a temp folder standing for /etc/cni/net.d and /opt/cni/bin.</summary>
public sealed class CniInstallerTests : IDisposable
{
    private const string Calico = """
        {
          "name": "k8s-pod-network",
          "cniVersion": "0.3.1",
          "plugins": [
            {"type": "calico", "ipam": {"type": "calico-ipam"}},
            {"type": "portmap", "snat": true, "capabilities": {"portMappings": true}}
          ]
        }
        """;

    private const string Bridge = """{"cniVersion": "0.4.0", "name": "bridge-net", "type": "bridge", "bridge": "cni0", "ipam": {"type": "host-local", "subnet": "10.22.0.0/16"}}""";

    private readonly TempDir _dir = new();

    private string ConfDir => Path.Combine(_dir.Path, "net.d");

    private CniInstaller Installer(CniKubeconfig? kubeconfig = null)
    {
        var plugin = _dir.Write("image/ambient-cni", "#!plugin");
        return new CniInstaller(new CniInstallOptions(Path.Combine(_dir.Path, "bin"), ConfDir, "/etc/cni/net.d", "/var/run/ambient-cni/pluginevent.sock", plugin),
            () => kubeconfig, NullLogger.Instance);
    }

    private static List<string?> Types(string path) =>
        JsonNode.Parse(File.ReadAllText(path))!["plugins"]!.AsArray().Select(p => (string?)p!["type"]).ToList();

    [Fact]
    public void The_plugin_is_copied_and_appended_last_to_the_primary_conflist_once_and_removed_on_dispose()
    {
        var primary = _dir.Write("net.d/10-calico.conflist", Calico);
        _dir.Write("net.d/99-other.conflist", Calico.Replace("calico\"", "other\"", StringComparison.Ordinal));
        using (var installer = Installer(new CniKubeconfig("https://10.96.0.1:443", null, "t")))
        {
            installer.Start();
            Assert.Equal("#!plugin", File.ReadAllText(Path.Combine(_dir.Path, "bin", CniNames.PluginType)));
            Assert.Equal(["calico", "portmap", CniNames.PluginType], Types(primary));
            var entry = JsonNode.Parse(File.ReadAllText(primary))!["plugins"]![2]!;
            Assert.Equal("/var/run/ambient-cni/pluginevent.sock", (string?)entry["agent_socket"]);
            Assert.Equal("/etc/cni/net.d/" + CniNames.KubeconfigFile, (string?)entry["kubeconfig"]);
            Assert.True(File.Exists(installer.KubeconfigPath));
            Assert.DoesNotContain(CniNames.PluginType, File.ReadAllText(Path.Combine(ConfDir, "99-other.conflist")), StringComparison.Ordinal);

            // Idempotent: again and again, the same bytes, one entry.
            var once = File.ReadAllText(primary);
            installer.Reconcile();
            installer.Reconcile();
            Assert.Equal(once, File.ReadAllText(primary));
        }
        Assert.Equal(["calico", "portmap"], Types(primary));
        Assert.False(File.Exists(Path.Combine(ConfDir, CniNames.KubeconfigFile)));
    }

    [Fact]
    public void An_entry_left_by_an_earlier_agent_is_replaced_not_duplicated()
    {
        var stale = JsonNode.Parse(Calico)!.AsObject();
        stale["plugins"]!.AsArray().Insert(0, new JsonObject { ["type"] = CniNames.PluginType, ["agent_socket"] = "/old.sock" });
        var primary = _dir.Write("net.d/10-calico.conflist", stale.ToJsonString());
        using var installer = Installer();
        installer.Start();
        Assert.Equal(["calico", "portmap", CniNames.PluginType], Types(primary));
        Assert.DoesNotContain("/old.sock", File.ReadAllText(primary), StringComparison.Ordinal);
    }

    [Fact]
    public void A_single_plugin_conf_becomes_a_conflist_of_it_and_the_plugin()
    {
        var conf = _dir.Write("net.d/10-bridge.conf", Bridge);
        using (var installer = Installer())
        {
            installer.Start();
            Assert.False(File.Exists(conf));
            var list = conf + "list";
            Assert.Equal(list, installer.ConfiguredFile);
            var config = JsonNode.Parse(File.ReadAllText(list))!;
            Assert.Equal("0.4.0", (string?)config["cniVersion"]);
            Assert.Equal("bridge-net", (string?)config["name"]);
            Assert.Equal(["bridge", CniNames.PluginType], Types(list));
            Assert.Null(config["plugins"]![0]!["cniVersion"]);
            Assert.Equal("cni0", (string?)config["plugins"]![0]!["bridge"]);
        }
        Assert.Equal(["bridge"], Types(conf + "list"));
    }

    [Fact]
    public void The_first_usable_config_by_name_is_the_primary()
    {
        _dir.Write("net.d/00-broken.conflist", "{half");
        _dir.Write("net.d/01-list-in-a-conf.conf", Calico);
        _dir.Write("net.d/05-notes.txt", "{}");
        _dir.Write("net.d/" + CniNames.KubeconfigFile, "{}");
        var calico = _dir.Write("net.d/10-calico.conflist", Calico);
        _dir.Write("net.d/20-bridge.conf", Bridge);
        Assert.Equal(calico, CniConflist.FindPrimary(ConfDir));
    }

    [Fact]
    public async Task A_config_rewritten_by_the_nodes_cni_gets_the_plugin_back_and_one_written_late_gets_it_too()
    {
        Directory.CreateDirectory(ConfDir);
        using var installer = Installer();
        installer.Start();
        Assert.Null(installer.ConfiguredFile);

        // The node's CNI installs itself after the agent started.
        var primary = Path.Combine(ConfDir, "10-calico.conflist");
        File.WriteAllText(primary, Calico);
        await EventuallyAsync(() => Types(primary).Contains(CniNames.PluginType), "the plugin was not added to a config written after the agent started");

        // ...and rewrites it later (an upgrade), without us.
        File.WriteAllText(primary, Calico);
        await EventuallyAsync(() => Types(primary).SequenceEqual(["calico", "portmap", CniNames.PluginType]), "the plugin was not put back after a rewrite");
    }

    private static async Task EventuallyAsync(Func<bool> condition, string message)
    {
        var deadline = DateTime.UtcNow + TimeSpan.FromSeconds(10);
        while (true)
        {
            try
            {
                if (condition()) return;
            }
            catch (Exception e) when (e is IOException or System.Text.Json.JsonException or NullReferenceException)
            {
                // mid-write
            }
            Assert.True(DateTime.UtcNow < deadline, message);
            await Task.Delay(50, TestContext.Current.CancellationToken);
        }
    }

    public void Dispose() => _dir.Dispose();
}

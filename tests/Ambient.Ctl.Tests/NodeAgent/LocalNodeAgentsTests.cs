using System.Net;
using Ambient.TestCommon;
using Ambient.Ctl.Local;
using Ambient.Ctl.Local.Netns;
using Ambient.Ctl.Local.NodeAgent;

namespace Ambient.Ctl.Tests.NodeAgent;

/// <summary>The node agents `local up --network netns` runs: one ZDS socket per node in the state folder.</summary>
public sealed class LocalNodeAgentsTests : IDisposable
{
    private readonly TempDir _dir = new();

    public void Dispose() => _dir.Dispose();

    private static PodSandbox Sandbox(string node, bool inMesh) =>
        new("demo", "client", node, IPAddress.Parse("10.244.0.2"), "client", "amb-x-demo-client", "/run/netns/amb-x-demo-client", inMesh);

    [Fact]
    public async Task Each_node_gets_one_socket_in_the_state_folder_removed_on_dispose()
    {
        var agents = new LocalNodeAgents(_dir.Path);
        var a = agents.Listen("node-a", _ => { });
        Assert.Equal(Path.Combine(_dir.Path, "zds", "node-a.sock"), a);
        Assert.Equal(a, agents.Listen("node-a", _ => { }));
        Assert.NotEqual(a, agents.Listen("node-b", _ => { }));
        Assert.True(File.Exists(a));
        await agents.DisposeAsync();
        Assert.False(File.Exists(a));
    }

    [Fact]
    public void Enrolled_pods_get_istios_dns_capture()
    {
        var options = LocalNodeAgents.Options(LocalNodeAgents.SocketPath(_dir.Path, "node-a"));
        Assert.True(options.Rules.RedirectDns);
        Assert.Contains($"--dport 53 -j REDIRECT --to-ports {InPodRules.DnsPort}", InPodRules.BuildInstall(options.Rules, IptablesState.Empty));
    }

    [Fact]
    public void A_state_folder_too_long_for_a_unix_socket_path_is_refused_with_the_way_out()
    {
        var agents = new LocalNodeAgents(Path.Combine(_dir.Path, new string('s', 120)));
        var e = Assert.Throws<LocalMeshException>(() => agents.Listen("node-a", _ => { }));
        Assert.Contains("--state", e.Message);
    }

    [Fact]
    public async Task A_pod_outside_the_mesh_starts_without_asking_the_agent_and_leaving_it_is_a_no_op()
    {
        await using var agents = new LocalNodeAgents(_dir.Path);
        agents.Listen("node-a", _ => { });
        var ct = TestContext.Current.CancellationToken;
        await agents.PodSandboxReadyAsync(Sandbox("node-a", inMesh: false), ct);
        await agents.PodSandboxRemovingAsync(Sandbox("node-a", inMesh: false), ct);
        // A node whose ztunnel has no agent cannot enrol a pod: said, not ignored.
        await Assert.ThrowsAsync<InvalidOperationException>(() => agents.PodSandboxReadyAsync(Sandbox("node-z", inMesh: true), ct));
    }
}

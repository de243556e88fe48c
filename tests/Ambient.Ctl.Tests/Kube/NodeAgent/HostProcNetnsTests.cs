using Ambient.Ctl.Kube.NodeAgent;
using Ambient.TestCommon;

namespace Ambient.Ctl.Tests.Kube.NodeAgent;

/// <summary>Finding a running pod's namespace in a /proc built in a temp folder (cgroup files, ns/net links).</summary>
public sealed class HostProcNetnsTests : IDisposable
{
    private const string Uid = "6b2f1c9e-0d1a-4c55-9f1e-2a7d3c4b5e6f";
    private readonly TempDir _dir = new();

    private void Process(int pid, string cgroup, string netnsTarget)
    {
        _dir.Write($"{pid}/cgroup", cgroup);
        Directory.CreateDirectory(Path.Combine(_dir.Path, pid.ToString(System.Globalization.CultureInfo.InvariantCulture), "ns"));
        File.CreateSymbolicLink(Path.Combine(_dir.Path, pid.ToString(System.Globalization.CultureInfo.InvariantCulture), "ns", "net"), netnsTarget);
    }

    [Fact]
    public void A_process_whose_cgroup_names_the_pod_uid_gives_the_pods_namespace()
    {
        Process(10, "0::/system.slice/containerd.service\n", "net:[1]");
        Process(20, $"0::/kubepods/besteffort/pod{Uid}0/abc\n", "net:[2]");
        Process(30, $"12:memory:/kubepods/burstable/pod{Uid}/cri-containerd-1234\n0::/\n", "net:[3]");
        Assert.Equal(Path.Combine(_dir.Path, "30", "ns", "net"), new HostProcNetns(_dir.Path).Find(Uid));
    }

    [Fact]
    public void The_systemd_cgroup_driver_spelling_is_found_too()
    {
        Process(40, $"0::/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod{Uid.Replace('-', '_')}.slice/cri-containerd-9.scope\n", "net:[4]");
        Assert.Equal(Path.Combine(_dir.Path, "40", "ns", "net"), new HostProcNetns(_dir.Path).Find(Uid));
    }

    [Fact]
    public void No_process_and_host_namespace_processes_give_nothing()
    {
        Assert.Null(new HostProcNetns(_dir.Path).Find(Uid));
        // A host-network pod: its process shares the agent's (the host's) namespace.
        Process(50, $"0::/kubepods/besteffort/pod{Uid}/abc\n", new FileInfo("/proc/self/ns/net").LinkTarget!);
        Assert.Null(new HostProcNetns(_dir.Path).Find(Uid));
    }

    public void Dispose() => _dir.Dispose();
}

/// <summary>The command's paths: what the agent sees under --host-root, named as the host names them.</summary>
public sealed class NodeAgentCommandTests
{
    [Theory]
    [InlineData("/host", "/host/etc/cni/net.d", "/etc/cni/net.d")]
    [InlineData("/host/", "/host/etc/cni/net.d", "/etc/cni/net.d")]
    [InlineData("/", "/etc/cni/net.d", "/etc/cni/net.d")]
    [InlineData("/host", "/etc/cni/net.d", "/etc/cni/net.d")]
    [InlineData("/host", "/hostile/net.d", "/hostile/net.d")]
    public void Host_paths_drop_the_host_root_prefix(string hostRoot, string path, string expected) =>
        Assert.Equal(expected, Ambient.Ctl.Cli.NodeAgentCommand.HostPath(hostRoot, path));

    [Fact]
    public void Node_agent_is_a_command_that_needs_its_node()
    {
        var parse = Ambient.Ctl.Cli.CommandLine.Build().Parse(["node-agent"]);
        Assert.Contains(parse.Errors, e => e.Message.Contains("--node", StringComparison.Ordinal));
        Assert.Empty(Ambient.Ctl.Cli.CommandLine.Build().Parse(["node-agent", "--node", "n1", "--cni-bin-dir", "/b", "--cni-conf-dir", "/c"]).Errors);
    }
}

using Ambient.TestCommon;

namespace Ambient.Ctl.Tests.NodeAgent;

/// <summary>
/// The node agent tests' namespaces: isolated <see cref="PodNetns"/>es (removed on Dispose, pass or fail), skipping
/// the test when not root or when a tool the agent runs is missing.
/// </summary>
internal static class TestNetns
{
    private static int s_counter;

    public static PodNetns Create()
    {
        Assert.SkipUnless(OperatingSystem.IsLinux() && Environment.IsPrivilegedProcess, "needs root on Linux (network namespaces, iptables)");
        foreach (var tool in new[] { "ip", "iptables-save", "iptables-restore", "nsenter" })
        {
            Assert.SkipWhen(Ambient.Ctl.Local.HostPrograms.Resolve(tool) is null, tool + " is not installed (apt-get install iproute2 iptables util-linux)");
        }
        return PodNetns.CreateIsolated("na", Interlocked.Increment(ref s_counter));
    }
}

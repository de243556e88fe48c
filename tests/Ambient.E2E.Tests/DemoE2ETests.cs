using Ambient.TestCommon;

namespace Ambient.E2E.Tests;

/// <summary>
/// `ambientctl demo` as a user runs it (real processes, its own AMBIENT_HOME and a free loopback range): every step
/// passes, the waypoint steps included, what the waypoint saw is printed, and nothing is left behind.
/// </summary>
public sealed class DemoE2ETests
{
    [Fact]
    public async Task Demo_PassesEveryStep_TheWaypointStepsIncluded_AndLeavesNothingBehind()
    {
        using var home = new TempDir();
        var addresses = MeshAddresses.PickFree();
        var demoFolder = Path.Combine(AppContext.BaseDirectory, "demo");
        var before = Directory.GetFiles(demoFolder).ToDictionary(f => Path.GetFileName(f), File.ReadAllText);

        var (code, output) = await MeshRun.CtlAsync(home.Path, addresses, TimeSpan.FromMinutes(4), "demo", "--network", "loopback", "--control-address", addresses.Control);

        Assert.True(code == 0, $"demo failed ({code}):\n{output}");
        Assert.DoesNotContain("FAILED", output, StringComparison.Ordinal);
        foreach (var step in new[] { "6. waypoint: header match", "7. waypoint: 90/10 split", "8. waypoint removed" })
        {
            Assert.Contains(step, output, StringComparison.Ordinal);
        }
        Assert.Contains("SOCKS5 -> ztunnel -> waypoint -> ztunnel", output, StringComparison.Ordinal);
        Assert.Contains("echo-v2 20", output, StringComparison.Ordinal);
        // What the waypoint's metrics said (a table, or blocks in narrow output): the client's identity, both versions, 200.
        var waypointTable = output[output.IndexOf("What the waypoint saw", StringComparison.Ordinal)..];
        foreach (var expected in new[] { "spiffe://cluster.local/ns/demo/sa/client", "demo/echo-v1", "demo/echo-v2", "200" })
        {
            Assert.Contains(expected, waypointTable, StringComparison.Ordinal);
        }

        // Nothing left: the mesh is stopped (no state file), and the demo folder it copied from is as it was.
        Assert.False(File.Exists(Path.Combine(home.Path, "local.json")), "the demo left its state file (a mesh running?)");
        Assert.Equal(before, Directory.GetFiles(demoFolder).ToDictionary(f => Path.GetFileName(f), File.ReadAllText));
    }
}

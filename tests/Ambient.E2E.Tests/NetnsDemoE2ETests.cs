using System.Globalization;
using System.Text.RegularExpressions;
using Ambient.TestCommon;
using static Ambient.E2E.Tests.NetnsLocalMeshE2ETests;

namespace Ambient.E2E.Tests;

/// <summary>
/// `ambientctl demo --network netns` as a root user runs it (netns is the default there; named here so the test means
/// the same on every host): curl with no proxy settings, inside the client pod's network namespace, reaches the echo
/// Service over mTLS with both identities in the ztunnels' metrics, the legacy pod in plaintext, goes direct when the
/// namespace is unlabelled and back to mTLS when relabelled with no pod restarted, and the waypoint steps pass too.
/// The demo checks each of these against the ztunnels' own metrics, so a pod whose capture is not in place fails step 1.
/// Every name the mesh makes carries the network id "p" + this process's id; the host is left as it was.
/// </summary>
public sealed class NetnsDemoE2ETests
{
    private static readonly string NetworkId = "p" + Environment.ProcessId.ToString(CultureInfo.InvariantCulture);

    [Fact]
    public async Task Demo_in_netns_mode_captures_curl_into_mtls_switches_live_by_label_and_leaves_the_host_as_before()
    {
        RequireRootAndTools();
        Assert.SkipWhen(!File.Exists("/usr/bin/curl") && !File.Exists("/bin/curl"), "the netns demo runs curl inside the client pod (CI installs it)");
        using var home = new TempDir();
        var ranges = Ranges.Pick();
        var before = HostSnapshot.Take();
        try
        {
            var (code, output) = await MeshRun.CtlAsync(home.Path, TimeSpan.FromMinutes(4),
                "demo", "--network", "netns", "--pod-cidr", ranges.PodCidr, "--service-cidr", ranges.ServiceCidr, "--network-id", NetworkId);
            TestContext.Current.TestOutputHelper?.WriteLine(output);

            Assert.True(code == 0, $"demo failed ({code}):\n{output}");
            Assert.DoesNotContain("FAILED", output, StringComparison.Ordinal);
            // The table names the path each step took: captured curl, never SOCKS5. Narrow output wraps cells: compare flat.
            Assert.DoesNotContain("SOCKS5", output, StringComparison.Ordinal);
            var flat = Regex.Replace(output, @"\s+", " ");
            foreach (var expected in new[]
            {
                "curl (captured) -> ztunnel -> HBONE", "curl (captured) -> ztunnel -> TCP", "direct (not captured", "captured again",
                "curl (captured) -> ztunnel -> waypoint -> ztunnel", "8. waypoint removed",
                "spiffe://cluster.local/ns/demo/sa/client", "spiffe://cluster.local/ns/demo/sa/echo", "legacy/legacy-echo",
            })
            {
                Assert.Contains(expected, flat, StringComparison.Ordinal);
            }
            Assert.False(File.Exists(Path.Combine(home.Path, "local.json")), "the demo left its state file (a mesh running?)");
            HostSnapshot.Take().AssertSameAs(before);
        }
        finally
        {
            // A demo killed on timeout leaves its state file: `local down` stops its processes and removes what it made.
            if (File.Exists(Path.Combine(home.Path, "local.json"))) await MeshRun.CtlAsync(home.Path, TimeSpan.FromSeconds(60), "local", "down");
        }
    }
}

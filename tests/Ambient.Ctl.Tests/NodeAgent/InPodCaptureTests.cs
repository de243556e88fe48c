using System.Buffers.Binary;
using System.Net;
using System.Net.Sockets;
using Ambient.Ctl.Local.NodeAgent;
using Ambient.TestCommon;

namespace Ambient.Ctl.Tests.NodeAgent;

/// <summary>The rules really installed in a namespace of the test's own (root).</summary>
public sealed class InPodCaptureTests
{
    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    private static string[] GoldenRules(string name) =>
        [.. File.ReadAllLines(Path.Combine(RepoPaths.Root, "tests", "Ambient.Ctl.Tests", "NodeAgent", "testdata", name)).Where(l => l.StartsWith("-A ", StringComparison.Ordinal))];

    private static string[] Rules(string save) => [.. save.Split('\n').Where(l => l.StartsWith("-A ", StringComparison.Ordinal))];

    [Fact]
    public async Task Install_shows_istios_rules_in_iptables_save_and_remove_takes_exactly_them_away()
    {
        using var netns = TestNetns.Create();
        netns.Exec("iptables", "-t", "nat", "-A", "OUTPUT", "-p", "tcp", "--dport", "9", "-m", "comment", "--comment", "d2-foreign", "-j", "ACCEPT");
        var before = Rules(netns.Exec("iptables-save"));

        await InPodCapture.InstallAsync(netns.Path, new InPodRuleOptions(RedirectDns: true), Ct);
        await InPodCapture.InstallAsync(netns.Path, new InPodRuleOptions(RedirectDns: true), Ct); // idempotent

        var installed = Rules(netns.Exec("iptables-save"));
        var expected = GoldenRules("inpod-dns.golden");
        Assert.Equal(before.Concat(expected).Order(StringComparer.Ordinal), installed.Order(StringComparer.Ordinal));
        Assert.Contains("fwmark 0x111/0xfff lookup 100", netns.Exec("ip", "rule", "show"), StringComparison.Ordinal);
        Assert.Single(netns.Exec("ip", "rule", "show", "priority", "32764").Split('\n', StringSplitOptions.RemoveEmptyEntries));
        Assert.Contains("local default dev lo", netns.Exec("ip", "route", "show", "table", "100"), StringComparison.Ordinal);

        // DNS capture turned off: the raw table's rules go, the rest stays.
        await InPodCapture.InstallAsync(netns.Path, new InPodRuleOptions(RedirectDns: false), Ct);
        Assert.Equal(before.Concat(GoldenRules("inpod-nodns.golden")).Order(StringComparer.Ordinal), Rules(netns.Exec("iptables-save")).Order(StringComparer.Ordinal));

        await InPodCapture.RemoveAsync(netns.Path, Ct);
        var save = netns.Exec("iptables-save");
        Assert.DoesNotContain("ISTIO_", save, StringComparison.Ordinal);
        Assert.Equal(before, Rules(save));
        Assert.DoesNotContain("0x111", netns.Exec("ip", "rule", "show"), StringComparison.Ordinal);
        Assert.Equal("", netns.Exec("ip", "route", "show", "table", "100").Trim());

        await InPodCapture.RemoveAsync(netns.Path, Ct); // nothing of ours left: a no-op, not an error
    }

    [Fact]
    public async Task Outbound_connection_is_redirected_to_15001_with_the_original_destination()
    {
        using var netns = TestNetns.Create();
        // Somewhere to route the pod's connection to; the capture must take it before it leaves.
        // (a veth pair inside the namespace: both ends go with it; the dummy driver is not always there).
        var (inside, peer) = ($"d2a{Environment.ProcessId}", $"d2b{Environment.ProcessId}");
        netns.Exec("ip", "link", "add", inside, "type", "veth", "peer", "name", peer);
        netns.Exec("ip", "addr", "add", "10.250.0.2/24", "dev", inside);
        netns.Exec("ip", "link", "set", inside, "up");
        netns.Exec("ip", "link", "set", peer, "up");
        await InPodCapture.InstallAsync(netns.Path, new InPodRuleOptions(RedirectDns: false), Ct);

        using var listener = netns.CreateSocket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
        listener.Bind(new IPEndPoint(IPAddress.Any, InPodRules.OutboundPort));
        listener.Listen();
        using var client = netns.CreateSocket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
        var accept = listener.AcceptAsync(Ct).AsTask();
        using var connectTimeout = CancellationTokenSource.CreateLinkedTokenSource(Ct);
        connectTimeout.CancelAfter(TimeSpan.FromSeconds(5));
        await client.ConnectAsync(new IPEndPoint(IPAddress.Parse("10.250.0.9"), 8080), connectTimeout.Token);
        using var accepted = await accept.WaitAsync(TimeSpan.FromSeconds(5), Ct);

        Assert.Equal(new IPEndPoint(IPAddress.Parse("10.250.0.9"), 8080), OriginalDestination(accepted));
    }

    /// <summary>SO_ORIGINAL_DST (SOL_IP 80): the sockaddr_in the connection was addressed to before the REDIRECT.</summary>
    private static IPEndPoint OriginalDestination(Socket accepted)
    {
        Span<byte> sockaddr = stackalloc byte[16];
        var length = accepted.GetRawSocketOption(0, 80, sockaddr);
        Assert.Equal(16, length);
        var port = BinaryPrimitives.ReadUInt16BigEndian(sockaddr[2..]);
        return new IPEndPoint(new IPAddress(sockaddr.Slice(4, 4)), port);
    }
}

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
    public async Task Removing_the_capture_keeps_exactly_the_return_path_until_the_full_remove()
    {
        using var netns = TestNetns.Create();
        var before = Rules(netns.Exec("iptables-save"));
        await InPodCapture.InstallAsync(netns.Path, new InPodRuleOptions(RedirectDns: true), Ct);

        await InPodCapture.RemoveCaptureAsync(netns.Path, Ct);
        // What stays is the mangle table's rules (connmark in, fwmark out) and the policy routing they feed.
        var golden = File.ReadAllText(Path.Combine(RepoPaths.Root, "tests", "Ambient.Ctl.Tests", "NodeAgent", "testdata", "inpod-dns.golden"));
        var mangle = golden[golden.IndexOf("*mangle", StringComparison.Ordinal)..];
        mangle = mangle[..mangle.IndexOf("COMMIT", StringComparison.Ordinal)];
        Assert.Equal(before.Concat(Rules(mangle)).Order(StringComparer.Ordinal), Rules(netns.Exec("iptables-save")).Order(StringComparer.Ordinal));
        Assert.Contains("fwmark 0x111/0xfff lookup 100", netns.Exec("ip", "rule", "show"), StringComparison.Ordinal);
        Assert.Contains("local default dev lo", netns.Exec("ip", "route", "show", "table", "100"), StringComparison.Ordinal);
        await InPodCapture.RemoveCaptureAsync(netns.Path, Ct); // nothing left to capture: a no-op

        await InPodCapture.RemoveAsync(netns.Path, Ct);
        Assert.Equal(before, Rules(netns.Exec("iptables-save")));
        Assert.DoesNotContain("0x111", netns.Exec("ip", "rule", "show"), StringComparison.Ordinal);
        Assert.Equal("", netns.Exec("ip", "route", "show", "table", "100").Trim());
    }

    [Fact]
    public async Task Install_and_remove_each_start_at_most_four_processes()
    {
        // Each command is nsenter plus a tool: on a loaded 2-core host tens of milliseconds or more apiece, and a label
        // switch waits for them (the reads go together, then the writes together).
        using var netns = TestNetns.Create();
        var started = new System.Runtime.CompilerServices.StrongBox<int>();
        NetnsCommand.Started.Value = started;
        try
        {
            await InPodCapture.InstallAsync(netns.Path, new InPodRuleOptions(RedirectDns: true), Ct);
            Assert.InRange(started.Value, 1, 4);
            Assert.Single(netns.Exec("ip", "rule", "show", "priority", "32764").Split('\n', StringSplitOptions.RemoveEmptyEntries));

            started.Value = 0;
            await InPodCapture.RemoveAsync(netns.Path, Ct);
            Assert.InRange(started.Value, 1, 4);
            Assert.DoesNotContain("ISTIO_", netns.Exec("iptables-save"), StringComparison.Ordinal);
            Assert.DoesNotContain("0x111", netns.Exec("ip", "rule", "show"), StringComparison.Ordinal);
            Assert.Equal("", netns.Exec("ip", "route", "show", "table", "100").Trim());
        }
        finally
        {
            NetnsCommand.Started.Value = null;
        }
    }

    [Fact]
    public async Task Outbound_connection_is_redirected_to_15001_with_the_original_destination()
    {
        using var netns = TestNetns.Create();
        using var listener = await CapturedPodWithOutboundListenerAsync(netns);
        using var client = netns.CreateSocket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
        var accept = listener.AcceptAsync(Ct).AsTask();
        using var connectTimeout = CancellationTokenSource.CreateLinkedTokenSource(Ct);
        connectTimeout.CancelAfter(TimeSpan.FromSeconds(5));
        await client.ConnectAsync(new IPEndPoint(IPAddress.Parse("10.250.0.9"), 8080), connectTimeout.Token);
        using var accepted = await accept.WaitAsync(TimeSpan.FromSeconds(5), Ct);

        Assert.Equal(new IPEndPoint(IPAddress.Parse("10.250.0.9"), 8080), OriginalDestination(accepted));
    }

    [Fact]
    public async Task The_ztunnels_own_marked_sockets_are_not_captured()
    {
        using var netns = TestNetns.Create();
        using var listener = await CapturedPodWithOutboundListenerAsync(netns);

        using var upstream = netns.CreateSocket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
        upstream.SetRawSocketOption(1, 36, BitConverter.GetBytes(0x539)); // SOL_SOCKET, SO_MARK: as the ztunnel's upstream sockets
        using var connectTimeout = CancellationTokenSource.CreateLinkedTokenSource(Ct);
        connectTimeout.CancelAfter(TimeSpan.FromSeconds(1));
        // Nobody has 10.250.0.9: uncaptured, the connection cannot complete.
        await Assert.ThrowsAnyAsync<Exception>(async () => await upstream.ConnectAsync(new IPEndPoint(IPAddress.Parse("10.250.0.9"), 8080), connectTimeout.Token));
        Assert.False(listener.Poll(0, SelectMode.SelectRead), "a marked connection reached the capture listener");
    }

    [Fact]
    public async Task Inbound_connection_is_redirected_to_15006_and_hbone_on_15008_is_not()
    {
        using var pod = TestNetns.Create();
        using var peerPod = TestNetns.Create();
        var (podSide, peerSide) = ($"d2p{Environment.ProcessId}", $"d2q{Environment.ProcessId}");
        pod.Exec("ip", "link", "add", podSide, "type", "veth", "peer", "name", peerSide, "netns", peerPod.Name);
        pod.Exec("ip", "addr", "add", "10.251.0.2/24", "dev", podSide);
        pod.Exec("ip", "link", "set", podSide, "up");
        peerPod.Exec("ip", "addr", "add", "10.251.0.3/24", "dev", peerSide);
        peerPod.Exec("ip", "link", "set", peerSide, "up");
        await InPodCapture.InstallAsync(pod.Path, new InPodRuleOptions(RedirectDns: false), Ct);

        using var inbound = pod.CreateSocket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
        inbound.Bind(new IPEndPoint(IPAddress.Any, InPodRules.InboundPlaintextPort));
        inbound.Listen();
        using var hbone = pod.CreateSocket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
        hbone.Bind(new IPEndPoint(IPAddress.Any, InPodRules.HboneInboundPort));
        hbone.Listen();

        using (var client = peerPod.CreateSocket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp))
        {
            await client.ConnectAsync(new IPEndPoint(IPAddress.Parse("10.251.0.2"), 80), Ct).AsTask().WaitAsync(TimeSpan.FromSeconds(5), Ct);
            using var accepted = await inbound.AcceptAsync(Ct).AsTask().WaitAsync(TimeSpan.FromSeconds(5), Ct);
            Assert.Equal(new IPEndPoint(IPAddress.Parse("10.251.0.2"), 80), OriginalDestination(accepted));
        }
        using (var client = peerPod.CreateSocket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp))
        {
            await client.ConnectAsync(new IPEndPoint(IPAddress.Parse("10.251.0.2"), InPodRules.HboneInboundPort), Ct).AsTask().WaitAsync(TimeSpan.FromSeconds(5), Ct);
            using var accepted = await hbone.AcceptAsync(Ct).AsTask().WaitAsync(TimeSpan.FromSeconds(5), Ct);
            Assert.False(inbound.Poll(0, SelectMode.SelectRead), "HBONE was redirected to the plaintext inbound port");
        }
    }

    /// <summary>
    /// Captures the namespace and listens on 15001 in it, with 10.250.0.0/24 routed out of a veth pair whose both ends
    /// stay inside (they go with the namespace; the dummy driver is not always there): somewhere for the pod to
    /// connect to that nobody answers, so only the capture can complete a connection.
    /// </summary>
    private static async Task<Socket> CapturedPodWithOutboundListenerAsync(PodNetns netns)
    {
        var (inside, peer) = ($"d2a{Environment.ProcessId}", $"d2b{Environment.ProcessId}");
        netns.Exec("ip", "link", "add", inside, "type", "veth", "peer", "name", peer);
        netns.Exec("ip", "addr", "add", "10.250.0.2/24", "dev", inside);
        netns.Exec("ip", "link", "set", inside, "up");
        netns.Exec("ip", "link", "set", peer, "up");
        await InPodCapture.InstallAsync(netns.Path, new InPodRuleOptions(RedirectDns: false), Ct);
        var listener = netns.CreateSocket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
        listener.Bind(new IPEndPoint(IPAddress.Any, InPodRules.OutboundPort));
        listener.Listen();
        return listener;
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

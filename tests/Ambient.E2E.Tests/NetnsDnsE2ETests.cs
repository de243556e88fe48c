using System.Buffers.Binary;
using System.Diagnostics;
using System.Globalization;
using System.Net;
using System.Net.Sockets;
using System.Text;
using Ambient.TestCommon;
using static Ambient.E2E.Tests.NetnsLocalMeshE2ETests;

namespace Ambient.E2E.Tests;

/// <summary>
/// DNS in `local up --network netns`: an enrolled pod's queries to its resolv.conf nameserver (the cluster DNS VIP) are
/// redirected inside the pod (Istio's ISTIO_OUTPUT DNS rules) to the ztunnel's proxy there, which answers every form of
/// a Service name through the pod's search list and forwards other names to the upstream `--dns-upstream` names (a
/// resolver this test runs on the host's loopback); a malformed packet gets no answer and the next query does. A pod
/// outside the mesh keeps resolving through the node's DNAT to its ztunnel's node-wide proxy. Needs root, iproute2,
/// iptables and getent. Every name the mesh makes carries the network id "q" + this process's id.
/// </summary>
public sealed class NetnsDnsE2ETests
{
    private static readonly string NetworkId = "q" + Environment.ProcessId.ToString(CultureInfo.InvariantCulture);
    private const string ExternalName = "upstream-only.example";
    private static readonly IPAddress ExternalAddress = IPAddress.Parse("192.0.2.77");

    private static string Yaml(string ns) =>
        MeshYaml.Namespace(ns) + MeshYaml.ServiceAccount(ns, "client") + MeshYaml.ServiceAccount(ns, "echo")
        + MeshYaml.Sleep(ns, "client", "client", "node-a") + MeshYaml.Echo(ns, "echo", "echo", "node-b")
        + MeshYaml.Namespace(ns + "-out", dataplaneMode: null) + MeshYaml.ServiceAccount(ns + "-out", "outsider")
        + MeshYaml.Sleep(ns + "-out", "outsider", "outsider", "node-a");

    [Fact]
    public async Task An_enrolled_pods_dns_is_answered_inside_the_pod_and_a_pod_outside_the_mesh_resolves_through_the_node()
    {
        RequireRootAndTools();
        var ranges = Ranges.Pick();
        await using var upstream = new LoopbackResolver(ExternalName, ExternalAddress);
        MeshRun? run = null;
        try
        {
            run = await MeshRun.UpAsync("dns", Yaml, network:
                ["--network", "netns", "--pod-cidr", ranges.PodCidr, "--service-cidr", ranges.ServiceCidr, "--network-id", NetworkId,
                 "--dns-upstream", upstream.EndPoint.ToString()]);
            var ns = run.Namespace;
            var pods = PodsOf(run);
            var client = pods["client"];
            var nodeDnat = NodeDnsDnatPackets();

            // The four forms of the Service's name, through the pod's resolv.conf (search list, ndots:5), A and AAAA asked.
            string[] names = ["echo", $"echo.{ns}", $"echo.{ns}.svc", $"echo.{ns}.svc.cluster.local"];
            var vip = await ResolveAsync(client, names[^1]);
            Assert.True(vip is not null && IPNetwork.Parse(ranges.ServiceCidr).Contains(vip), $"echo resolved to {vip}, not a VIP of {ranges.ServiceCidr}");
            foreach (var name in names)
            {
                Assert.Equal(vip, await ResolveAsync(client, name));
            }

            // Over TCP as well, to the same nameserver.
            var dnsVip = new IPEndPoint(DnsVip(ranges), 53);
            using (var tcp = PodSocket(client, SocketType.Stream, ProtocolType.Tcp))
            {
                await tcp.ConnectAsync(dnsVip).WaitAsync(TimeSpan.FromSeconds(5));
                Assert.Equal(vip, Read(await TcpExchangeAsync(tcp, Query(names[^1], 0x5151))).Address);
            }

            // A name that is not the mesh's: forwarded to the upstream on the host's loopback, its answer relayed.
            Assert.Equal(ExternalAddress, await ResolveAsync(client, ExternalName));
            Assert.Contains(ExternalName, upstream.Asked);

            // A runt gets no answer and breaks nothing: the next query on the same socket is answered.
            using (var udp = PodSocket(client, SocketType.Dgram, ProtocolType.Udp))
            {
                await udp.ConnectAsync(dnsVip);
                await udp.SendAsync(new byte[] { 0x12, 0x34, 0x01 });
                var buffer = new byte[512];
                using (var quiet = new CancellationTokenSource(TimeSpan.FromSeconds(1)))
                {
                    await Assert.ThrowsAnyAsync<OperationCanceledException>(async () => await udp.ReceiveAsync(buffer, SocketFlags.None, quiet.Token));
                }
                await udp.SendAsync(Query(names[^1], 0x4242));
                using var answered = new CancellationTokenSource(TimeSpan.FromSeconds(5));
                var n = await udp.ReceiveAsync(buffer, SocketFlags.None, answered.Token);
                var (id, address) = Read(buffer.AsSpan(0, n));
                Assert.Equal((0x4242, vip), (id, address));
            }

            // All of it was answered inside the pod: its DNS redirects counted the queries, the node's DNAT saw none.
            Assert.True(InPodDnsRedirectPackets(client) > 0, "the pod's ISTIO_OUTPUT DNS redirects matched nothing");
            Assert.Equal(nodeDnat, NodeDnsDnatPackets());

            // A pod outside the mesh has no redirect: it resolves through the node's DNAT to the node's proxy.
            Assert.Equal(vip, await ResolveAsync(pods["outsider"], $"echo.{ns}"));
            Assert.True(NodeDnsDnatPackets() > nodeDnat, "the outsider's query did not go through the node's DNS DNAT");
        }
        finally
        {
            await CleanUpAsync(run);
        }
    }

    /// <summary>The cluster DNS VIP: the tenth address of the service CIDR.</summary>
    private static IPAddress DnsVip(Ranges ranges)
    {
        var bytes = IPNetwork.Parse(ranges.ServiceCidr).BaseAddress.GetAddressBytes();
        bytes[3] += 10;
        return new IPAddress(bytes);
    }

    /// <summary>`getent ahosts` inside the pod (glibc's resolver with the pod's resolv.conf, A and AAAA): its first IPv4 address.</summary>
    private static async Task<IPAddress?> ResolveAsync(PodInNetns pod, string name)
    {
        var psi = new ProcessStartInfo("ip") { ArgumentList = { "netns", "exec", pod.Netns, "getent", "ahosts", name } };
        var (code, output) = await MeshRun.RunAsync(psi, TimeSpan.FromSeconds(20));
        Assert.True(code == 0, $"getent ahosts {name} in {pod.Netns}: exit {code}: {output}");
        foreach (var line in output.Split('\n', StringSplitOptions.RemoveEmptyEntries))
        {
            if (IPAddress.TryParse(line.Split(' ', 2)[0], out var address) && address.AddressFamily == AddressFamily.InterNetwork)
            {
                return address;
            }
        }
        return null;
    }

    private static Socket PodSocket(PodInNetns pod, SocketType type, ProtocolType protocol) =>
        PodNetns.CreateSocketIn("/var/run/netns/" + pod.Netns, AddressFamily.InterNetwork, type, protocol);

    /// <summary>Packets the pod's nat ISTIO_OUTPUT rules redirected to the DNS proxy (15053).</summary>
    private static long InPodDnsRedirectPackets(PodInNetns pod) =>
        PacketsOf(PodNetns.Run("ip", "netns", "exec", pod.Netns, "iptables-save", "-c", "-t", "nat"), "-A ISTIO_OUTPUT", "--to-ports 15053");

    /// <summary>Packets the host's DNAT of the DNS VIP to a node's proxy took (this run's services chain).</summary>
    private static long NodeDnsDnatPackets() =>
        PacketsOf(PodNetns.Run("iptables-save", "-c", "-t", "nat"), $"-A AMB-{NetworkId}-SVC", "--dport 53 -j DNAT");

    /// <summary>The sum of the `[packets:bytes]` counters of `iptables-save -c` lines holding both parts.</summary>
    private static long PacketsOf(string save, string rule, string target)
    {
        long packets = 0;
        foreach (var line in save.Split('\n'))
        {
            if (line.StartsWith('[') && line.Contains(rule, StringComparison.Ordinal) && line.Contains(target, StringComparison.Ordinal))
            {
                packets += long.Parse(line.AsSpan(1, line.IndexOf(':', StringComparison.Ordinal) - 1), CultureInfo.InvariantCulture);
            }
        }
        return packets;
    }

    /// <summary>An A query for <paramref name="name"/> with recursion desired (RFC 1035 section 4.1).</summary>
    private static byte[] Query(string name, ushort id)
    {
        var message = new List<byte> { (byte)(id >> 8), (byte)id, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0 };
        foreach (var label in name.Split('.'))
        {
            message.Add((byte)label.Length);
            message.AddRange(Encoding.ASCII.GetBytes(label));
        }
        message.AddRange([0, 0, 1, 0, 1]);
        return [.. message];
    }

    /// <summary>A response's ID and its first A record's address (null when it has none).</summary>
    private static (int Id, IPAddress? Address) Read(ReadOnlySpan<byte> response)
    {
        var id = BinaryPrimitives.ReadUInt16BigEndian(response);
        var answers = BinaryPrimitives.ReadUInt16BigEndian(response[6..]);
        var offset = 12;
        while (response[offset] != 0) offset += 1 + response[offset];
        offset += 5;
        for (var i = 0; i < answers; i++)
        {
            offset += (response[offset] & 0xC0) == 0xC0 ? 2 : SkipName(response, offset);
            var type = BinaryPrimitives.ReadUInt16BigEndian(response[offset..]);
            var length = BinaryPrimitives.ReadUInt16BigEndian(response[(offset + 8)..]);
            if (type == 1 && length == 4) return (id, new IPAddress(response.Slice(offset + 10, 4)));
            offset += 10 + length;
        }
        return (id, null);
    }

    private static int SkipName(ReadOnlySpan<byte> message, int offset)
    {
        var start = offset;
        while (message[offset] != 0) offset += 1 + message[offset];
        return offset + 1 - start;
    }

    private static async Task<byte[]> TcpExchangeAsync(Socket connected, byte[] query)
    {
        await using var stream = new NetworkStream(connected, ownsSocket: false);
        using var cts = new CancellationTokenSource(TimeSpan.FromSeconds(5));
        await stream.WriteAsync(new byte[] { (byte)(query.Length >> 8), (byte)query.Length }, cts.Token);
        await stream.WriteAsync(query, cts.Token);
        var prefix = new byte[2];
        await stream.ReadExactlyAsync(prefix, cts.Token);
        var response = new byte[BinaryPrimitives.ReadUInt16BigEndian(prefix)];
        await stream.ReadExactlyAsync(response, cts.Token);
        return response;
    }

    /// <summary>
    /// The host's resolver, as far as this test is concerned: UDP on 127.0.0.1, one name answered with one A record,
    /// NXDOMAIN for every other name (so the pod's search-list expansions of that name do not stop early).
    /// </summary>
    private sealed class LoopbackResolver : IAsyncDisposable
    {
        private readonly Socket _socket = new(AddressFamily.InterNetwork, SocketType.Dgram, ProtocolType.Udp);
        private readonly CancellationTokenSource _stop = new();
        private readonly Task _loop;
        private readonly byte[] _name;
        private readonly IPAddress _address;

        public LoopbackResolver(string name, IPAddress address)
        {
            _name = Query(name, 0)[12..];
            _address = address;
            _socket.Bind(new IPEndPoint(IPAddress.Loopback, 0));
            EndPoint = (IPEndPoint)_socket.LocalEndPoint!;
            _loop = ServeAsync();
        }

        public IPEndPoint EndPoint { get; }

        /// <summary>The names asked, in order.</summary>
        public System.Collections.Concurrent.ConcurrentQueue<string> Asked { get; } = new();

        private async Task ServeAsync()
        {
            var buffer = new byte[1500];
            while (!_stop.IsCancellationRequested)
            {
                SocketReceiveFromResult received;
                try
                {
                    received = await _socket.ReceiveFromAsync(buffer, new IPEndPoint(IPAddress.Any, 0), _stop.Token);
                }
                catch (Exception) when (_stop.IsCancellationRequested)
                {
                    return;
                }
                var query = buffer.AsSpan(0, received.ReceivedBytes);
                if (query.Length < 12 + 5) continue;
                var question = query[12..];
                var labels = new List<string>();
                for (var i = 0; i < question.Length && question[i] != 0; i += 1 + question[i])
                {
                    labels.Add(Encoding.ASCII.GetString(question.Slice(i + 1, Math.Min(question[i], question.Length - i - 1))));
                }
                Asked.Enqueue(string.Join('.', labels));
                // The name known: its A record, or no records of another type (NODATA); any other name: NXDOMAIN.
                var known = question.Length >= _name.Length && question[..(_name.Length - 4)].SequenceEqual(_name.AsSpan(0, _name.Length - 4));
                var answer = known && question.StartsWith(_name);
                var questionLength = Math.Min(question.Length, SkipName(question, 0) + 4);
                var response = new List<byte> { query[0], query[1], 0x81, (byte)(known ? 0x80 : 0x83), 0, 1, 0, (byte)(answer ? 1 : 0), 0, 0, 0, 0 };
                response.AddRange(question[..questionLength].ToArray());
                if (answer)
                {
                    response.AddRange([0xC0, 12, 0, 1, 0, 1, 0, 0, 0, 60, 0, 4]);
                    response.AddRange(_address.GetAddressBytes());
                }
                await _socket.SendToAsync(response.ToArray(), received.RemoteEndPoint);
            }
        }

        public async ValueTask DisposeAsync()
        {
            await _stop.CancelAsync();
            _socket.Dispose();
            await _loop.ContinueWith(_ => { });
            _stop.Dispose();
        }
    }
}

using System.Net;
using System.Net.Sockets;
using System.Text;
using Ambient.Core.InPod;
using Ambient.Core.Protos.Security;
using Ambient.Core.Protos.Zds;
using Ambient.Istiod;
using Ambient.TestCommon;
using Ambient.Ztunnel.Admin;
using Ambient.Ztunnel.InPod;
using Ambient.Ztunnel.Tests.Functional;
using Google.Protobuf;
using Microsoft.Extensions.Logging;
using Action = Ambient.Core.Protos.Security.Action;
using Authorization = Ambient.Core.Protos.Security.Authorization;
using ModelWorkloadInfo = Ambient.Core.Model.WorkloadInfo;

namespace Ambient.Ztunnel.Tests.InPod;

/// <summary>
/// Istio's in-pod mode, in process and as root: the client pod lives in its own network namespace (a veth to the
/// host, Istio's nat rules inside), a fake node agent hands that namespace to node-1's real ztunnel over ZDS, and the
/// echo pod (node-2, an ordinary ztunnel) sits on a host address of the same veth. Unmodified sockets inside the pod
/// are captured; nothing in the test speaks SOCKS5.
/// </summary>
public sealed class InPodCaptureTests : IAsyncLifetime
{
    private const string Ns = "inpod";
    private static readonly TimeSpan Timeout = TimeSpan.FromSeconds(20);

    private readonly string? _unavailable = PodNetns.Unavailable();
    private readonly string _subnet = $"10.251.{20 + Environment.ProcessId % 200}";
    private TempDir? _dir;
    private PodNetns? _pod;
    private IstiodHost? _istiod;
    private ILoggerFactory? _logs;
    private readonly ListLogger _captured = new();
    private NodeProxy? _node1;
    private NodeProxy? _node2;
    private TcpEcho? _echo;
    private SeqPacketSocket? _agentListener;
    private SeqPacketSocket? _agent;
    private NetnsSockets? _podSockets;
    private Microsoft.Win32.SafeHandles.SafeFileHandle? _podNetnsFd;
    private DnsProxy.FakeUpstream? _upstream;

    private IPAddress ClientIp => IPAddress.Parse(_subnet + ".2");
    private IPAddress EchoIp => IPAddress.Parse(_subnet + ".5");
    private string ClientUid => ModelWorkloadInfo.PodUid("Kubernetes", Ns, "client");

    public async ValueTask InitializeAsync()
    {
        if (_unavailable is not null)
        {
            return;
        }
        _dir = new TempDir();
        _pod = PodNetns.Create("c", 1, _subnet + ".1/24", _subnet + ".2/24", inPodRules: true);
        _pod.AddHostAddress(_subnet + ".5/32");
        _podNetnsFd = File.OpenHandle(_pod.Path); // kept for the whole test; each AddWorkload sends a duplicate
        _podSockets = await NetnsSockets.StartAsync(CancellationToken.None);

        var config = Path.Combine(_dir.Path, "mesh");
        Directory.CreateDirectory(config);
        File.WriteAllText(Path.Combine(config, "mesh.yaml"),
            MeshYaml.Namespace(Ns) + MeshYaml.ServiceAccount(Ns, "client") + MeshYaml.ServiceAccount(Ns, "echo")
            + MeshYaml.Pod("client", Ns, "node-1", "client", "client", podIp: ClientIp.ToString())
            + MeshYaml.Pod("echo-v1", Ns, "node-2", "echo", "echo", "v1", podIp: EchoIp.ToString())
            + MeshYaml.Service("echo", Ns, "echo", 80, "8080"));
        _logs = LoggerFactory.Create(l => l.SetMinimumLevel(LogLevel.Information).AddProvider(_captured));
        _istiod = await IstiodHost.StartAsync(
            new IstiodOptions(config, Path.Combine(_dir.Path, "state"), new IPEndPoint(IPAddress.Loopback, 0), null, "Kubernetes", "cluster.local"),
            l => l.SetMinimumLevel(LogLevel.Warning), CancellationToken.None);
        _echo = TcpEcho.Start(new IPEndPoint(EchoIp, 8080));

        // The host's resolver, on the host's loopback: a forwarded query must leave from the ztunnel's own namespace.
        _upstream = new DnsProxy.FakeUpstream();
        var zdsPath = Path.Combine(_dir.Path, "zds.sock");
        _agentListener = SeqPacketSocket.Listen(zdsPath);
        _node1 = await StartNodeAsync("node-1", zdsPath);
        _node2 = await StartNodeAsync("node-2", null);
        using var ready = new CancellationTokenSource(TimeSpan.FromSeconds(30));
        await _node1.WaitForReadyAsync(ready.Token);
        await _node2.WaitForReadyAsync(ready.Token);
        while (!_node2.HboneListeners.ContainsKey(EchoIp))
        {
            await Task.Delay(20, ready.Token);
        }
        _agent = await _agentListener.AcceptAsync(ready.Token);
        var hello = ZdsHello.Parser.ParseFrom(await ReceiveAsync(_agent));
        Assert.Equal(Ambient.Core.Protos.Zds.Version.V1, hello.Version);
    }

    private async Task<NodeProxy> StartNodeAsync(string node, string? zds)
    {
        var options = new ZtunnelOptions(node, _istiod!.Mesh.Snapshot.NodeAddress(node)!, new Uri($"https://127.0.0.1:{_istiod.GrpcEndpoint.Port}"),
            _istiod.RootCertificatePath, Path.Combine(_istiod.Options.StateFolder, "tokens", node + ".token"),
            HbonePort: 15008, SocksPort: 15080, new AdminPorts(0, 0, 0), "Kubernetes") { ZdsSocket = zds, DnsUpstreams = [_upstream!.EndPoint] };
        return await NodeProxy.StartAsync(options, _logs!, CancellationToken.None);
    }

    public async ValueTask DisposeAsync()
    {
        _agent?.Dispose();
        _agentListener?.Dispose();
        if (_node1 is not null) await _node1.DisposeAsync();
        if (_node2 is not null) await _node2.DisposeAsync();
        _echo?.Dispose();
        if (_upstream is not null) await _upstream.DisposeAsync();
        if (_istiod is not null) await _istiod.DisposeAsync();
        _podSockets?.Dispose();
        _podNetnsFd?.Dispose();
        _pod?.Dispose();
        _logs?.Dispose();
        _dir?.Dispose();
    }

    private void SkipUnlessAvailable()
    {
        if (_unavailable is not null)
        {
            Assert.Skip(_unavailable);
        }
    }

    [Fact]
    public async Task An_unmodified_client_in_the_pod_is_captured_on_15001_and_arrives_over_HBONE_with_the_pods_identity()
    {
        SkipUnlessAvailable();
        Assert.Equal("", await AddClientAsync());

        using var socket = await PodSocketAsync();
        await socket.ConnectAsync(new IPEndPoint(EchoIp, 8080)).WaitAsync(Timeout);
        await RoundTripAsync(socket, "captured");

        // node-2 saw it arrive through its HBONE listener from the client's identity (reporter=destination, mTLS).
        await CrossNodeTests.AssertEventuallyAsync(() => Task.FromResult(CrossNodeTests.Has(Metrics(_node2!),
            "istio_tcp_connections_opened_total", "reporter=\"destination\"", $"source_principal=\"spiffe://cluster.local/ns/{Ns}/sa/client\"",
            "connection_security_policy=\"mutual_tls\"")), Explain);
        Assert.True(_node1!.InPod!.Pods[ClientUid].Listeners.ContainsKey("outbound"));
    }

    [Fact]
    public async Task Plaintext_into_the_pod_is_served_on_15006_and_a_DENY_policy_resets_it_before_a_byte_reaches_the_app()
    {
        SkipUnlessAvailable();
        Assert.Equal("", await AddClientAsync());
        using var app = TcpEcho.Start(await _podSockets!.ListenAsync(_podNetnsFd!, new IPEndPoint(IPAddress.Any, 9090)));

        using (var allowed = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp))
        {
            await allowed.ConnectAsync(new IPEndPoint(ClientIp, 9090)).WaitAsync(Timeout);
            await RoundTripAsync(allowed, "plaintext");
        }
        // Logged when the connection is over, which the ztunnel learns a moment after the client closed.
        await CrossNodeTests.AssertEventuallyAsync(() => Task.FromResult(_captured.Entries.Any(e => e.Message.Contains("direction=inbound", StringComparison.Ordinal)
            && e.Message.Contains($"dst.addr={ClientIp}:9090", StringComparison.Ordinal) && e.Message.Contains("flags=-", StringComparison.Ordinal))), AccessLines);

        var policy = new Authorization { Name = "deny-9090", Namespace = Ns, Scope = Scope.Namespace, Action = Action.Deny };
        var clause = new Clause();
        clause.Matches.Add(new Match { DestinationPorts = { 9090 } });
        var rule = new Rule();
        rule.Clauses.Add(clause);
        policy.Rules.Add(rule);
        _node1!.State.UpdateAuthorizations([policy]);
        var accepted = app.Accepted;

        using (var denied = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp))
        {
            // The reset can beat the client's own view of the handshake, so it may surface at connect, send or receive.
            var error = await Assert.ThrowsAnyAsync<Exception>(async () =>
            {
                await denied.ConnectAsync(new IPEndPoint(ClientIp, 9090)).WaitAsync(Timeout);
                await denied.SendAsync("must not arrive"u8.ToArray());
                var buffer = new byte[16];
                var n = await denied.ReceiveAsync(buffer).WaitAsync(Timeout);
                if (n == 0)
                {
                    throw new EndOfStreamException("closed without a reset");
                }
            });
            Assert.True(error is SocketException { SocketErrorCode: SocketError.ConnectionReset }, error.ToString());
        }
        Assert.Equal(accepted, app.Accepted);
        Assert.True(CrossNodeTests.Has(Metrics(_node1), "istio_tcp_connections_opened_total", "reporter=\"destination\"", "response_flags=\"DENY\""), Explain());
        // The access line is written as the denied connection is torn down, which can be just after the client saw the reset.
        await CrossNodeTests.AssertEventuallyAsync(() => Task.FromResult(_captured.Entries.Any(e => e.Message.Contains("direction=inbound", StringComparison.Ordinal)
            && e.Message.Contains("flags=DENY", StringComparison.Ordinal) && e.Message.Contains("inpod/deny-9090", StringComparison.Ordinal))), AccessLines);
    }

    [Fact]
    public async Task DelWorkload_closes_the_pods_listeners_and_an_AddWorkload_without_a_netns_fd_is_refused()
    {
        SkipUnlessAvailable();
        var missing = new WorkloadRequest { Add = new AddWorkload { Uid = ClientUid } };
        await _agent!.SendAsync(missing.ToByteArray(), CancellationToken.None);
        Assert.Contains("no file descriptor", await AckAsync());
        Assert.Empty(_node1!.InPod!.Pods);

        Assert.Equal("", await AddClientAsync());
        using (var captured = await PodSocketAsync())
        {
            await captured.ConnectAsync(new IPEndPoint(EchoIp, 8080)).WaitAsync(Timeout);
            await RoundTripAsync(captured, "before");
        }

        await _agent.SendAsync(new WorkloadRequest { Del = new DelWorkload { Uid = ClientUid } }.ToByteArray(), CancellationToken.None);
        Assert.Equal("", await AckAsync());
        Assert.Empty(_node1.InPod.Pods);
        // Nothing listens on 15001 in the pod any more: the captured connect is refused, never sent in plaintext.
        using var after = await PodSocketAsync();
        var refused = await Assert.ThrowsAsync<SocketException>(() => after.ConnectAsync(new IPEndPoint(EchoIp, 8080)).WaitAsync(Timeout));
        Assert.Equal(SocketError.ConnectionRefused, refused.SocketErrorCode);
    }

    [Fact]
    public async Task When_the_agent_goes_away_the_pod_keeps_its_capture_and_the_next_snapshot_drops_pods_it_does_not_name()
    {
        SkipUnlessAvailable();
        Assert.Equal("", await AddClientAsync());
        var sessions = _node1!.Zds!.Sessions;
        _agent!.Dispose(); // the node agent restarts

        using (var captured = await PodSocketAsync())
        {
            await captured.ConnectAsync(new IPEndPoint(EchoIp, 8080)).WaitAsync(Timeout);
            await RoundTripAsync(captured, "agent away");
        }

        using var cts = new CancellationTokenSource(Timeout);
        _agent = await _agentListener!.AcceptAsync(cts.Token);
        Assert.Equal(Ambient.Core.Protos.Zds.Version.V1, ZdsHello.Parser.ParseFrom(await ReceiveAsync(_agent)).Version);
        Assert.True(_node1.Zds.Sessions > sessions);
        Assert.True(_node1.InPod!.Pods.ContainsKey(ClientUid));

        await _agent.SendAsync(new WorkloadRequest { SnapshotSent = new SnapshotSent() }.ToByteArray(), CancellationToken.None);
        Assert.Equal("", await AckAsync());
        Assert.Empty(_node1.InPod.Pods);
    }

    [Fact]
    public async Task SOCKS5_listens_on_127_0_0_1_inside_the_pod_for_the_pods_programs_only()
    {
        SkipUnlessAvailable();
        Assert.Equal("", await AddClientAsync());

        using (var inside = await PodSocketAsync())
        {
            await inside.ConnectAsync(new IPEndPoint(IPAddress.Loopback, 15080)).WaitAsync(Timeout);
            await Socks5ConnectAsync(inside, $"echo.{Ns}.svc.cluster.local", 80);
            await RoundTripAsync(inside, "socks inside");
        }

        // From the host the pod's 15080 is just a port of the pod (captured to 15006, where nothing listens on the pod
        // address): no way to borrow the pod's identity.
        using var outside = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
        await Assert.ThrowsAnyAsync<Exception>(async () =>
        {
            await outside.ConnectAsync(new IPEndPoint(ClientIp, 15080)).WaitAsync(Timeout);
            await Socks5ConnectAsync(outside, $"echo.{Ns}.svc.cluster.local", 80);
        });
    }

    /// <summary>The pod's nameserver (the cluster DNS VIP in `local up`): any address the pod routes out of it.</summary>
    private static readonly IPEndPoint ClusterDns = new(IPAddress.Parse("10.96.0.10"), 53);

    [Fact]
    public async Task The_pods_DNS_is_redirected_to_the_in_pod_proxy_which_answers_every_form_of_a_service_name_over_udp_and_tcp()
    {
        SkipUnlessAvailable();
        _pod!.RedirectDns();
        Assert.Equal("", await AddClientAsync());
        var vip = _node1!.State.Snapshot.FindServiceByHostname($"echo.{Ns}.svc.cluster.local")!.Vips[0];

        // As glibc asks: a connected UDP socket to the nameserver, which takes only an answer from that address and port.
        string[] names = ["echo", $"echo.{Ns}", $"echo.{Ns}.svc", $"echo.{Ns}.svc.cluster.local"];
        foreach (var name in names)
        {
            var answer = DnsProxy.DnsTestKit.Read(await PodUdpExchangeAsync(DnsProxy.DnsTestKit.Query(name)));
            Assert.True(answer.ResponseCode == 0 && answer.Authoritative, name);
            Assert.Equal([vip], answer.Addresses);
            // The service has no IPv6 VIP: the name exists with no AAAA (NODATA), not NXDOMAIN.
            var aaaa = DnsProxy.DnsTestKit.Read(await PodUdpExchangeAsync(DnsProxy.DnsTestKit.Query(name, DnsProxy.DnsTestKit.TypeAaaa)));
            Assert.True(aaaa.ResponseCode == 0 && aaaa.Answers.Count == 0, name);
        }
        using var tcp = await PodSocketAsync();
        await tcp.ConnectAsync(ClusterDns).WaitAsync(Timeout);
        foreach (var response in await DnsProxy.DnsTestKit.TcpExchangeAsync(tcp, [.. names.Select(n => DnsProxy.DnsTestKit.Query(n))]))
        {
            Assert.Equal([vip], DnsProxy.DnsTestKit.Read(response).Addresses);
        }
        // Every query was the in-pod proxy's (the node-wide one is not even running here).
        Assert.Null(_node1.Dns);
        Assert.Equal(names.Length * 3, _node1.InPod!.Pods[ClientUid].Dns!.Counters.Answered);
    }

    [Fact]
    public async Task Other_names_are_forwarded_from_the_ztunnels_namespace_and_malformed_packets_get_no_answer()
    {
        SkipUnlessAvailable();
        _pod!.RedirectDns();
        Assert.Equal("", await AddClientAsync());

        // The upstream listens on the host's loopback, which only the ztunnel's own namespace reaches: the forwarded
        // query left from there, not from the pod (where it would have been captured again, or found no resolver).
        var forwarded = DnsProxy.DnsTestKit.Read(await PodUdpExchangeAsync(DnsProxy.DnsTestKit.Query("external.example")));
        Assert.Equal([DnsProxy.FakeUpstream.Answer], forwarded.Addresses);
        Assert.Contains(("udp", "external.example"), _upstream!.Asked);

        using var udp = await PodSocketAsync(SocketType.Dgram, ProtocolType.Udp);
        await udp.ConnectAsync(ClusterDns);
        var counters = _node1!.InPod!.Pods[ClientUid].Dns!.Counters;
        var malformed = counters.Malformed;
        // A runt (shorter than a header) and a message with the response bit set: dropped, nothing comes back.
        await udp.SendAsync(new byte[] { 0x12, 0x34, 0x01 });
        await udp.SendAsync(new byte[] { 0x12, 0x34, 0x81, 0x80, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 1 });
        var buffer = new byte[512];
        using (var quiet = new CancellationTokenSource(TimeSpan.FromMilliseconds(500)))
        {
            await Assert.ThrowsAnyAsync<OperationCanceledException>(async () => await udp.ReceiveAsync(buffer, SocketFlags.None, quiet.Token));
        }
        Assert.Equal(malformed + 2, counters.Malformed);
        // And the proxy goes on: the next valid query on the same socket is answered.
        await udp.SendAsync(DnsProxy.DnsTestKit.Query("echo", id: 0x4321));
        using var cts = new CancellationTokenSource(Timeout);
        var n = await udp.ReceiveAsync(buffer, SocketFlags.None, cts.Token);
        var answer = DnsProxy.DnsTestKit.Read(buffer.AsSpan(0, n));
        Assert.Equal(0x4321, answer.Id);
        Assert.NotEmpty(answer.Addresses);
    }

    /// <summary>One query from a connected UDP socket in the pod to <see cref="ClusterDns"/>, as a pod's resolver sends it.</summary>
    private async Task<byte[]> PodUdpExchangeAsync(byte[] query)
    {
        using var udp = await PodSocketAsync(SocketType.Dgram, ProtocolType.Udp);
        await udp.ConnectAsync(ClusterDns);
        await udp.SendAsync(query);
        var buffer = new byte[4096];
        using var cts = new CancellationTokenSource(TimeSpan.FromSeconds(5));
        var n = await udp.ReceiveAsync(buffer, SocketFlags.None, cts.Token);
        return buffer[..n];
    }

    private static async Task Socks5ConnectAsync(Socket socket, string host, int port)
    {
        using var cts = new CancellationTokenSource(Timeout);
        await socket.SendAsync(new byte[] { 5, 1, 0 }, cts.Token);
        var reply = new byte[10];
        await MeshEnvironment.ReceiveExactlyAsync(socket, reply.AsMemory(0, 2), cts.Token);
        var name = Encoding.ASCII.GetBytes(host);
        byte[] request = [5, 1, 0, 3, (byte)name.Length, .. name, (byte)(port >> 8), (byte)port];
        await socket.SendAsync(request, cts.Token);
        await MeshEnvironment.ReceiveExactlyAsync(socket, reply, cts.Token);
        Assert.Equal(0, reply[1]);
    }

    [Fact]
    public async Task An_upgrade_hands_the_pods_listening_sockets_to_the_new_ztunnel_and_the_old_one_drains_its_open_connection()
    {
        SkipUnlessAvailable();
        Assert.Equal("", await AddClientAsync());
        using var open = await PodSocketAsync();
        await open.ConnectAsync(new IPEndPoint(EchoIp, 8080)).WaitAsync(Timeout);
        await RoundTripAsync(open, "through the old one");

        // The new ztunnel of node-1 connects while the old one serves; the agent asks the old one for the pod's sockets.
        var zdsPath = Path.Combine(_dir!.Path, "zds.sock");
        var old = _node1!;
        _node1 = await StartNodeAsync("node-1", zdsPath);
        using var cts = new CancellationTokenSource(Timeout);
        using var agentOfNew = await _agentListener!.AcceptAsync(cts.Token);
        ZdsHello.Parser.ParseFrom(await ReceiveAsync(agentOfNew));
        await _agent!.SendAsync(new WorkloadRequest { HandOver = new HandOverListeners { Uid = ClientUid } }.ToByteArray(), CancellationToken.None);
        var buffer = new byte[4096];
        List<Microsoft.Win32.SafeHandles.SafeFileHandle> listeners;
        using (var ack = await _agent.ReceiveAsync(buffer, cts.Token))
        {
            Assert.Equal("", WorkloadResponse.Parser.ParseFrom(buffer, 0, ack.Length).Ack.Error);
            listeners = ack.TakeAllFds();
        }
        Assert.Equal(InPodListenerSockets.Count, listeners.Count);
        var add = new WorkloadRequest { Add = new AddWorkload { Uid = ClientUid } };
        await agentOfNew.SendAsync(add.ToByteArray(), [_podNetnsFd!, .. listeners], CancellationToken.None);
        foreach (var fd in listeners) fd.Dispose();
        Assert.Equal("", WorkloadResponse.Parser.ParseFrom(await ReceiveAsync(agentOfNew)).Ack.Error);
        Assert.True(_node1.InPod!.Pods.ContainsKey(ClientUid));

        // The old one stops (SIGTERM): it stops accepting and drains; the new one accepts from the same sockets.
        var stopping = old.DisposeAsync().AsTask();
        for (var i = 0; i < 20; i++)
        {
            using var fresh = await PodSocketAsync();
            await fresh.ConnectAsync(new IPEndPoint(EchoIp, 8080)).WaitAsync(Timeout);
            await RoundTripAsync(fresh, "new " + i);
            await RoundTripAsync(open, "still open " + i);
        }
        Assert.False(stopping.IsCompleted, "the old ztunnel did not wait for its open connection");
        open.Shutdown(SocketShutdown.Both);
        open.Close();
        await stopping.WaitAsync(Timeout);
        using (var after = await PodSocketAsync())
        {
            await after.ConnectAsync(new IPEndPoint(EchoIp, 8080)).WaitAsync(Timeout);
            await RoundTripAsync(after, "served by the new one alone");
        }
        Assert.Contains(_captured.Entries, e => e.Message.Contains("handed over by the ztunnel it replaces", StringComparison.Ordinal));
    }

    /// <summary>AddWorkload with the pod's netns fd, as the node agent sends it; returns the ack's error ("" = listeners up).</summary>
    private async Task<string> AddClientAsync()
    {
        var add = new WorkloadRequest { Add = new AddWorkload { Uid = ClientUid, WorkloadInfo = new Ambient.Core.Protos.Zds.WorkloadInfo { Name = "client", Namespace = Ns, ServiceAccount = "client" } } };
        await _agent!.SendAsync(add.ToByteArray(), [_podNetnsFd!], CancellationToken.None);
        var error = await AckAsync();
        await _agent.SendAsync(new WorkloadRequest { SnapshotSent = new SnapshotSent() }.ToByteArray(), CancellationToken.None);
        Assert.Equal("", await AckAsync());
        return error;
    }

    private async Task<string> AckAsync() => WorkloadResponse.Parser.ParseFrom(await ReceiveAsync(_agent!)).Ack.Error;

    private static async Task<byte[]> ReceiveAsync(SeqPacketSocket socket)
    {
        var buffer = new byte[4096];
        using var cts = new CancellationTokenSource(Timeout);
        using var packet = await socket.ReceiveAsync(buffer, cts.Token);
        Assert.False(packet.IsEndOfStream, "the ztunnel closed the ZDS connection");
        return buffer[..packet.Length];
    }

    /// <summary>A plain socket inside the pod's namespace: no mark, no proxy settings, as any program there would have.</summary>
    private Task<Socket> PodSocketAsync(SocketType type = SocketType.Stream, ProtocolType protocol = ProtocolType.Tcp) =>
        _podSockets!.RunInAsync(_podNetnsFd!, () => new Socket(AddressFamily.InterNetwork, type, protocol));

    private static async Task RoundTripAsync(Socket socket, string text)
    {
        var bytes = Encoding.ASCII.GetBytes(text);
        await socket.SendAsync(bytes);
        var back = new byte[bytes.Length];
        using var cts = new CancellationTokenSource(Timeout);
        await MeshEnvironment.ReceiveExactlyAsync(socket, back, cts.Token);
        Assert.Equal(text, Encoding.ASCII.GetString(back));
    }

    private static string Metrics(NodeProxy node)
    {
        var text = new StringBuilder();
        node.WriteMetrics(text);
        return text.ToString();
    }

    private string AccessLines() => string.Join("\n", _captured.Entries.Where(e => e.Message.StartsWith("access", StringComparison.Ordinal)).Select(e => e.Message));

    private string Explain() => string.Join("\n", _captured.AtLeast(LogLevel.Warning).Select(e => $"{e.Category}: {e.Message} {e.Exception?.Message}"));
}

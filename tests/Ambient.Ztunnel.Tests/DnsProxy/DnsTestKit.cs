using System.Buffers.Binary;
using System.Collections.Immutable;
using System.Net;
using System.Net.Sockets;
using System.Text;
using Ambient.Core.Model;
using Ambient.Core.Protos.Workload;
using Ambient.Dataplane.State;

namespace Ambient.Ztunnel.Tests.DnsProxy;

/// <summary>
/// Builds DNS messages from RFC 1035's field layouts and reads responses, independently of the product's codec, plus
/// the mesh the DNS tests ask about.
/// </summary>
internal static class DnsTestKit
{
    public const ushort TypeA = 1;
    public const ushort TypeAaaa = 28;
    public const ushort TypeTxt = 16;

    /// <summary>client in demo (127.0.0.2) and client in other (127.0.0.3), on node-1.</summary>
    public static readonly IPAddress DemoClient = IPAddress.Parse("127.0.0.2");
    public static readonly IPAddress OtherClient = IPAddress.Parse("127.0.0.3");

    /// <summary>
    /// demo/echo 10.96.0.10; demo/dual 10.96.0.11 + fd00::11; other/echo 10.96.1.10; demo/headless (no VIP) with pod
    /// db-0 at 10.244.0.5; demo/wide with 100 VIPs (more than 512 bytes of answers).
    /// </summary>
    public static ProxyState Mesh()
    {
        var headless = Service("headless", "demo");
        var workloads = new[]
        {
            Pod("client", "demo", DemoClient),
            Pod("client", "other", OtherClient),
            Pod("db-0", "demo", IPAddress.Parse("10.244.0.5")) with
            {
                Services = [new WorkloadServicePorts(headless.Key, [new PortMapping(5432, 5432, AppProtocol.Unknown)])],
            },
        };
        var wide = new List<IPAddress>();
        for (var i = 0; i < 100; i++)
        {
            wide.Add(new IPAddress([10, 97, 0, (byte)i]));
        }
        var services = new[]
        {
            Service("echo", "demo", "10.96.0.10"),
            Service("dual", "demo", "10.96.0.11", "fd00::11"),
            Service("echo", "other", "10.96.1.10"),
            headless,
            Service("wide", "demo") with { Vips = [.. wide] },
        };
        return new ProxyState("node-1", MeshSnapshot.Create(workloads, services, MeshOptions.Default));
    }

    public static WorkloadInfo Pod(string name, string ns, IPAddress address) =>
        new($"Kubernetes//Pod/{ns}/{name}", ns, "cluster.local", "default")
        {
            Name = name,
            CanonicalName = name,
            WorkloadName = name,
            Addresses = [address],
            TunnelProtocol = TunnelProtocol.Hbone,
            Node = "node-1",
        };

    public static ServiceInfo Service(string name, string ns, params string[] vips) =>
        new(name, ns, $"{name}.{ns}.svc.cluster.local")
        {
            Vips = [.. vips.Select(IPAddress.Parse)],
            Ports = [new ServicePortInfo(80, 8080, AppProtocol.Unknown)],
        };

    /// <summary>
    /// A standard query: header (ID, flags RD, QDCOUNT 1, ARCOUNT 1 with EDNS) then QNAME as length-prefixed labels,
    /// QTYPE, QCLASS IN, then (with EDNS) an OPT record: root name, TYPE 41, CLASS = payload size, TTL 0, RDLENGTH 0.
    /// </summary>
    public static byte[] Query(string name, ushort type = TypeA, ushort id = 0x1234, ushort? ednsPayload = null, byte ednsVersion = 0)
    {
        var message = new List<byte>
        {
            (byte)(id >> 8), (byte)id,
            0x01, 0x00, // RD
            0, 1, 0, 0, 0, 0, 0, (byte)(ednsPayload is null ? 0 : 1),
        };
        message.AddRange(Name(name));
        message.AddRange([(byte)(type >> 8), (byte)type, 0, 1]);
        if (ednsPayload is { } payload)
        {
            message.AddRange([0, 0, 41, (byte)(payload >> 8), (byte)payload, 0, ednsVersion, 0, 0, 0, 0]);
        }
        return [.. message];
    }

    /// <summary>
    /// For the fuzz tests: random bytes or a valid message with one to three bytes changed (which gets past the header
    /// checks far more often), in turn; the QR bit cleared, unless <paramref name="keepResponses"/>, so that most are
    /// parsed as queries rather than dropped as responses.
    /// </summary>
    public static byte[] Junk(Random random, byte[] valid, int maxRandomLength, bool keepResponses)
    {
        byte[] junk;
        if (random.Next(2) == 0)
        {
            junk = new byte[random.Next(0, maxRandomLength)];
            random.NextBytes(junk);
        }
        else
        {
            junk = (byte[])valid.Clone();
            for (var flips = random.Next(1, 4); flips > 0; flips--)
            {
                junk[random.Next(junk.Length)] = (byte)random.Next(256);
            }
        }
        if (junk.Length > 2 && !keepResponses)
        {
            junk[2] &= 0x7F;
        }
        return junk;
    }

    /// <summary>A name as labels: each its length then its bytes, and the zero-length root label.</summary>
    public static byte[] Name(string name)
    {
        var bytes = new List<byte>();
        foreach (var label in name.TrimEnd('.').Split('.', StringSplitOptions.RemoveEmptyEntries))
        {
            bytes.Add((byte)label.Length);
            bytes.AddRange(Encoding.ASCII.GetBytes(label));
        }
        bytes.Add(0);
        return [.. bytes];
    }

    /// <summary>What a test needs of a response.</summary>
    internal sealed record Response(ushort Id, ushort Flags, int ResponseCode, int Questions, List<(ushort Type, IPAddress? Address, uint Ttl)> Answers,
        bool HasOpt, int ExtendedResponseCode)
    {
        public bool Authoritative => (Flags & 0x0400) != 0;
        public bool Truncated => (Flags & 0x0200) != 0;
        public bool IsResponse => (Flags & 0x8000) != 0;
        public List<IPAddress> Addresses => [.. Answers.Where(a => a.Address is not null).Select(a => a.Address!)];
    }

    /// <summary>Reads a response: header, skips the question(s), answers (A/AAAA data decoded), OPT in additional.</summary>
    public static Response Read(ReadOnlySpan<byte> m)
    {
        var id = BinaryPrimitives.ReadUInt16BigEndian(m);
        var flags = BinaryPrimitives.ReadUInt16BigEndian(m[2..]);
        int qd = BinaryPrimitives.ReadUInt16BigEndian(m[4..]), an = BinaryPrimitives.ReadUInt16BigEndian(m[6..]),
            ns = BinaryPrimitives.ReadUInt16BigEndian(m[8..]), ar = BinaryPrimitives.ReadUInt16BigEndian(m[10..]);
        var offset = 12;
        for (var i = 0; i < qd; i++)
        {
            offset = SkipName(m, offset) + 4;
        }
        var answers = new List<(ushort, IPAddress?, uint)>();
        var hasOpt = false;
        var extended = 0;
        for (var i = 0; i < an + ns + ar; i++)
        {
            offset = SkipName(m, offset);
            var type = BinaryPrimitives.ReadUInt16BigEndian(m[offset..]);
            var ttl = BinaryPrimitives.ReadUInt32BigEndian(m[(offset + 4)..]);
            var length = BinaryPrimitives.ReadUInt16BigEndian(m[(offset + 8)..]);
            var data = m.Slice(offset + 10, length);
            if (i < an)
            {
                answers.Add((type, type is TypeA or TypeAaaa ? new IPAddress(data) : null, ttl));
            }
            else if (type == 41)
            {
                hasOpt = true;
                extended = (int)(ttl >> 24);
            }
            offset += 10 + length;
        }
        Assert.Equal(m.Length, offset);
        return new Response(id, flags, flags & 0x0F, qd, answers, hasOpt, extended);
    }

    private static int SkipName(ReadOnlySpan<byte> m, int offset)
    {
        while (true)
        {
            var length = m[offset];
            if (length == 0)
            {
                return offset + 1;
            }
            if ((length & 0xC0) == 0xC0)
            {
                return offset + 2;
            }
            offset += 1 + length;
        }
    }

    /// <summary>One query over UDP from <paramref name="from"/> (bound first, as a pod's resolver would be).</summary>
    public static async Task<byte[]> UdpExchangeAsync(IPEndPoint server, byte[] query, IPAddress? from = null, TimeSpan? timeout = null)
    {
        using var socket = new Socket(server.AddressFamily, SocketType.Dgram, ProtocolType.Udp);
        socket.Bind(new IPEndPoint(from ?? IPAddress.Loopback, 0));
        await socket.SendToAsync(query, server);
        var buffer = new byte[65536];
        using var cts = new CancellationTokenSource(timeout ?? TimeSpan.FromSeconds(5));
        var n = await socket.ReceiveAsync(buffer, SocketFlags.None, cts.Token);
        return buffer[..n];
    }

    /// <summary>Queries over one TCP connection, each framed by its 2-byte length (RFC 1035 section 4.2.2).</summary>
    public static async Task<List<byte[]>> TcpExchangeAsync(IPEndPoint server, IPAddress? from, params byte[][] queries)
    {
        using var socket = new Socket(server.AddressFamily, SocketType.Stream, ProtocolType.Tcp);
        socket.Bind(new IPEndPoint(from ?? IPAddress.Loopback, 0));
        await socket.ConnectAsync(server);
        return await TcpExchangeAsync(socket, queries);
    }

    /// <summary>Queries over <paramref name="connected"/>, pipelined, each framed by its 2-byte length.</summary>
    public static async Task<List<byte[]>> TcpExchangeAsync(Socket connected, params byte[][] queries)
    {
        await using var stream = new NetworkStream(connected);
        using var cts = new CancellationTokenSource(TimeSpan.FromSeconds(10));
        var framed = new List<byte>();
        foreach (var q in queries)
        {
            framed.AddRange([(byte)(q.Length >> 8), (byte)q.Length]);
            framed.AddRange(q);
        }
        // All at once: the server must split a pipelined stream into its messages.
        await stream.WriteAsync(framed.ToArray(), cts.Token);
        var responses = new List<byte[]>();
        var prefix = new byte[2];
        foreach (var _ in queries)
        {
            await stream.ReadExactlyAsync(prefix, cts.Token);
            var body = new byte[BinaryPrimitives.ReadUInt16BigEndian(prefix)];
            await stream.ReadExactlyAsync(body, cts.Token);
            responses.Add(body);
        }
        return responses;
    }
}

/// <summary>
/// A stand-in for the host's resolver on loopback (UDP and TCP on one port): answers every A query with 192.0.2.53,
/// TTL 60, as the question's name, and records the names it was asked.
/// </summary>
internal sealed class FakeUpstream : IAsyncDisposable
{
    public static readonly IPAddress Answer = IPAddress.Parse("192.0.2.53");

    private readonly Socket _udp;
    private readonly Socket _tcp;
    private readonly CancellationTokenSource _stop = new();
    private readonly Task _udpLoop;
    private readonly Task _tcpLoop;

    public FakeUpstream()
    {
        // UDP picks the port; TCP needs the same number, which another test may hold on TCP: try again then.
        for (var attempt = 0; ; attempt++)
        {
            _udp = new Socket(AddressFamily.InterNetwork, SocketType.Dgram, ProtocolType.Udp);
            _udp.Bind(new IPEndPoint(IPAddress.Loopback, 0));
            _tcp = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
            try
            {
                _tcp.Bind(_udp.LocalEndPoint!);
                break;
            }
            catch (SocketException) when (attempt < 20)
            {
                _udp.Dispose();
                _tcp.Dispose();
            }
        }
        EndPoint = (IPEndPoint)_udp.LocalEndPoint!;
        _tcp.Listen(8);
        _udpLoop = ServeUdpAsync();
        _tcpLoop = ServeTcpAsync();
    }

    public IPEndPoint EndPoint { get; }

    /// <summary>(transport, name) of every query, in order.</summary>
    public System.Collections.Concurrent.ConcurrentQueue<(string Transport, string Name)> Asked { get; } = new();

    public static byte[] Respond(ReadOnlySpan<byte> query)
    {
        // Header with QR, RD, RA; the question copied; one A record pointing at the question name.
        var questionEnd = 12;
        while (query[questionEnd] != 0)
        {
            questionEnd += 1 + query[questionEnd];
        }
        questionEnd += 5;
        var response = new List<byte> { query[0], query[1], 0x81, 0x80, 0, 1, 0, 1, 0, 0, 0, 0 };
        response.AddRange(query[12..questionEnd].ToArray());
        response.AddRange([0xC0, 12, 0, 1, 0, 1, 0, 0, 0, 60, 0, 4]);
        response.AddRange(Answer.GetAddressBytes());
        return [.. response];
    }

    private static string NameOf(ReadOnlySpan<byte> query)
    {
        var labels = new List<string>();
        for (var i = 12; query[i] != 0; i += 1 + query[i])
        {
            labels.Add(Encoding.ASCII.GetString(query.Slice(i + 1, query[i])));
        }
        return string.Join('.', labels);
    }

    private async Task ServeUdpAsync()
    {
        var buffer = new byte[4096];
        while (!_stop.IsCancellationRequested)
        {
            try
            {
                var r = await _udp.ReceiveFromAsync(buffer, new IPEndPoint(IPAddress.Any, 0), _stop.Token);
                Asked.Enqueue(("udp", NameOf(buffer.AsSpan(0, r.ReceivedBytes))));
                await _udp.SendToAsync(Respond(buffer.AsSpan(0, r.ReceivedBytes)), r.RemoteEndPoint);
            }
            catch (Exception) when (_stop.IsCancellationRequested)
            {
                return;
            }
            catch (Exception e) when (e is IndexOutOfRangeException or ArgumentOutOfRangeException or SocketException)
            {
                // A mangled query (the fuzz test's): no answer.
            }
        }
    }

    private async Task ServeTcpAsync()
    {
        while (!_stop.IsCancellationRequested)
        {
            Socket s;
            try
            {
                s = await _tcp.AcceptAsync(_stop.Token);
            }
            catch (Exception) when (_stop.IsCancellationRequested)
            {
                return;
            }
            await using var stream = new NetworkStream(s, ownsSocket: true);
            var prefix = new byte[2];
            await stream.ReadExactlyAsync(prefix);
            var query = new byte[BinaryPrimitives.ReadUInt16BigEndian(prefix)];
            await stream.ReadExactlyAsync(query);
            Asked.Enqueue(("tcp", NameOf(query)));
            var response = Respond(query);
            await stream.WriteAsync(new byte[] { (byte)(response.Length >> 8), (byte)response.Length });
            await stream.WriteAsync(response);
        }
    }

    public async ValueTask DisposeAsync()
    {
        await _stop.CancelAsync();
        _udp.Dispose();
        _tcp.Dispose();
        await Task.WhenAll(_udpLoop, _tcpLoop).WaitAsync(TimeSpan.FromSeconds(5)).ContinueWith(_ => { });
    }
}

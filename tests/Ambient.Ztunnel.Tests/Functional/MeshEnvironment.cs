using System.Net;
using System.Net.Sockets;
using System.Text;
using Ambient.Istiod;
using Ambient.TestCommon;
using Ambient.Ztunnel.Admin;
using Microsoft.Extensions.Logging;

namespace Ambient.Ztunnel.Tests.Functional;

/// <summary>
/// Everything in-process on loopback, as istio/ztunnel's tests/direct.rs: a real istiod-lite over a temp config
/// folder, one real NodeProxy per node, and TCP echo servers bound at the pods' own addresses.
/// Each test class uses its own namespace so pod addresses (hashed from names) never collide across classes.
/// </summary>
internal sealed class MeshEnvironment : IAsyncDisposable
{
    private readonly TempDir _dir;
    private readonly Dictionary<string, TcpEcho> _echoes = new();
    private readonly ILoggerFactory _logs;

    private MeshEnvironment(TempDir dir, IstiodHost istiod, ILoggerFactory logs)
    {
        _dir = dir;
        Istiod = istiod;
        _logs = logs;
    }

    public IstiodHost Istiod { get; }
    public Dictionary<string, NodeProxy> Nodes { get; } = new();
    public string Namespace { get; private set; } = "";

    /// <summary>Everything the node proxies logged (Information and up), for assertions and failure messages.</summary>
    public ListLogger Logs { get; private set; } = new();

    public string Warnings() => string.Join("\n", Logs.AtLeast(LogLevel.Warning).Select(e => $"{e.Category}: {e.Message} {e.Exception?.Message}"));

    /// <param name="configure">Changes each node's options before it starts (e.g. to turn the DNS proxy on).</param>
    public static async Task<MeshEnvironment> StartAsync(string ns, bool enrolled = true, TimeSpan? certificateTtl = null,
        Func<ZtunnelOptions, ZtunnelOptions>? configure = null)
    {
        var dir = new TempDir();
        var config = Path.Combine(dir.Path, "mesh");
        Directory.CreateDirectory(config);
        File.WriteAllText(Path.Combine(config, "mesh.yaml"), Yaml(ns, enrolled));
        var captured = new ListLogger();
        var logs = LoggerFactory.Create(l => l.SetMinimumLevel(LogLevel.Information).AddProvider(captured));
        var istiod = await IstiodHost.StartAsync(
            new IstiodOptions(config, Path.Combine(dir.Path, "state"), new IPEndPoint(IPAddress.Loopback, 0), null, "Kubernetes", "cluster.local"),
            l => l.SetMinimumLevel(LogLevel.Warning), CancellationToken.None);
        var env = new MeshEnvironment(dir, istiod, logs) { Namespace = ns, Logs = captured };
        try
        {
            var snapshot = istiod.Mesh.Snapshot;
            foreach (var pod in new[] { "echo-v1", "legacy-echo" })
            {
                var podNs = pod == "legacy-echo" ? ns + "-legacy" : ns;
                env._echoes[pod] = TcpEcho.Start(new IPEndPoint(snapshot.PodAddress(podNs, pod)!, 8080));
            }
            foreach (var node in new[] { "node-1", "node-2" })
            {
                var options = new ZtunnelOptions(node, snapshot.NodeAddress(node)!, new Uri($"https://127.0.0.1:{istiod.GrpcEndpoint.Port}"),
                    istiod.RootCertificatePath, Path.Combine(istiod.Options.StateFolder, "tokens", node + ".token"),
                    HbonePort: 15008, SocksPort: 15080, new AdminPorts(0, 0, 0), "Kubernetes")
                {
                    CertificateTtl = certificateTtl ?? TimeSpan.FromHours(24),
                };
                env.Nodes[node] = await NodeProxy.StartAsync(configure is null ? options : configure(options), logs, CancellationToken.None);
            }
            using var ready = new CancellationTokenSource(TimeSpan.FromSeconds(30));
            foreach (var n in env.Nodes.Values)
            {
                await n.WaitForReadyAsync(ready.Token);
            }
            // Listeners follow the snapshot asynchronously; wait until the client's SOCKS port is up.
            var client = snapshot.PodAddress(ns, "client")!;
            while (!env.Nodes["node-1"].SocksListeners.ContainsKey(client) || !env.Nodes["node-2"].HboneListeners.ContainsKey(snapshot.PodAddress(ns, "echo-v1")!))
            {
                await Task.Delay(20, ready.Token);
            }
            return env;
        }
        catch
        {
            await env.DisposeAsync();
            throw;
        }
    }

    /// <summary>The echo server standing in for <paramref name="pod"/>'s container (echo-v1, legacy-echo).</summary>
    public TcpEcho Echo(string pod) => _echoes[pod];

    public IPAddress PodAddress(string pod, string? ns = null) => Istiod.Mesh.Snapshot.PodAddress(ns ?? Namespace, pod)!;

    /// <summary>SOCKS5 CONNECT (RFC 1928, no auth, domain name) through the pod's ztunnel listener.</summary>
    public async Task<Socket> Socks5ConnectAsync(string fromPod, string host, int port, CancellationToken ct = default, bool bindToPod = true)
    {
        var socks = new IPEndPoint(PodAddress(fromPod), 15080);
        var socket = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp) { NoDelay = true };
        if (bindToPod)
        {
            // Bind to the pod's address as the app in that pod would.
            socket.Bind(new IPEndPoint(PodAddress(fromPod), 0));
        }
        await socket.ConnectAsync(socks, ct);
        try
        {
            await Socks5HandshakeAsync(socket, host, port, ct);
        }
        catch (SocksRefusedException)
        {
            socket.Dispose();
            throw;
        }
        return socket;
    }

    /// <summary>The SOCKS5 greeting and CONNECT request (domain name form) on a connected stream, whatever carries it:
    /// a socket to a SOCKS5 port, or a tunnel that ends at one.</summary>
    public async Task Socks5HandshakeAsync(Socket socket, string host, int port, CancellationToken ct = default)
    {
        await socket.SendAsync(new byte[] { 5, 1, 0 }, ct);
        var buf = new byte[512];
        await ReceiveExactlyAsync(socket, buf.AsMemory(0, 2), ct);
        Assert.Equal(new byte[] { 5, 0 }, buf[..2]);
        var name = Encoding.ASCII.GetBytes(host);
        var req = new byte[7 + name.Length];
        req[0] = 5; req[1] = 1; req[2] = 0; req[3] = 3; req[4] = (byte)name.Length;
        name.CopyTo(req, 5);
        req[^2] = (byte)(port >> 8); req[^1] = (byte)port;
        await socket.SendAsync(req, ct);
        await ReceiveExactlyAsync(socket, buf.AsMemory(0, 10), ct);
        if (buf[1] != 0)
        {
            throw new SocksRefusedException(buf[1], Warnings());
        }
    }

    public static async Task ReceiveExactlyAsync(Socket socket, Memory<byte> buffer, CancellationToken ct)
    {
        var read = 0;
        while (read < buffer.Length)
        {
            var n = await socket.ReceiveAsync(buffer[read..], ct);
            if (n == 0)
            {
                throw new EndOfStreamException($"peer closed after {read} of {buffer.Length} bytes");
            }
            read += n;
        }
    }

    public async Task<string> GetAsync(Uri uri)
    {
        using var http = new HttpClient();
        return await http.GetStringAsync(uri);
    }

    public Task<string> MetricsAsync(string node) => GetAsync(new Uri($"http://{Nodes[node].Admin.MetricsEndpoint}/metrics"));

    public Task<string> ConfigDumpAsync(string node) => GetAsync(new Uri($"http://{Nodes[node].Admin.AdminEndpoint}/config_dump"));

    public async ValueTask DisposeAsync()
    {
        foreach (var n in Nodes.Values)
        {
            await n.DisposeAsync();
        }
        foreach (var e in _echoes.Values)
        {
            e.Dispose();
        }
        await Istiod.DisposeAsync();
        _logs.Dispose();
        _dir.Dispose();
    }

    private static string Yaml(string ns, bool enrolled) =>
        MeshYaml.Namespace(ns, enrolled ? "ambient" : "none") + MeshYaml.Namespace(ns + "-legacy", dataplaneMode: null)
        + MeshYaml.ServiceAccount(ns, "client") + MeshYaml.ServiceAccount(ns, "echo") + $$$"""
        apiVersion: v1
        kind: Pod
        metadata: {name: client, namespace: {{{ns}}}, labels: {app: client}}
        spec:
          serviceAccountName: client
          nodeName: node-1
          containers: [{name: main, image: ambient/sleep}]
        ---
        apiVersion: v1
        kind: Pod
        metadata: {name: echo-v1, namespace: {{{ns}}}, labels: {app: echo, version: v1}}
        spec:
          serviceAccountName: echo
          nodeName: node-2
          containers: [{name: main, image: ambient/echo, ports: [{name: tcp-echo, containerPort: 8080}]}]
        ---
        apiVersion: v1
        kind: Service
        metadata:
          name: echo
          namespace: {{{ns}}}
        spec:
          selector: {app: echo}
          ports: [{name: tcp, port: 80, targetPort: tcp-echo}]
        ---
        apiVersion: v1
        kind: Pod
        metadata: {name: legacy-echo, namespace: {{{ns}}}-legacy, labels: {app: legacy-echo}}
        spec:
          nodeName: node-2
          containers: [{name: main, image: ambient/echo, ports: [{name: tcp-echo, containerPort: 8080}]}]
        ---
        apiVersion: v1
        kind: Service
        metadata: {name: legacy-echo, namespace: {{{ns}}}-legacy}
        spec:
          selector: {app: legacy-echo}
          ports: [{name: tcp, port: 80, targetPort: 8080}]
        """;
}

internal sealed class SocksRefusedException(byte code, string logs) : Exception($"SOCKS5 reply {code}; proxy warnings:\n{logs}")
{
    public byte Code { get; } = code;
}

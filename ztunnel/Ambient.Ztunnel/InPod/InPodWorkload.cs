using System.Net;
using System.Net.Sockets;
using System.Runtime.InteropServices;
using Ambient.Core;
using Ambient.Hbone;
using Ambient.Ztunnel.DnsProxy;
using Ambient.Ztunnel.Proxy.Outbound;
using Ambient.Ztunnel.Proxy.Socks5;
using Microsoft.Win32.SafeHandles;

namespace Ambient.Ztunnel.InPod;

/// <summary>
/// One enrolled pod served in its own network namespace: the namespace fd the node agent handed over, and the
/// listeners made inside it - 15001 outbound capture, 15006 plaintext inbound, 15008 HBONE (served by the node's one
/// HBONE server), 127.0.0.1:15053 DNS and 127.0.0.1:15080 SOCKS5 - plus the pod's own outbound proxy and HBONE pool, whose
/// sockets are made inside the pod and marked (Istio's ztunnel also keeps one proxy per pod). Everything here is
/// closed by <see cref="DisposeAsync"/>.
/// </summary>
internal sealed partial class InPodWorkload : IAsyncDisposable
{
    private readonly InPodContext _context;
    private readonly ILogger _logger;
    private readonly List<IAsyncDisposable> _owned = [];
    private readonly List<CaptureListener> _captures = [];
    private readonly CancellationTokenSource _stopping = new();
    // Every listening socket, in InPodListenerSockets order: what an upgrade hands to the next ztunnel.
    private readonly Socket?[] _listening = new Socket?[InPodListenerSockets.Count];
    private HboneConnectionPool? _pool;
    private bool _hbone;
    private bool _opened;

    private InPodWorkload(string uid, IPAddress address, SafeFileHandle netns, InPodContext context)
    {
        Uid = uid;
        Address = address;
        Netns = netns;
        _context = context;
        _logger = context.LoggerFactory.CreateLogger("Ambient.Ztunnel.InPod");
    }

    public string Uid { get; }

    /// <summary>The pod's address (its workload's first), which names it to the HBONE server and the outbound proxy.</summary>
    public IPAddress Address { get; }

    /// <summary>The pod's network namespace (owned; closed with the pod).</summary>
    public SafeFileHandle Netns { get; }

    /// <summary>The pod-side endpoints it listens on, by name ("outbound", "inbound-plaintext", "hbone", "dns", "socks5").</summary>
    public Dictionary<string, IPEndPoint> Listeners { get; } = new(StringComparer.Ordinal);

    /// <summary>The pod's DNS proxy (15053); null until its listeners are open.</summary>
    public DnsServer? Dns { get; private set; }

    /// <summary>
    /// Opens every listener inside <paramref name="netns"/>, or serves the listening sockets the ztunnel being upgraded
    /// handed over (<paramref name="handedOver"/>, InPodListenerSockets order; owned from now on); on failure closes
    /// what it opened (and the fds) and throws.
    /// </summary>
    public static async Task<InPodWorkload> StartAsync(string uid, IPAddress address, SafeFileHandle netns, InPodContext context,
        IReadOnlyList<SafeFileHandle>? handedOver, CancellationToken cancellationToken)
    {
        var pod = new InPodWorkload(uid, address, netns, context);
        try
        {
            if (handedOver is not null)
            {
                pod.Adopt(handedOver);
            }
            await pod.OpenAsync().ConfigureAwait(false);
            return pod;
        }
        catch
        {
            await pod.DisposeAsync().ConfigureAwait(false);
            throw;
        }
    }

    /// <summary>A socket inside the pod, marked so its capture rules let it pass (upstreams, and connections to the app).</summary>
    public ValueTask<Socket> CreateSocketAsync(AddressFamily family, CancellationToken cancellationToken) =>
        new(_context.Sockets.CreateMarkedAsync(Netns, family).WaitAsync(cancellationToken));

    /// <summary>The listening sockets to hand to the ztunnel that replaces this one (it gets duplicates; these stay open).</summary>
    public SafeHandle[] ListeningSockets()
    {
        var handles = new SafeHandle[_listening.Length];
        for (var i = 0; i < _listening.Length; i++)
        {
            handles[i] = _listening[i]?.SafeHandle ?? throw new InvalidOperationException($"pod {Uid} has no listening socket {i}");
        }
        return handles;
    }

    /// <summary>Connections accepted on 15001 and 15006 that are still open (HBONE tunnels drain in the HBONE server).</summary>
    public int LiveConnections
    {
        get
        {
            var live = 0;
            foreach (var capture in _captures)
            {
                live += capture.LiveConnections;
            }
            return live;
        }
    }

    /// <summary>
    /// An upgrade's old side: stops accepting on 15001 and 15006 while their connections go on (the next ztunnel accepts
    /// from the same sockets now); DNS and SOCKS5 stop at once (a query or a SOCKS5 client retries into the next one).
    /// </summary>
    public async Task StopAcceptingAsync()
    {
        foreach (var capture in _captures)
        {
            await capture.StopAcceptingAsync().ConfigureAwait(false);
        }
        foreach (var owned in _owned)
        {
            if (owned is not CaptureListener)
            {
                await owned.DisposeAsync().ConfigureAwait(false);
            }
        }
    }

    private void Adopt(IReadOnlyList<SafeFileHandle> fds)
    {
        if (fds.Count != InPodListenerSockets.Count)
        {
            foreach (var fd in fds)
            {
                fd.Dispose();
            }
            throw new InvalidOperationException($"{fds.Count} listening sockets handed over, expected {InPodListenerSockets.Count}");
        }
        for (var i = 0; i < fds.Count; i++)
        {
            var handle = new SafeSocketHandle(fds[i].DangerousGetHandle(), ownsHandle: true);
            fds[i].SetHandleAsInvalid();
            _listening[i] = new Socket(handle);
        }
    }

    /// <summary>The handed-over socket at <paramref name="index"/> (taken: it is then owned by its listener), else a new one.</summary>
    private async Task<Socket> ListenerAsync(int index, Func<Task<Socket>> create)
    {
        if (_listening[index] is { } handed)
        {
            return handed;
        }
        var socket = await create().ConfigureAwait(false);
        _listening[index] = socket;
        return socket;
    }

    private async Task OpenAsync()
    {
        var ports = _context.Ports;
        var sockets = _context.Sockets;
        _pool = new HboneConnectionPool(_context.Tls, _context.HboneOptions with { CreateSocket = CreateSocketAsync }, _context.LoggerFactory);
        var outbound = new OutboundProxy(_context.State, _pool, _context.Metrics, _context.LoggerFactory.CreateLogger<OutboundProxy>(),
            new OutboundProxyOptions { CreateSocket = CreateSocketAsync }, _context.MeshEndpoints);

        var capture = await ListenerAsync(InPodListenerSockets.Outbound, () => sockets.ListenAsync(Netns, new IPEndPoint(IPAddress.Any, ports.OutboundCapture))).ConfigureAwait(false);
        Own(new CaptureListener(capture, (client, ct) => CaptureOutboundAsync(outbound, client, ct)), "outbound");

        var plaintext = await ListenerAsync(InPodListenerSockets.InboundPlaintext, () => sockets.ListenAsync(Netns, new IPEndPoint(IPAddress.Any, ports.InboundPlaintext))).ConfigureAwait(false);
        Own(new CaptureListener(plaintext, (client, ct) => _context.Plaintext.ServeAsync(client, Address, CreateSocketAsync, ct)), "inbound-plaintext");

        var hbone = await ListenerAsync(InPodListenerSockets.Hbone, () => sockets.ListenAsync(Netns, new IPEndPoint(IPAddress.Any, ports.Hbone))).ConfigureAwait(false);
        Listeners["hbone"] = _context.Inbound.AddListener(Address, hbone);
        _hbone = true;

        // 127.0.0.1, as Istio's ztunnel binds it in the pod. The pod's queries reach it by REDIRECT (ISTIO_OUTPUT), which
        // for a locally sent packet rewrites the destination to 127.0.0.1: the answer must come from 127.0.0.1:15053 for
        // conntrack to turn its source back into the nameserver's. A wildcard UDP socket answers from the address
        // routing picks for the pod's own address (the pod's address, not 127.0.0.1); conntrack takes that for a new
        // flow, the source stays podIP:15053, and the resolver's connected socket drops the answer: every lookup times out.
        var dnsEndpoint = new IPEndPoint(IPAddress.Loopback, ports.Dns);
        var udp = await ListenerAsync(InPodListenerSockets.DnsUdp, () => sockets.BindUdpAsync(Netns, dnsEndpoint)).ConfigureAwait(false);
        var tcp = await ListenerAsync(InPodListenerSockets.DnsTcp, () => sockets.ListenAsync(Netns, dnsEndpoint)).ConfigureAwait(false);
        // Forwarded names leave from the ztunnel's own namespace (the forwarder's sockets are made there), so they are
        // never captured by the pod's rules and reach the host's resolver even when it is on the host's loopback.
        Dns = DnsServer.Start(udp, tcp, _context.DnsAnswerer, _context.DnsForwarder, _context.LoggerFactory.CreateLogger<DnsServer>(), client: Address);
        _owned.Add(Dns);
        Listeners["dns"] = dnsEndpoint;

        // 127.0.0.1 inside the pod: only the pod's own programs can use its identity through it.
        var socks = await ListenerAsync(InPodListenerSockets.Socks5, () => sockets.ListenAsync(Netns, new IPEndPoint(IPAddress.Loopback, ports.Socks5))).ConfigureAwait(false);
        var socksListener = Socks5Listener.Start(socks, Address, outbound, _context.LoggerFactory.CreateLogger<Socks5Listener>());
        _owned.Add(socksListener);
        Listeners["socks5"] = socksListener.LocalEndPoint;
        _opened = true;
    }

    private void Own(CaptureListener listener, string name)
    {
        _owned.Add(listener);
        _captures.Add(listener);
        Listeners[name] = listener.LocalEndPoint;
    }

    /// <summary>15001: the app believes it is connected already; where it meant to go is the socket's original destination.</summary>
    private async Task CaptureOutboundAsync(IOutboundProxy outbound, Socket client, CancellationToken listenerStopping)
    {
        using var linked = CancellationTokenSource.CreateLinkedTokenSource(listenerStopping, _stopping.Token);
        var remote = (IPEndPoint)client.RemoteEndPoint!;
        if (CaptureListener.OriginalDestination(client) is not { } original)
        {
            Log.NoOriginalDestination(_logger, Uid, remote.ToString());
            CaptureListener.Reset(client);
            return;
        }
        await using var stream = new NetworkStream(client, ownsSocket: false);
        var app = new OutboundClient(remote, stream);
        await outbound.ProxyAsync(Address, app, new OriginalDestination(original.Address, null, original.Port), linked.Token).ConfigureAwait(false);
        if (!app.Connected)
        {
            // Not carried (no route, denied, unreachable): the app sees a reset, never a plaintext leak.
            CaptureListener.Reset(client);
        }
    }

    public async ValueTask DisposeAsync()
    {
        if (_stopping.IsCancellationRequested)
        {
            return;
        }
        await _stopping.CancelAsync().ConfigureAwait(false);
        if (_hbone)
        {
            _context.Inbound.RemoveListener(Address);
        }
        foreach (var owned in _owned)
        {
            await owned.DisposeAsync().ConfigureAwait(false);
        }
        if (!_opened)
        {
            // A failed start: sockets opened or handed over but maybe not yet given to their listener.
            foreach (var socket in _listening)
            {
                socket?.Dispose();
            }
        }
        if (_pool is not null)
        {
            await _pool.DisposeAsync().ConfigureAwait(false);
        }
        Netns.Dispose();
    }

    private static partial class Log
    {
        [LoggerMessage(1, LogLevel.Warning, "pod {Uid}: captured connection from {Remote} has no original destination; reset")]
        public static partial void NoOriginalDestination(ILogger logger, string uid, string remote);
    }
}

/// <summary>
/// The order of a pod's listening sockets when one ztunnel hands them to the next (ZDS HandOverListeners, then after
/// the netns fd in AddWorkload).
/// </summary>
internal static class InPodListenerSockets
{
    public const int Outbound = 0;
    public const int InboundPlaintext = 1;
    public const int Hbone = 2;
    public const int DnsUdp = 3;
    public const int DnsTcp = 4;
    public const int Socks5 = 5;
    public const int Count = 6;
}

/// <summary>The ports opened inside each pod (Istio's numbers; tests may move them).</summary>
internal sealed record InPodPorts
{
    public int OutboundCapture { get; init; } = MeshPorts.OutboundCapture;
    public int InboundPlaintext { get; init; } = MeshPorts.InboundPlaintext;
    public int Hbone { get; init; } = MeshPorts.Hbone;
    public int Dns { get; init; } = MeshPorts.Dns;
    public int Socks5 { get; init; } = MeshPorts.Socks5;
}

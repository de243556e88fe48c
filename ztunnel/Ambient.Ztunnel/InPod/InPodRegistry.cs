using System.Net;
using System.Net.Sockets;
using System.Runtime.InteropServices;
using Ambient.Hbone;
using Ambient.Hbone.Server;
using Ambient.Dataplane.State;
using Ambient.Ztunnel.DnsProxy;
using Ambient.Ztunnel.Proxy;
using Ambient.Ztunnel.Telemetry;
using Microsoft.Win32.SafeHandles;

namespace Ambient.Ztunnel.InPod;

/// <summary>What every in-pod workload shares: the node's state, metrics, TLS, HBONE server, DNS and the netns thread.</summary>
internal sealed record InPodContext(
    ProxyState State,
    ConnectionMetrics Metrics,
    IHboneTlsProvider Tls,
    HboneClientOptions HboneOptions,
    HboneInboundServer Inbound,
    MeshEndpoints MeshEndpoints,
    DnsAnswerer DnsAnswerer,
    DnsForwarder DnsForwarder,
    PlaintextInbound Plaintext,
    NetnsSockets Sockets,
    InPodPorts Ports,
    ILoggerFactory LoggerFactory);

/// <summary>
/// The pods this ztunnel serves in their own network namespaces (in-pod mode), by workload uid: the one place their
/// state lives. The ZDS client adds and removes them as the node agent says; the HBONE server asks it for the pod
/// behind a CONNECT target so the connection to the app is made inside that pod. Adds and removes are serialized.
/// </summary>
internal sealed partial class InPodRegistry : IAsyncDisposable
{
    private readonly InPodContext _context;
    private readonly ILogger _logger;
    private readonly TimeSpan _workloadWait;
    private readonly SemaphoreSlim _changes = new(1, 1);
    private readonly Dictionary<string, InPodWorkload> _byUid = new(StringComparer.Ordinal);
    private volatile Dictionary<IPAddress, InPodWorkload> _byAddress = [];
    private bool _disposed;
    private bool _draining;

    /// <param name="workloadWait">How long an AddWorkload waits for the pod to appear in the discovery snapshot (the
    /// node agent can be faster than istiod).</param>
    public InPodRegistry(InPodContext context, TimeSpan? workloadWait = null)
    {
        _context = context;
        _logger = context.LoggerFactory.CreateLogger("Ambient.Ztunnel.InPod");
        _workloadWait = workloadWait ?? TimeSpan.FromSeconds(10);
    }

    /// <summary>The pods served now, by uid (a copy).</summary>
    public IReadOnlyDictionary<string, InPodWorkload> Pods
    {
        get
        {
            lock (_byUid)
            {
                return new Dictionary<string, InPodWorkload>(_byUid, StringComparer.Ordinal);
            }
        }
    }

    public bool Contains(string uid)
    {
        lock (_byUid)
        {
            return _byUid.ContainsKey(uid);
        }
    }

    /// <summary>
    /// Serves the pod <paramref name="uid"/> inside <paramref name="netns"/> (the registry owns the fd from now on):
    /// returns once its listeners are up, or the reason it could not (the fd is then closed). A pod already served keeps
    /// its listeners and connections; the new fd is closed.
    /// </summary>
    public async Task<string?> AddAsync(string uid, SafeFileHandle netns, CancellationToken cancellationToken, IReadOnlyList<SafeFileHandle>? handedOver = null)
    {
        await _changes.WaitAsync(cancellationToken).ConfigureAwait(false);
        try
        {
            if (_disposed || _draining)
            {
                Close(netns, handedOver);
                return "the ztunnel is stopping";
            }
            if (Contains(uid))
            {
                Close(netns, handedOver);
                Log.AlreadyServed(_logger, uid);
                return null;
            }
            var address = await WaitForAddressAsync(uid, cancellationToken).ConfigureAwait(false);
            if (address is null)
            {
                Close(netns, handedOver);
                var error = $"workload {uid} has no address in this node's snapshot after {_workloadWait.TotalSeconds:0.#} s";
                Log.AddFailed(_logger, uid, error);
                return error;
            }
            InPodWorkload pod;
            try
            {
                pod = await InPodWorkload.StartAsync(uid, address, netns, _context, handedOver, cancellationToken).ConfigureAwait(false);
            }
            catch (Exception e) when (e is IOException or SocketException or InvalidOperationException)
            {
                Log.AddFailed(_logger, uid, e.Message);
                return $"listeners for {uid} could not start: {e.Message}";
            }
            lock (_byUid)
            {
                _byUid[uid] = pod;
                _byAddress = new Dictionary<IPAddress, InPodWorkload>(_byAddress) { [address] = pod };
            }
            Log.Added(_logger, uid, address.ToString(), string.Join(", ", pod.Listeners.Select(l => $"{l.Key} {l.Value}")),
                handedOver is null ? "opened" : "handed over by the ztunnel it replaces");
            return null;
        }
        finally
        {
            _changes.Release();
        }
    }

    private static void Close(SafeFileHandle netns, IReadOnlyList<SafeFileHandle>? handedOver)
    {
        netns.Dispose();
        if (handedOver is not null)
        {
            foreach (var fd in handedOver)
            {
                fd.Dispose();
            }
        }
    }

    /// <summary>
    /// The pod's listening sockets for the ztunnel that replaces this one (ZDS HandOverListeners), which gets
    /// duplicates: both accept from the same sockets until this one drains. Null when the pod is not served here.
    /// </summary>
    public SafeHandle[]? ListeningSockets(string uid)
    {
        lock (_byUid)
        {
            return _byUid.TryGetValue(uid, out var pod) ? pod.ListeningSockets() : null;
        }
    }

    /// <summary>
    /// An upgrade's old side (SIGTERM): every pod stops accepting - the next ztunnel accepts from the same sockets - and
    /// the connections already accepted on 15001 and 15006 go on until they end or <paramref name="timeout"/> passes.
    /// Later ZDS requests are refused. Returns how many were still open at the timeout (they are cut by the dispose).
    /// </summary>
    public async Task<int> DrainAsync(TimeSpan timeout)
    {
        await _changes.WaitAsync().ConfigureAwait(false);
        try
        {
            _draining = true;
            foreach (var pod in Pods.Values)
            {
                await pod.StopAcceptingAsync().ConfigureAwait(false);
            }
        }
        finally
        {
            _changes.Release();
        }
        var pods = new List<InPodWorkload>(Pods.Values);
        var deadline = DateTime.UtcNow + timeout;
        while (true)
        {
            var live = 0;
            foreach (var pod in pods)
            {
                live += pod.LiveConnections;
            }
            if (live == 0 || DateTime.UtcNow >= deadline)
            {
                Log.Drained(_logger, pods.Count, live);
                return live;
            }
            await Task.Delay(50).ConfigureAwait(false);
        }
    }

    /// <summary>Stops serving <paramref name="uid"/>: its listeners close, its connections are cut, its fd is closed. False if unknown.</summary>
    public async Task<bool> RemoveAsync(string uid)
    {
        await _changes.WaitAsync().ConfigureAwait(false);
        try
        {
            return await RemoveLockedAsync(uid).ConfigureAwait(false);
        }
        finally
        {
            _changes.Release();
        }
    }

    /// <summary>After a ZDS snapshot: drops every pod not in <paramref name="keep"/>.</summary>
    public async Task RetainOnlyAsync(IReadOnlySet<string> keep)
    {
        await _changes.WaitAsync().ConfigureAwait(false);
        try
        {
            foreach (var uid in Pods.Keys)
            {
                if (!keep.Contains(uid))
                {
                    await RemoveLockedAsync(uid).ConfigureAwait(false);
                }
            }
        }
        finally
        {
            _changes.Release();
        }
    }

    /// <summary>
    /// The HBONE server's connection to a CONNECT target: made inside the target pod's namespace and marked when the
    /// pod is served here in-pod, else an ordinary socket.
    /// </summary>
    public async ValueTask<Socket> ConnectAsync(IPEndPoint target, CancellationToken cancellationToken)
    {
        Socket socket;
        try
        {
            socket = _byAddress.TryGetValue(target.Address, out var pod)
                ? await pod.CreateSocketAsync(target.AddressFamily, cancellationToken).ConfigureAwait(false)
                : new Socket(target.AddressFamily, SocketType.Stream, ProtocolType.Tcp) { NoDelay = true };
        }
        catch (IOException e)
        {
            // The pod's namespace could not be entered (it is going away): to the HBONE server an unreachable upstream.
            throw new SocketException((int)SocketError.NetworkUnreachable, e.Message);
        }
        try
        {
            await socket.ConnectAsync(target, cancellationToken).ConfigureAwait(false);
            return socket;
        }
        catch
        {
            socket.Dispose();
            throw;
        }
    }

    private async Task<bool> RemoveLockedAsync(string uid)
    {
        InPodWorkload? pod;
        lock (_byUid)
        {
            if (!_byUid.Remove(uid, out pod))
            {
                return false;
            }
            var byAddress = new Dictionary<IPAddress, InPodWorkload>(_byAddress);
            byAddress.Remove(pod.Address);
            _byAddress = byAddress;
        }
        await pod.DisposeAsync().ConfigureAwait(false);
        Log.Removed(_logger, uid);
        return true;
    }

    private async Task<IPAddress?> WaitForAddressAsync(string uid, CancellationToken cancellationToken)
    {
        var deadline = DateTime.UtcNow + _workloadWait;
        while (true)
        {
            if (_context.State.Snapshot.FindWorkloadByUid(uid) is { Addresses.Length: > 0 } workload)
            {
                return workload.Addresses[0];
            }
            if (DateTime.UtcNow >= deadline)
            {
                return null;
            }
            await Task.Delay(50, cancellationToken).ConfigureAwait(false);
        }
    }

    public async ValueTask DisposeAsync()
    {
        await _changes.WaitAsync().ConfigureAwait(false);
        try
        {
            _disposed = true;
            foreach (var uid in Pods.Keys)
            {
                await RemoveLockedAsync(uid).ConfigureAwait(false);
            }
        }
        finally
        {
            _changes.Release();
        }
    }

    private static partial class Log
    {
        [LoggerMessage(1, LogLevel.Information, "pod {Uid} ({Address}) served in its network namespace: {Listeners} ({How})")]
        public static partial void Added(ILogger logger, string uid, string address, string listeners, string how);

        [LoggerMessage(5, LogLevel.Information, "draining: {Pods} pods stopped accepting; {Open} captured connections still open at the end")]
        public static partial void Drained(ILogger logger, int pods, int open);

        [LoggerMessage(2, LogLevel.Information, "pod {Uid} removed: its listeners in its network namespace are closed")]
        public static partial void Removed(ILogger logger, string uid);

        [LoggerMessage(3, LogLevel.Warning, "pod {Uid} could not be served in its network namespace: {Error}")]
        public static partial void AddFailed(ILogger logger, string uid, string error);

        [LoggerMessage(4, LogLevel.Information, "pod {Uid} is already served; keeping its listeners")]
        public static partial void AlreadyServed(ILogger logger, string uid);
    }
}

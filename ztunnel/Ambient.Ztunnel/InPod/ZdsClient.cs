using System.Net.Sockets;
using System.Runtime.InteropServices;
using Ambient.Core.InPod;
using Ambient.Core.Protos.Zds;
using Google.Protobuf;

namespace Ambient.Ztunnel.InPod;

/// <summary>
/// The ztunnel's side of ZDS (zds.proto's header has the protocol): connects to the node agent's SEQPACKET socket,
/// says hello, then serves every WorkloadRequest into the <see cref="InPodRegistry"/> and acks it - an AddWorkload
/// only once the pod's listeners are up. When the agent goes away it reconnects with backoff; pods already served
/// keep their listeners and connections meanwhile, and the next snapshot (SnapshotSent) drops those it no longer names.
/// </summary>
internal sealed partial class ZdsClient : IAsyncDisposable
{
    // A WorkloadRequest is a few hundred bytes; anything near this is not one.
    private const int MaxPacket = 64 * 1024;

    private readonly string _path;
    private readonly InPodRegistry _registry;
    private readonly ILogger _logger;
    private readonly TimeSpan _maxBackoff;
    private readonly CancellationTokenSource _stopping = new();
    private Task _run = Task.CompletedTask;
    private int _sessions;

    public ZdsClient(string path, InPodRegistry registry, ILogger logger, TimeSpan? maxBackoff = null)
    {
        _path = path;
        _registry = registry;
        _logger = logger;
        _maxBackoff = maxBackoff ?? TimeSpan.FromSeconds(5);
    }

    /// <summary>How many times a session with the node agent started (hello sent); tests wait on reconnects with it.</summary>
    public int Sessions => Volatile.Read(ref _sessions);

    public void Start() => _run = RunAsync(_stopping.Token);

    private async Task RunAsync(CancellationToken stopping)
    {
        var backoff = TimeSpan.FromMilliseconds(100);
        while (!stopping.IsCancellationRequested)
        {
            try
            {
                using var socket = await SeqPacketSocket.ConnectAsync(_path, stopping).ConfigureAwait(false);
                backoff = TimeSpan.FromMilliseconds(100);
                await ServeAsync(socket, stopping).ConfigureAwait(false);
                Log.AgentGone(_logger, _path, "it closed the connection");
            }
            catch (OperationCanceledException) when (stopping.IsCancellationRequested)
            {
                return;
            }
            catch (Exception e) when (e is SocketException or IOException or InvalidProtocolBufferException)
            {
                Log.AgentGone(_logger, _path, e.Message);
            }
            try
            {
                await Task.Delay(backoff, stopping).ConfigureAwait(false);
            }
            catch (OperationCanceledException)
            {
                return;
            }
            backoff = TimeSpan.FromTicks(Math.Min(backoff.Ticks * 2, _maxBackoff.Ticks));
        }
    }

    private async Task ServeAsync(SeqPacketSocket socket, CancellationToken stopping)
    {
        await socket.SendAsync(new ZdsHello { Version = Ambient.Core.Protos.Zds.Version.V1 }.ToByteArray(), stopping).ConfigureAwait(false);
        Interlocked.Increment(ref _sessions);
        Log.Connected(_logger, _path);
        // Pods named since this connection started: after SnapshotSent every other pod is dropped.
        var named = new HashSet<string>(StringComparer.Ordinal);
        var buffer = new byte[MaxPacket];
        while (true)
        {
            string? error;
            SafeHandle[] ackFds = [];
            try
            {
                using var packet = await socket.ReceiveAsync(buffer, stopping).ConfigureAwait(false);
                if (packet.IsEndOfStream)
                {
                    return;
                }
                var request = WorkloadRequest.Parser.ParseFrom(buffer, 0, packet.Length);
                if (request.PayloadCase == WorkloadRequest.PayloadOneofCase.HandOver)
                {
                    error = HandOver(request.HandOver.Uid, out ackFds);
                }
                else
                {
                    error = await HandleAsync(request, packet, named, stopping).ConfigureAwait(false);
                }
            }
            catch (Exception e) when (e is SeqPacketException or InvalidProtocolBufferException)
            {
                // One bad packet (too large, not a WorkloadRequest) is refused; the session goes on.
                Log.BadRequest(_logger, "packet", e.Message);
                error = e.Message;
            }
            var ack = new WorkloadResponse { Ack = new Ack { Error = error ?? "" } };
            // The listening sockets ride on the ack as duplicates: this ztunnel keeps accepting on its own until it drains.
            await socket.SendAsync(ack.ToByteArray(), ackFds, stopping).ConfigureAwait(false);
        }
    }

    /// <summary>An upgrade: the pod's listening sockets for the ztunnel that replaces this one.</summary>
    private string? HandOver(string uid, out SafeHandle[] fds)
    {
        Log.Request(_logger, "hand-over", uid);
        fds = _registry.ListeningSockets(uid) ?? [];
        return fds.Length == 0 ? $"HandOverListeners {uid}: not served here" : null;
    }

    private async Task<string?> HandleAsync(WorkloadRequest request, ReceivedPacket packet, HashSet<string> named, CancellationToken stopping)
    {
        switch (request.PayloadCase)
        {
            case WorkloadRequest.PayloadOneofCase.Add:
                var uid = request.Add.Uid;
                named.Add(uid);
                // The pod's network namespace, then (an upgrade) the listening sockets the ztunnel it replaces handed over.
                var fds = packet.TakeAllFds();
                if (fds.Count != 1 && fds.Count != 1 + InPodListenerSockets.Count)
                {
                    foreach (var fd in fds)
                    {
                        fd.Dispose();
                    }
                    var problem = fds.Count == 0 ? "the packet carries no file descriptor" : $"the packet carries {fds.Count} file descriptors";
                    Log.BadRequest(_logger, "AddWorkload " + uid, problem);
                    return $"AddWorkload {uid}: {problem}; expected the pod's network namespace (and {InPodListenerSockets.Count} listening sockets on an upgrade)";
                }
                Log.Request(_logger, fds.Count == 1 ? "add" : "add (listeners handed over)", uid);
                return await _registry.AddAsync(uid, fds[0], stopping, fds.Count == 1 ? null : fds.GetRange(1, InPodListenerSockets.Count)).ConfigureAwait(false);
            case WorkloadRequest.PayloadOneofCase.Keep:
                named.Add(request.Keep.Uid);
                Log.Request(_logger, "keep", request.Keep.Uid);
                return _registry.Contains(request.Keep.Uid) ? null : $"KeepWorkload {request.Keep.Uid}: not served here";
            case WorkloadRequest.PayloadOneofCase.Del:
                Log.Request(_logger, "del", request.Del.Uid);
                named.Remove(request.Del.Uid);
                await _registry.RemoveAsync(request.Del.Uid).ConfigureAwait(false);
                return null;
            case WorkloadRequest.PayloadOneofCase.SnapshotSent:
                Log.Request(_logger, "snapshot-sent", named.Count.ToString(System.Globalization.CultureInfo.InvariantCulture));
                await _registry.RetainOnlyAsync(named).ConfigureAwait(false);
                return null;
            default:
                Log.BadRequest(_logger, "request", "unknown payload");
                return "unknown WorkloadRequest payload";
        }
    }

    public async ValueTask DisposeAsync()
    {
        await _stopping.CancelAsync().ConfigureAwait(false);
        await _run.ConfigureAwait(false);
    }

    private static partial class Log
    {
        [LoggerMessage(1, LogLevel.Information, "ZDS: connected to the node agent at {Path}")]
        public static partial void Connected(ILogger logger, string path);

        [LoggerMessage(2, LogLevel.Warning, "ZDS: node agent at {Path} unavailable ({Reason}); pods already served keep their capture; reconnecting")]
        public static partial void AgentGone(ILogger logger, string path, string reason);

        [LoggerMessage(3, LogLevel.Information, "ZDS: {Kind} {Uid}")]
        public static partial void Request(ILogger logger, string kind, string uid);

        [LoggerMessage(4, LogLevel.Warning, "ZDS: bad {What}: {Error}")]
        public static partial void BadRequest(ILogger logger, string what, string error);
    }
}

using System.Net.Sockets;
using System.Threading.Channels;
using Ambient.Core.InPod;
using Ambient.Core.Protos.Zds;
using Google.Protobuf;
using Microsoft.Extensions.Logging;
using System.Runtime.InteropServices;
using Microsoft.Win32.SafeHandles;

namespace Ambient.Ctl.Local.NodeAgent;

/// <summary>Who an enrolled pod is, as ZDS names it to the ztunnel.</summary>
/// <param name="Uid">The workload uid the ztunnel finds it by: <c>&lt;cluster&gt;//Pod/&lt;namespace&gt;/&lt;name&gt;</c>.</param>
internal sealed record ZdsPod(string Uid, string Name, string Namespace, string ServiceAccount)
{
    public static ZdsPod For(string clusterId, string @namespace, string name, string serviceAccount) =>
        new(Core.Model.WorkloadInfo.PodUid(clusterId, @namespace, name), name, @namespace, serviceAccount);
}

/// <summary>The ztunnel answered a request with an error ack, or never answered it.</summary>
internal sealed class ZdsException(string message) : Exception(message);

/// <summary>
/// The node agent's end of ZDS (the protocol is in Protos/istio/zds/zds.proto): it listens on the node's SEQPACKET
/// socket, and to the ztunnel that connects (the newest one, when an upgrade brings a second) it sends every pod it
/// holds (AddWorkload with the pod's netns fd), SnapshotSent, then an Add or Del whenever the set of pods changes,
/// one request at a time, each waiting for its ack. The set of pods is the desired state; each connection keeps what
/// it has sent and sends the difference, so a ztunnel that reconnects, or an agent that restarts, converges without
/// replaying history.
/// An upgrade connects a second ztunnel while the first still serves: the first is retired (no more requests of its
/// own; its connection stays open until it exits, so it does not reconnect and take the node back), and each pod's
/// AddWorkload to the new one carries, after the netns fd, the listening sockets the retired one handed over
/// (HandOverListeners): both accept from the same sockets, so no connection waiting in an accept queue is lost when
/// the old one stops accepting.
/// </summary>
internal sealed partial class ZdsServer : IAsyncDisposable
{
    private readonly string _socketPath;
    private readonly TimeSpan _ackTimeout;
    private readonly ILogger _logger;
    private readonly Lock _lock = new();
    private readonly Dictionary<string, Entry> _pods = new(StringComparer.Ordinal);
    private readonly SemaphoreSlim _changed = new(0, int.MaxValue);
    private readonly CancellationTokenSource _stop = new();
    private SeqPacketSocket? _listener;
    private Task _acceptLoop = Task.CompletedTask;
    private Connection? _current;
    private int _connections;
    private int _snapshots;

    /// <summary>A pod in the desired state: its netns fd (owned by the caller) and who waits for it to be acked.</summary>
    private sealed class Entry(ZdsPod pod, SafeFileHandle netns)
    {
        public ZdsPod Pod { get; } = pod;
        public SafeFileHandle Netns { get; } = netns;
        public TaskCompletionSource Added { get; } = new(TaskCreationOptions.RunContinuationsAsynchronously);
        public TaskCompletionSource Removed { get; } = new(TaskCreationOptions.RunContinuationsAsynchronously);
    }

    private sealed class Connection(SeqPacketSocket socket, int id, CancellationToken serverStopping)
    {
        public SeqPacketSocket Socket { get; } = socket;
        public int Id { get; } = id;
        public CancellationTokenSource Stop { get; } = CancellationTokenSource.CreateLinkedTokenSource(serverStopping);

        /// <summary>What this ztunnel holds from us (Add acked, no Del yet).</summary>
        public Dictionary<string, Entry> Sent { get; } = new(StringComparer.Ordinal);

        /// <summary>The pod whose Add is on the wire: the ztunnel may hold it already.</summary>
        public Entry? AddInFlight { get; set; }

        /// <summary>Cancelled when a newer ztunnel connects: this one gets no more requests of its own.</summary>
        public CancellationTokenSource Superseded { get; } = new();

        /// <summary>While this connection gets its snapshot: the ztunnel it replaces, which hands over the pods' listeners.</summary>
        public Connection? Replacing { get; set; }

        /// <summary>One request and its ack at a time (the connection's own syncs, and a newer connection's hand-overs).</summary>
        public SemaphoreSlim Requests { get; } = new(1, 1);

        /// <summary>Acks (with the descriptors they carry) as the reader receives them; completed (with the reason) when the connection ends.</summary>
        public Channel<(WorkloadResponse Response, List<SafeFileHandle> Fds)> Responses { get; } =
            Channel.CreateUnbounded<(WorkloadResponse, List<SafeFileHandle>)>(new UnboundedChannelOptions { SingleReader = false, SingleWriter = true });
        public Task Loop { get; set; } = Task.CompletedTask;
    }

    private ZdsServer(string socketPath, TimeSpan ackTimeout, ILogger logger)
    {
        _socketPath = socketPath;
        _ackTimeout = ackTimeout;
        _logger = logger;
    }

    /// <summary>Listens on <paramref name="socketPath"/> (a stale socket file there, ours from an earlier run, is replaced).</summary>
    public static ZdsServer Start(string socketPath, ILogger logger, TimeSpan? ackTimeout = null)
    {
        var server = new ZdsServer(socketPath, ackTimeout ?? TimeSpan.FromSeconds(10), logger);
        File.Delete(socketPath);
        server._listener = SeqPacketSocket.Listen(socketPath);
        server._acceptLoop = Task.Run(server.AcceptLoopAsync);
        return server;
    }

    public string SocketPath => _socketPath;

    /// <summary>How many ztunnel connections got their whole snapshot acked: an upgrade's new ztunnel is confirmed once this grows.</summary>
    public int SnapshotsAcked => Volatile.Read(ref _snapshots);

    /// <summary>True while a ztunnel is connected and has had its snapshot.</summary>
    public bool ZtunnelConnected
    {
        get { lock (_lock) return _current is not null; }
    }

    /// <summary>
    /// Hands the pod to the ztunnel (now, or when one connects) and completes when the ztunnel acked it: its listeners
    /// are up in the pod's namespace. Faults with <see cref="ZdsException"/> on an error ack (the pod is then dropped).
    /// The caller keeps owning <paramref name="netns"/> and must keep it open until <see cref="RemoveAsync"/> completes.
    /// </summary>
    public Task AddAsync(ZdsPod pod, SafeFileHandle netns)
    {
        var entry = new Entry(pod, netns);
        lock (_lock)
        {
            // Enrolled again (a new netns, say): the new entry replaces the old; each connection sends Del then Add.
            if (_pods.Remove(pod.Uid, out var previous) && !IsHeld(previous))
            {
                previous.Removed.TrySetResult();
            }
            _pods[pod.Uid] = entry;
        }
        _changed.Release();
        return entry.Added.Task;
    }

    /// <summary>
    /// Takes the pod out and completes when the connected ztunnel acked the Del (at once when no ztunnel holds it: the
    /// next one's snapshot will not name it). Faults with <see cref="ZdsException"/> on an error ack.
    /// </summary>
    public Task RemoveAsync(string uid)
    {
        Entry? entry;
        lock (_lock)
        {
            if (!_pods.Remove(uid, out entry)) return Task.CompletedTask;
            entry.Added.TrySetException(new ZdsException($"{uid} left before the ztunnel acked it"));
            entry.Added.Task.Exception?.Handle(static _ => true); // nobody may be waiting any more
            if (!IsHeld(entry)) entry.Removed.TrySetResult();
        }
        _changed.Release();
        return entry.Removed.Task;
    }

    /// <summary>Forgets a pod without telling the ztunnel (its Add failed or timed out).</summary>
    internal void Forget(string uid, Task added)
    {
        lock (_lock)
        {
            if (_pods.TryGetValue(uid, out var entry) && entry.Added.Task == added)
            {
                _pods.Remove(uid);
                if (!IsHeld(entry)) entry.Removed.TrySetResult();
            }
        }
        _changed.Release();
    }

    // Under _lock.
    private bool IsHeld(Entry entry) =>
        _current is { } connection
        && (connection.AddInFlight == entry || (connection.Sent.TryGetValue(entry.Pod.Uid, out var sent) && sent == entry));

    private async Task AcceptLoopAsync()
    {
        var stopping = _stop.Token;
        while (!stopping.IsCancellationRequested)
        {
            SeqPacketSocket socket;
            try
            {
                socket = await _listener!.AcceptAsync(stopping).ConfigureAwait(false);
            }
            catch (Exception) when (stopping.IsCancellationRequested)
            {
                // Stopping: DisposeAsync cancels the accept and closes the listener, and whichever lands first decides
                // whether the accept ends as a cancellation, a disposed object or a SocketException (OperationAborted).
                return;
            }
            catch (ObjectDisposedException)
            {
                return;
            }
            catch (SocketException e)
            {
                // Not stopping: a transient failure (the ztunnel gave up before the accept, fd pressure). The listener
                // stays; the ztunnel reconnects.
                LogAcceptFailed(_logger, e.SocketErrorCode.ToString());
                await Task.Delay(100, CancellationToken.None).ConfigureAwait(false);
                continue;
            }
            var connection = new Connection(socket, Interlocked.Increment(ref _connections), stopping);
            connection.Loop = Task.Run(() => ServeAsync(connection));
        }
    }

    private async Task ServeAsync(Connection connection)
    {
        var token = connection.Stop.Token;
        var buffer = new byte[512];
        Task reader = Task.CompletedTask;
        try
        {
            using (var helloPacket = await ReceiveHelloAsync(connection, buffer, token).ConfigureAwait(false))
            {
                var hello = ZdsHello.Parser.ParseFrom(buffer, 0, helloPacket.Length);
                LogHello(_logger, connection.Id, hello.Version.ToString());
            }
            // From here one reader takes every packet, so a ztunnel that goes away while we are idle is noticed at
            // once (its connection's Stop is cancelled) rather than at the next request.
            reader = Task.Run(() => ReadResponsesAsync(connection, buffer));
            // The newest ztunnel is the one we serve (an upgrade connects the new one while the old still drains).
            Connection? previous;
            lock (_lock)
            {
                previous = _current;
                _current = connection;
            }
            if (previous is not null)
            {
                // Retired, not closed: it still serves its pods and drains when told to stop; closed, it would reconnect.
                LogSuperseded(_logger, connection.Id, previous.Id);
                connection.Replacing = previous;
                await previous.Superseded.CancelAsync().ConfigureAwait(false);
            }
            await SyncAsync(connection, token).ConfigureAwait(false);
            await RequestAsync(connection, new WorkloadRequest { SnapshotSent = new SnapshotSent() }, null, token).ConfigureAwait(false);
            connection.Replacing = null;
            Interlocked.Increment(ref _snapshots);
            LogSnapshotSent(_logger, connection.Id, connection.Sent.Count);
            using var served = CancellationTokenSource.CreateLinkedTokenSource(token, connection.Superseded.Token);
            while (true)
            {
                try
                {
                    await _changed.WaitAsync(served.Token).ConfigureAwait(false);
                }
                catch (OperationCanceledException) when (!token.IsCancellationRequested)
                {
                    // A newer ztunnel took over: the change this wait may have taken is its to sync. Keep the connection
                    // (and what it held) until this ztunnel goes.
                    _changed.Release();
                    await Task.Delay(Timeout.Infinite, token).ConfigureAwait(false);
                }
                while (_changed.Wait(0)) { } // several changes queued: one sync covers them
                await SyncAsync(connection, token).ConfigureAwait(false);
            }
        }
        catch (OperationCanceledException) when (token.IsCancellationRequested)
        {
        }
        catch (Exception e) when (e is IOException or ZdsException or InvalidProtocolBufferException or System.Net.Sockets.SocketException or TimeoutException or ChannelClosedException)
        {
            LogConnectionLost(_logger, connection.Id, e.Message);
        }
        finally
        {
            lock (_lock)
            {
                if (_current == connection) _current = null;
                // What this ztunnel held and we no longer want is gone with it: the next snapshot will not name it.
                foreach (var entry in connection.Sent.Values)
                {
                    if (!_pods.TryGetValue(entry.Pod.Uid, out var wanted) || wanted != entry) entry.Removed.TrySetResult();
                }
                if (connection.AddInFlight is { } inFlight && (!_pods.TryGetValue(inFlight.Pod.Uid, out var stillWanted) || stillWanted != inFlight))
                {
                    inFlight.Removed.TrySetResult();
                }
                connection.AddInFlight = null;
            }
            await connection.Stop.CancelAsync().ConfigureAwait(false);
            connection.Socket.Dispose();
            await reader.ConfigureAwait(false);
        }
    }

    /// <summary>Feeds <see cref="Connection.Responses"/> until the connection ends, then cancels the connection.</summary>
    private async Task ReadResponsesAsync(Connection connection, byte[] buffer)
    {
        var token = connection.Stop.Token;
        Exception? ended = null;
        try
        {
            while (true)
            {
                using var packet = await connection.Socket.ReceiveAsync(buffer, token).ConfigureAwait(false);
                if (packet.IsEndOfStream)
                {
                    ended = new IOException("the ztunnel closed the connection");
                    break;
                }
                var response = WorkloadResponse.Parser.ParseFrom(buffer, 0, packet.Length);
                var fds = packet.TakeAllFds();
                if (!connection.Responses.Writer.TryWrite((response, fds))) CloseAll(fds);
            }
        }
        catch (OperationCanceledException) when (token.IsCancellationRequested)
        {
        }
        catch (Exception e) when (e is IOException or InvalidProtocolBufferException or System.Net.Sockets.SocketException or ObjectDisposedException)
        {
            ended = e;
        }
        connection.Responses.Writer.TryComplete(ended);
        if (ended is not null && !token.IsCancellationRequested)
        {
            LogConnectionLost(_logger, connection.Id, ended.Message);
            await connection.Stop.CancelAsync().ConfigureAwait(false);
        }
    }

    private static async Task CloseAsync(Connection connection)
    {
        await connection.Stop.CancelAsync().ConfigureAwait(false);
        try
        {
            await connection.Loop.ConfigureAwait(false);
        }
        catch (OperationCanceledException)
        {
        }
    }

    /// <summary>Sends this connection the difference between what it holds and the desired pods: Dels first, then Adds.</summary>
    private async Task SyncAsync(Connection connection, CancellationToken token)
    {
        List<Entry> toDelete = [];
        List<Entry> toAdd = [];
        lock (_lock)
        {
            foreach (var (uid, sent) in connection.Sent)
            {
                if (!_pods.TryGetValue(uid, out var wanted) || wanted != sent) toDelete.Add(sent);
            }
            foreach (var (uid, wanted) in _pods)
            {
                if (!connection.Sent.TryGetValue(uid, out var sent) || sent != wanted) toAdd.Add(wanted);
            }
        }
        foreach (var entry in toDelete)
        {
            var request = new WorkloadRequest { Del = new DelWorkload { Uid = entry.Pod.Uid } };
            var error = await RequestAsync(connection, request, null, token).ConfigureAwait(false);
            lock (_lock) connection.Sent.Remove(entry.Pod.Uid);
            if (error is null)
            {
                LogDeleted(_logger, connection.Id, entry.Pod.Uid);
                entry.Removed.TrySetResult();
            }
            else
            {
                LogRejected(_logger, connection.Id, "DelWorkload", entry.Pod.Uid, error);
                entry.Removed.TrySetException(new ZdsException($"the ztunnel refused to remove {entry.Pod.Uid}: {error}"));
            }
        }
        foreach (var entry in toAdd)
        {
            var request = new WorkloadRequest
            {
                Add = new AddWorkload
                {
                    Uid = entry.Pod.Uid,
                    WorkloadInfo = new Core.Protos.Zds.WorkloadInfo
                    {
                        Name = entry.Pod.Name,
                        Namespace = entry.Pod.Namespace,
                        ServiceAccount = entry.Pod.ServiceAccount,
                    },
                },
            };
            string? error;
            lock (_lock)
            {
                if (!_pods.TryGetValue(entry.Pod.Uid, out var wanted) || wanted != entry) continue; // left meanwhile
                connection.AddInFlight = entry;
            }
            var listeners = await HandOverAsync(connection.Replacing, entry, token).ConfigureAwait(false);
            try
            {
                // On failure AddInFlight stays set: the connection's cleanup settles it.
                error = await RequestAsync(connection, request, [entry.Netns, .. listeners], token).ConfigureAwait(false);
            }
            catch (ObjectDisposedException)
            {
                // The enrolment gave up (timed out) and closed the fd before it went out: nothing was sent.
                lock (_lock)
                {
                    connection.AddInFlight = null;
                    if (!_pods.TryGetValue(entry.Pod.Uid, out var wanted) || wanted != entry) entry.Removed.TrySetResult();
                }
                continue;
            }
            finally
            {
                CloseAll(listeners);
            }
            lock (_lock)
            {
                connection.AddInFlight = null;
                if (error is null)
                {
                    connection.Sent[entry.Pod.Uid] = entry;
                    // Left while its Add was in flight: the next sync sends the Del.
                    if (!_pods.TryGetValue(entry.Pod.Uid, out var wanted) || wanted != entry) _changed.Release();
                }
                else if (_pods.TryGetValue(entry.Pod.Uid, out var wanted) && wanted == entry)
                {
                    // Refused: dropped from the desired pods, so no later sync retries it behind the caller's back.
                    _pods.Remove(entry.Pod.Uid);
                }
                if (error is not null) entry.Removed.TrySetResult();
            }
            if (error is null)
            {
                LogAdded(_logger, connection.Id, entry.Pod.Uid);
                entry.Added.TrySetResult();
            }
            else
            {
                LogRejected(_logger, connection.Id, "AddWorkload", entry.Pod.Uid, error);
                entry.Added.TrySetException(new ZdsException($"the ztunnel refused {entry.Pod.Uid}: {error}"));
            }
        }
    }

    /// <summary>
    /// An upgrade: the pod's listening sockets from the ztunnel being replaced, when it holds this very entry; none
    /// otherwise, or when it cannot (the new ztunnel then opens them itself).
    /// </summary>
    private async Task<List<SafeFileHandle>> HandOverAsync(Connection? replacing, Entry entry, CancellationToken token)
    {
        if (replacing is null) return [];
        lock (_lock)
        {
            if (!replacing.Sent.TryGetValue(entry.Pod.Uid, out var held) || held != entry) return [];
        }
        var request = new WorkloadRequest { HandOver = new HandOverListeners { Uid = entry.Pod.Uid } };
        try
        {
            var (error, fds) = await RequestWithFdsAsync(replacing, request, [], token).ConfigureAwait(false);
            if (error is null && fds.Count > 0) return fds;
            CloseAll(fds);
            LogRejected(_logger, replacing.Id, "HandOverListeners", entry.Pod.Uid, error ?? "no sockets");
        }
        catch (Exception e) when (e is IOException or ZdsException or System.Net.Sockets.SocketException or TimeoutException or ChannelClosedException
                                      or OperationCanceledException && !token.IsCancellationRequested)
        {
            LogRejected(_logger, replacing.Id, "HandOverListeners", entry.Pod.Uid, e.Message);
        }
        return [];
    }

    /// <summary>Sends one request and waits for its ack; returns the ack's error, null for success.</summary>
    private async Task<string?> RequestAsync(Connection connection, WorkloadRequest request, IReadOnlyList<SafeHandle>? fds, CancellationToken token)
    {
        var (error, received) = await RequestWithFdsAsync(connection, request, fds ?? [], token).ConfigureAwait(false);
        CloseAll(received); // only a hand-over's ack carries descriptors
        return error;
    }

    /// <summary>Sends one request with <paramref name="fds"/> and waits for its ack: its error (null for success) and the descriptors it carried.</summary>
    private async Task<(string? Error, List<SafeFileHandle> Fds)> RequestWithFdsAsync(Connection connection, WorkloadRequest request,
        IReadOnlyList<SafeHandle> fds, CancellationToken token)
    {
        await connection.Requests.WaitAsync(token).ConfigureAwait(false);
        try
        {
            while (connection.Responses.Reader.TryRead(out var stale)) CloseAll(stale.Fds); // an ack nobody asked for answers nothing
            await connection.Socket.SendAsync(request.ToByteArray(), fds, token).ConfigureAwait(false);
            using var timeout = CancellationTokenSource.CreateLinkedTokenSource(token);
            timeout.CancelAfter(_ackTimeout);
            (WorkloadResponse Response, List<SafeFileHandle> Fds) answer;
            try
            {
                answer = await connection.Responses.Reader.ReadAsync(timeout.Token).ConfigureAwait(false);
            }
            catch (OperationCanceledException) when (!token.IsCancellationRequested)
            {
                throw new TimeoutException($"the ztunnel did not ack {request.PayloadCase} within {_ackTimeout.TotalSeconds:0.#} s");
            }
            if (answer.Response.PayloadCase != WorkloadResponse.PayloadOneofCase.Ack)
            {
                CloseAll(answer.Fds);
                throw new ZdsException("the ztunnel answered " + request.PayloadCase + " with no ack");
            }
            return (answer.Response.Ack.Error is { Length: > 0 } error ? error : null, answer.Fds);
        }
        finally
        {
            connection.Requests.Release();
        }
    }

    private static void CloseAll(List<SafeFileHandle> fds)
    {
        foreach (var fd in fds) fd.Dispose();
    }

    private async Task<ReceivedPacket> ReceiveHelloAsync(Connection connection, byte[] buffer, CancellationToken token)
    {
        using var timeout = CancellationTokenSource.CreateLinkedTokenSource(token);
        timeout.CancelAfter(_ackTimeout);
        ReceivedPacket packet;
        try
        {
            packet = await connection.Socket.ReceiveAsync(buffer, timeout.Token).ConfigureAwait(false);
        }
        catch (OperationCanceledException) when (!token.IsCancellationRequested)
        {
            throw new TimeoutException($"the ztunnel did not say hello within {_ackTimeout.TotalSeconds:0.#} s");
        }
        if (packet.IsEndOfStream)
        {
            packet.Dispose();
            throw new IOException("the ztunnel closed the connection before its hello");
        }
        return packet;
    }

    public async ValueTask DisposeAsync()
    {
        await _stop.CancelAsync().ConfigureAwait(false);
        _listener?.Dispose();
        try
        {
            await _acceptLoop.ConfigureAwait(false);
        }
        catch (OperationCanceledException)
        {
        }
        Connection? current;
        lock (_lock) current = _current;
        if (current is not null) await CloseAsync(current).ConfigureAwait(false);
        try { File.Delete(_socketPath); } catch (IOException) { }
        _stop.Dispose();
    }

    [LoggerMessage(Level = LogLevel.Information, Message = "ZDS: ztunnel connection {Connection} said hello (version {Version})")]
    private static partial void LogHello(ILogger logger, int connection, string version);

    [LoggerMessage(Level = LogLevel.Information, Message = "ZDS: ztunnel connection {Connection} now serves the node; connection {Previous} is retired (it keeps its pods until it exits)")]
    private static partial void LogSuperseded(ILogger logger, int connection, int previous);

    [LoggerMessage(Level = LogLevel.Information, Message = "ZDS: snapshot of {Count} pods sent on connection {Connection}")]
    private static partial void LogSnapshotSent(ILogger logger, int connection, int count);

    [LoggerMessage(Level = LogLevel.Information, Message = "ZDS: ztunnel (connection {Connection}) serves {Uid}")]
    private static partial void LogAdded(ILogger logger, int connection, string uid);

    [LoggerMessage(Level = LogLevel.Information, Message = "ZDS: ztunnel (connection {Connection}) dropped {Uid}")]
    private static partial void LogDeleted(ILogger logger, int connection, string uid);

    [LoggerMessage(Level = LogLevel.Warning, Message = "ZDS: ztunnel (connection {Connection}) refused {Request} for {Uid}: {Error}")]
    private static partial void LogRejected(ILogger logger, int connection, string request, string uid, string error);

    [LoggerMessage(Level = LogLevel.Warning, Message = "ZDS: ztunnel connection {Connection} ended: {Reason}")]
    private static partial void LogConnectionLost(ILogger logger, int connection, string reason);

    [LoggerMessage(Level = LogLevel.Warning, Message = "ZDS: accepting a ztunnel connection failed ({Error}); still listening")]
    private static partial void LogAcceptFailed(ILogger logger, string error);
}

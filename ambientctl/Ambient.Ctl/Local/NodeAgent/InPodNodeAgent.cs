using System.Diagnostics;
using Microsoft.Extensions.Logging;
using Microsoft.Win32.SafeHandles;

namespace Ambient.Ctl.Local.NodeAgent;

/// <summary>How a node agent runs.</summary>
/// <param name="SocketPath">The node's ZDS socket, where its ztunnel connects (Unix socket paths: at most 107 bytes).</param>
/// <param name="Rules">The capture rules every enrolled pod gets.</param>
/// <param name="EnrollTimeout">How long an enrolment waits for the ztunnel (to connect, then to ack) before it fails.</param>
/// <param name="AckTimeout">How long one request waits for its ack before the connection is given up (the ztunnel reconnects).</param>
internal sealed record NodeAgentOptions(string SocketPath, InPodRuleOptions Rules, TimeSpan EnrollTimeout, TimeSpan AckTimeout)
{
    public static NodeAgentOptions Default(string socketPath, bool redirectDns) =>
        new(socketPath, new InPodRuleOptions(redirectDns), TimeSpan.FromSeconds(30), TimeSpan.FromSeconds(10));
}

/// <summary>
/// One node's agent, the role istio-cni plays: enrolling a pod installs its capture rules inside its network
/// namespace and hands that namespace (an fd) to the node's ztunnel over ZDS; leaving does the reverse. Enrolment
/// completes only when the ztunnel has acked the pod, so a pod's program can be started after it with its capture
/// already in place (istio#42850). The rules live in the pods' namespaces: pods keep them while the agent is down.
/// </summary>
internal sealed partial class InPodNodeAgent : IAsyncDisposable
{
    private readonly NodeAgentOptions _options;
    private readonly ILogger _logger;
    private readonly ZdsServer _server;
    private readonly Lock _lock = new();
    private readonly Dictionary<string, Enrolled> _enrolled = new(StringComparer.Ordinal);

    private sealed record Enrolled(ZdsPod Pod, string NetnsPath, SafeFileHandle Netns);

    private InPodNodeAgent(NodeAgentOptions options, ILogger logger, ZdsServer server)
    {
        _options = options;
        _logger = logger;
        _server = server;
    }

    public static InPodNodeAgent Start(NodeAgentOptions options, ILogger logger) =>
        new(options, logger, ZdsServer.Start(options.SocketPath, logger, options.AckTimeout));

    public string SocketPath => _server.SocketPath;

    public bool ZtunnelConnected => _server.ZtunnelConnected;

    /// <summary>How many ztunnel connections got their whole snapshot acked (an upgrade's new ztunnel is confirmed when it grows).</summary>
    public int ZtunnelSnapshots => _server.SnapshotsAcked;

    /// <summary>The uids of the pods enrolled now.</summary>
    public IReadOnlyCollection<string> EnrolledUids
    {
        get { lock (_lock) return [.. _enrolled.Keys]; }
    }

    /// <summary>
    /// Enrols the pod whose network namespace is <paramref name="netnsPath"/> (/run/netns/NAME, /proc/PID/ns/net):
    /// installs its capture rules, then hands the namespace to the ztunnel and completes when the ztunnel acked it
    /// (waiting for a ztunnel to connect, up to <see cref="NodeAgentOptions.EnrollTimeout"/>). On failure (an error
    /// ack, the timeout) the pod is left as it was before: rules removed, not enrolled; the exception says why.
    /// Enrolling an enrolled pod again re-installs its rules (another namespace: leaves, then enrols anew).
    /// </summary>
    public async Task EnrollAsync(ZdsPod pod, string netnsPath, CancellationToken cancellationToken)
    {
        Enrolled? already;
        lock (_lock) _enrolled.TryGetValue(pod.Uid, out already);
        if (already is not null)
        {
            if (already.NetnsPath == netnsPath && already.Pod == pod)
            {
                await InPodCapture.InstallAsync(netnsPath, _options.Rules, cancellationToken).ConfigureAwait(false);
                return;
            }
            // Another namespace (the pod was recreated): the ztunnel drops the old one before it gets the new.
            await UnenrollAsync(pod.Uid, cancellationToken).ConfigureAwait(false);
        }
        var netns = File.OpenHandle(netnsPath, FileMode.Open, FileAccess.Read);
        var started = Stopwatch.GetTimestamp();
        TimeSpan rulesIn;
        try
        {
            await InPodCapture.InstallAsync(netnsPath, _options.Rules, cancellationToken).ConfigureAwait(false);
            rulesIn = Stopwatch.GetElapsedTime(started);
        }
        catch
        {
            netns.Dispose();
            throw;
        }
        lock (_lock) _enrolled[pod.Uid] = new Enrolled(pod, netnsPath, netns);
        var added = _server.AddAsync(pod, netns);
        try
        {
            await added.WaitAsync(_options.EnrollTimeout, cancellationToken).ConfigureAwait(false);
            // How long each half took: a label switch's time is mostly these two.
            LogEnrolled(_logger, pod.Uid, netnsPath, Milliseconds(rulesIn), Milliseconds(Stopwatch.GetElapsedTime(started) - rulesIn));
        }
        catch (Exception e)
        {
            var reason = e is TimeoutException
                ? $"no ztunnel acked {pod.Uid} within {_options.EnrollTimeout.TotalSeconds:0.#} s (is the node's ztunnel connected to {SocketPath}?)"
                : e.Message;
            LogEnrolFailed(_logger, pod.Uid, reason);
            _server.Forget(pod.Uid, added);
            await LeaveAsync(pod.Uid, netns, CancellationToken.None).ConfigureAwait(false);
            if (e is TimeoutException) throw new ZdsException(reason);
            throw;
        }
    }

    /// <summary>
    /// Takes the pod out of the mesh: its capture rules go, then the ztunnel drops it (Del, acked), then the return path.
    /// A pod that is not enrolled is a no-op. Faults with <see cref="ZdsException"/> when the ztunnel refused the Del
    /// (the rules are gone anyway).
    /// </summary>
    public async Task UnenrollAsync(string uid, CancellationToken cancellationToken)
    {
        Enrolled? enrolled;
        lock (_lock)
        {
            if (!_enrolled.TryGetValue(uid, out enrolled)) return;
        }
        var started = Stopwatch.GetTimestamp();
        var ours = TakeOut(uid, enrolled.Netns);
        var rulesOut = TimeSpan.Zero;
        Exception? refused = null;
        try
        {
            // Istio's order: the capture goes first, so new connections and DNS queries leave the pod directly at once
            // while the ztunnel still serves (and answers) what the capture gave it until then. The other order loses
            // what is caught between the two (a DNS query whose listener closes under it costs the resolver's 5 s timeout).
            // Unlike Istio, the return path (replies to the ztunnel's connections into the pod, which carry the peer's
            // address) stays until the ztunnel has dropped the pod: without it, a connection the ztunnel opens or
            // serves in between has its replies routed out of the pod and hangs until a timeout.
            if (ours) await RemoveCaptureAsync(enrolled.Netns, cancellationToken).ConfigureAwait(false);
        }
        finally
        {
            rulesOut = Stopwatch.GetElapsedTime(started);
            try
            {
                await _server.RemoveAsync(uid).WaitAsync(_options.EnrollTimeout, cancellationToken).ConfigureAwait(false);
            }
            catch (Exception e) when (e is ZdsException or TimeoutException)
            {
                refused = e;
                LogUnenrolFailed(_logger, uid, e.Message);
            }
            finally
            {
                // Open until the ztunnel no longer holds the pod: an Add still in flight carries this fd.
                if (ours)
                {
                    try { await RemoveRulesAsync(enrolled.Netns, cancellationToken).ConfigureAwait(false); }
                    finally { enrolled.Netns.Dispose(); }
                }
            }
        }
        LogUnenrolled(_logger, uid, Milliseconds(rulesOut), Milliseconds(Stopwatch.GetElapsedTime(started) - rulesOut));
        if (refused is not null) throw refused is ZdsException ? refused : new ZdsException(refused.Message);
    }

    /// <summary>
    /// Makes the enrolled pods exactly <paramref name="wanted"/> (uid to pod and netns path): what a label change
    /// means. Leaves first, then enrols; every pod is tried, and the first failure is thrown at the end.
    /// </summary>
    public async Task ReconcileAsync(IReadOnlyDictionary<string, (ZdsPod Pod, string NetnsPath)> wanted, CancellationToken cancellationToken)
    {
        List<string> leaving = [];
        List<(ZdsPod Pod, string NetnsPath)> joining = [];
        lock (_lock)
        {
            foreach (var (uid, enrolled) in _enrolled)
            {
                if (!wanted.TryGetValue(uid, out var want) || want.NetnsPath != enrolled.NetnsPath) leaving.Add(uid);
            }
            foreach (var (uid, want) in wanted)
            {
                if (!_enrolled.TryGetValue(uid, out var enrolled) || want.NetnsPath != enrolled.NetnsPath) joining.Add(want);
            }
        }
        List<Exception> failures = [];
        foreach (var uid in leaving)
        {
            try { await UnenrollAsync(uid, cancellationToken).ConfigureAwait(false); }
            catch (Exception e) when (e is ZdsException or NetnsCommandException or IOException) { failures.Add(e); }
        }
        foreach (var (pod, path) in joining)
        {
            try { await EnrollAsync(pod, path, cancellationToken).ConfigureAwait(false); }
            catch (Exception e) when (e is ZdsException or NetnsCommandException or IOException) { failures.Add(e); }
        }
        if (failures.Count == 1) throw failures[0];
        if (failures.Count > 1) throw new AggregateException(failures);
    }

    /// <summary>Removes the rules and closes the fd, once: whoever takes the pod out of the table does it.</summary>
    private async Task LeaveAsync(string uid, SafeFileHandle netns, CancellationToken cancellationToken)
    {
        if (!TakeOut(uid, netns)) return;
        try
        {
            await RemoveRulesAsync(netns, cancellationToken).ConfigureAwait(false);
        }
        finally
        {
            netns.Dispose();
        }
    }

    /// <summary>Takes the pod out of the table if <paramref name="netns"/> is still its entry; who does removes its rules and closes the fd.</summary>
    private bool TakeOut(string uid, SafeFileHandle netns)
    {
        lock (_lock)
        {
            // A failing enrolment and an unenrol can race to here; the loser must not use a closed fd's number.
            if (!_enrolled.TryGetValue(uid, out var current) || current.Netns != netns) return false;
            _enrolled.Remove(uid);
            return true;
        }
    }

    // Through the fd we hold: the namespace's name may be gone already (a pod being deleted).
    private static Task RemoveRulesAsync(SafeFileHandle netns, CancellationToken cancellationToken) =>
        InPodCapture.RemoveAsync(FdPath(netns), cancellationToken);

    private static Task RemoveCaptureAsync(SafeFileHandle netns, CancellationToken cancellationToken) =>
        InPodCapture.RemoveCaptureAsync(FdPath(netns), cancellationToken);

    private static string FdPath(SafeFileHandle netns) => $"/proc/{Environment.ProcessId}/fd/{netns.DangerousGetHandle()}";

    private static long Milliseconds(TimeSpan time) => (long)time.TotalMilliseconds;

    /// <summary>Stops serving ZDS. The pods keep their rules (they live in the pods' namespaces).</summary>
    public async ValueTask DisposeAsync()
    {
        await _server.DisposeAsync().ConfigureAwait(false);
        lock (_lock)
        {
            foreach (var enrolled in _enrolled.Values) enrolled.Netns.Dispose();
            _enrolled.Clear();
        }
    }

    [LoggerMessage(Level = LogLevel.Information, Message = "node agent: {Uid} enrolled ({Netns}): capture rules in place ({RulesMs} ms), ztunnel acked ({AckMs} ms more)")]
    private static partial void LogEnrolled(ILogger logger, string uid, string netns, long rulesMs, long ackMs);

    [LoggerMessage(Level = LogLevel.Warning, Message = "node agent: enrolling {Uid} failed, rules removed: {Reason}")]
    private static partial void LogEnrolFailed(ILogger logger, string uid, string reason);

    [LoggerMessage(Level = LogLevel.Information, Message = "node agent: {Uid} left the mesh: capture removed ({RulesMs} ms), ztunnel dropped it and the return path went ({DropMs} ms more)")]
    private static partial void LogUnenrolled(ILogger logger, string uid, long rulesMs, long dropMs);

    [LoggerMessage(Level = LogLevel.Warning, Message = "node agent: the ztunnel did not confirm {Uid} leaving: {Reason}")]
    private static partial void LogUnenrolFailed(ILogger logger, string uid, string reason);
}

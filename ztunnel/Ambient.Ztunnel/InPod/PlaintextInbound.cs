using System.Diagnostics;
using System.Net;
using System.Net.Sockets;
using Ambient.Core.Authz;
using Ambient.Core.Model;
using Ambient.Core.Telemetry;
using Ambient.Hbone.Telemetry;
using Ambient.Dataplane.State;
using Ambient.Ztunnel.Proxy;
using Ambient.Ztunnel.Proxy.Relay;
using Ambient.Ztunnel.Telemetry;

namespace Ambient.Ztunnel.InPod;

/// <summary>
/// Port 15006 inside a pod's namespace: plaintext connections the pod's PREROUTING rule redirected (anything not
/// HBONE). The original destination must be the pod itself (no open relay); the pod's L4 policies are judged with no
/// peer identity and the TCP source address, as Istio's ztunnel does. Denied: reset (linger 0) before a byte reaches
/// the app, counted with reporter=destination and DENY, access-logged with the policy that refused it. Allowed: a
/// marked socket from inside the pod connects to the app and the bytes are relayed and counted.
/// </summary>
internal sealed partial class PlaintextInbound
{
    private readonly ProxyState _state;
    private readonly ConnectionMetrics _metrics;
    private readonly ILogger _logger;
    private readonly MeshEndpoints _meshEndpoints;
    private readonly TimeSpan _connectTimeout;

    public PlaintextInbound(ProxyState state, ConnectionMetrics metrics, MeshEndpoints meshEndpoints, ILogger logger, TimeSpan? connectTimeout = null)
    {
        _state = state;
        _metrics = metrics;
        _meshEndpoints = meshEndpoints;
        _logger = logger;
        _connectTimeout = connectTimeout ?? TimeSpan.FromSeconds(10);
    }

    /// <summary>Serves one accepted connection of the pod at <paramref name="pod"/>; <paramref name="connectToApp"/> makes the marked in-pod socket.</summary>
    public async Task ServeAsync(Socket client, IPAddress pod, Func<AddressFamily, CancellationToken, ValueTask<Socket>> connectToApp, CancellationToken cancellationToken)
    {
        var started = Stopwatch.GetTimestamp();
        var remote = (IPEndPoint)client.RemoteEndPoint!;
        var original = CaptureListener.OriginalDestination(client);
        var source = _state.FindWorkloadByAddress(remote.Address);
        var destination = _state.FindWorkloadByAddress(pod);
        if (original is null || !original.Address.Equals(pod) || destination is null)
        {
            var reason = original is null ? "no original destination (not redirected)"
                : destination is null ? "the pod is not in this node's snapshot"
                : $"original destination {original} is not this pod ({pod})";
            Refuse(client, remote, original, source, destination, started, ResponseFlags.Connect, reason);
            return;
        }
        // The pod's ztunnel ports are not the app's (15001 would send the peer's bytes out with the pod's identity).
        if (_meshEndpoints.Refusal(original) is { } refusal)
        {
            Refuse(client, remote, original, source, destination, started, ResponseFlags.Connect, refusal);
            return;
        }
        // No peer identity: a STRICT PeerAuthentication's DENY (not_principals: [presence]) matches exactly this.
        var decision = _state.Authorizer.Evaluate(destination, L4Connection.Plaintext(remote.Address, original.Address, original.Port));
        if (decision.DryRun is { } dryRun)
        {
            Log.DryRun(_logger, remote.ToString(), original.ToString(), dryRun.Describe());
        }
        if (!decision.Allowed)
        {
            Refuse(client, remote, original, source, destination, started, ResponseFlags.Deny,
                "connection closed due to policy rejection: " + decision.Describe());
            return;
        }

        Socket app;
        try
        {
            app = await connectToApp(original.AddressFamily, cancellationToken).ConfigureAwait(false);
        }
        catch (Exception e) when (e is IOException or SocketException)
        {
            Refuse(client, remote, original, source, destination, started, ResponseFlags.Connect, e.Message);
            return;
        }
        using (app)
        {
            try
            {
                using var timeout = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
                timeout.CancelAfter(_connectTimeout);
                await app.ConnectAsync(original, timeout.Token).ConfigureAwait(false);
            }
            catch (Exception e) when (e is SocketException or OperationCanceledException)
            {
                Refuse(client, remote, original, source, destination, started, ResponseFlags.Connect, e.Message);
                return;
            }
            var counters = _metrics.Open(IstioMetricLabels.ReporterDestination, source, null, destination, null, ResponseFlags.None, mutualTls: false);
            await using var clientStream = new NetworkStream(client, ownsSocket: false);
            await using var appStream = new NetworkStream(app, ownsSocket: false);
            var relay = await BidirectionalRelay.RunAsync(clientStream, appStream, cancellationToken: cancellationToken).ConfigureAwait(false);
            var flags = relay.Error is null ? ResponseFlags.None : ResponseFlags.DownstreamReset;
            counters.ConnectionClosed(relay.BytesAToB, relay.BytesBToA);
            WriteAccessLog(remote, original, source, destination, relay.BytesAToB, relay.BytesBToA, started, flags, relay.Error?.Message);
        }
    }

    private void Refuse(Socket client, IPEndPoint remote, IPEndPoint? original, WorkloadInfo? source, WorkloadInfo? destination, long started,
        string flags, string reason)
    {
        CaptureListener.Reset(client);
        Log.Refused(_logger, remote.ToString(), original?.ToString() ?? "-", reason);
        _metrics.Failed(IstioMetricLabels.ReporterDestination, source, null, destination, null, flags, mutualTls: false);
        WriteAccessLog(remote, original, source, destination, 0, 0, started, flags, reason);
    }

    private void WriteAccessLog(IPEndPoint remote, IPEndPoint? original, WorkloadInfo? source, WorkloadInfo? destination,
        long sent, long received, long started, string flags, string? error)
    {
        const string unknown = AccessLogEntry.Unknown;
        AccessLog.Write(_logger, new AccessLogEntry(TrafficDirection.Inbound,
            remote.ToString(), source?.WorkloadName ?? unknown, unknown,
            original?.ToString() ?? unknown, unknown, unknown, destination?.WorkloadName ?? unknown, destination?.Identity ?? unknown,
            sent, received, Stopwatch.GetElapsedTime(started), flags, error));
    }

    private static partial class Log
    {
        [LoggerMessage(1, LogLevel.Warning, "plaintext inbound from {Remote} to {Target} reset: {Reason}")]
        public static partial void Refused(ILogger logger, string remote, string target, string reason);

        [LoggerMessage(2, LogLevel.Information, "authorization of plaintext {Remote} -> {Target}: {Outcome}")]
        public static partial void DryRun(ILogger logger, string remote, string target, string outcome);
    }
}

using System.Diagnostics;
using System.Net;
using System.Net.Sockets;
using System.Security.Authentication;
using System.Security.Cryptography;
using Ambient.Hbone;
using Ambient.Core.Model;
using Ambient.Core.Telemetry;
using Ambient.Hbone.Telemetry;
using Ambient.Ztunnel.Proxy.Relay;
using Ambient.Dataplane.State;
using Ambient.Ztunnel.Telemetry;

namespace Ambient.Ztunnel.Proxy.Outbound;

/// <summary>Tunables of the <see cref="OutboundProxy"/>; the defaults are the production values.</summary>
internal sealed record OutboundProxyOptions
{
    /// <summary>Plain TCP connect timeout (Istio's 10 s).</summary>
    public TimeSpan ConnectTimeout { get; init; } = TimeSpan.FromSeconds(10);

    public int RelayBufferSize { get; init; } = BidirectionalRelay.DefaultBufferSize;

    /// <summary>Applied to every plain TCP socket before it connects (tests bind a source address).</summary>
    public Action<Socket>? ConfigureSocket { get; init; }

    /// <summary>Makes the unconnected socket of each plain TCP upstream (in-pod mode: inside the source pod's network
    /// namespace, marked so its capture rules let it pass); null: a plain socket in the ztunnel's own namespace.</summary>
    public Func<AddressFamily, CancellationToken, ValueTask<Socket>>? CreateSocket { get; init; }
}

/// <summary>
/// The ambient outbound data flow, whatever front door the connection came in by: the source pod is named by the
/// front door; the destination is resolved in the current snapshot; the route is plain TCP (not in the mesh), HBONE
/// to the destination pod, or HBONE to a waypoint / network gateway carrying the original target as
/// <c>:authority</c>. Tunnels use a pooled HBONE connection presenting the SOURCE pod's certificate. The proxy relays
/// the bytes, counts them (reporter=source) and writes the access log line.
/// </summary>
internal sealed partial class OutboundProxy : IOutboundProxy
{
    private readonly ProxyState _state;
    private readonly HboneConnectionPool _pool;
    private readonly ConnectionMetrics _metrics;
    private readonly ILogger _logger;
    private readonly OutboundProxyOptions _options;
    private readonly MeshEndpoints _meshEndpoints;

    public OutboundProxy(ProxyState state, HboneConnectionPool pool, ConnectionMetrics metrics, ILogger logger,
        OutboundProxyOptions? options = null, MeshEndpoints? meshEndpoints = null)
    {
        _state = state;
        _pool = pool;
        _metrics = metrics;
        _logger = logger;
        _options = options ?? new OutboundProxyOptions();
        _meshEndpoints = meshEndpoints ?? MeshEndpoints.Default;
    }

    public async ValueTask<OutboundResult> ProxyAsync(IPAddress source, OutboundClient client, OriginalDestination destination, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(source);
        ArgumentNullException.ThrowIfNull(client);
        var started = Stopwatch.GetTimestamp();
        var workload = _state.FindWorkloadByAddress(source);
        var call = new Call(workload, source, client, destination, started);
        var resolved = destination.Host is { } host
            ? _state.ResolveDestination(workload, host, destination.Port)
            : _state.ResolveDestination(workload, destination.Address!, destination.Port);
        if (!resolved.Succeeded)
        {
            Log.Unresolved(_logger, call.SourceName, destination.Host ?? destination.Address!.ToString(), destination.Port, resolved.Error ?? "");
            _metrics.Failed(IstioMetricLabels.ReporterSource, workload, null, null, null, ResponseFlags.NoRoute, mutualTls: false);
            var error = resolved.Failure == ResolveFailure.PortNotExposed ? OutboundError.PortNotExposed : OutboundError.NoRoute;
            return Refused(call, null, error, ResponseFlags.NoRoute, resolved.Error);
        }
        var target = resolved.Destination!;
        // Judged on where the connection would really go: a service port may name a ztunnel port as its target.
        if (_meshEndpoints.Refusal(target.Target) is { } refusal)
        {
            Log.MeshEndpointRefused(_logger, call.SourceName, target.Target.ToString(), refusal);
            return Refused(call, target, OutboundError.MeshEndpoint, ResponseFlags.None, refusal);
        }
        return target.UseHbone
            ? await TunnelAsync(call, target, cancellationToken).ConfigureAwait(false)
            : await PlainAsync(call, target, cancellationToken).ConfigureAwait(false);
    }

    private async ValueTask<OutboundResult> TunnelAsync(Call call, ResolvedDestination target, CancellationToken ct)
    {
        var source = call.Workload;
        if (source is null || !source.IsInMesh)
        {
            // Only enrolled pods get a front door, so this is a pod that left the mesh a moment ago: refuse rather
            // than send its traffic with no identity.
            Log.SourceNotInMesh(_logger, call.SourceName);
            return Refused(call, target, OutboundError.SourceNotInMesh, ResponseFlags.None, "the source is not in the mesh");
        }
        var key = new HbonePoolKey(source.Identity, target.ExpectedIdentity!, target.TunnelEndpoint!);
        HboneStream stream;
        try
        {
            stream = await _pool.OpenAsync(key, target.Authority, BuildHeaders(source, call.Client.RemoteEndPoint, target), ct).ConfigureAwait(false);
        }
        catch (HboneConnectException e)
        {
            var denied = e.StatusCode == 401;
            var flags = denied ? ResponseFlags.Deny : ResponseFlags.Connect;
            Log.TunnelRefused(_logger, call.SourceName, target.Authority, e.StatusCode);
            _metrics.Failed(IstioMetricLabels.ReporterSource, source, null, target.Workload, target.Service, flags, mutualTls: true);
            return Refused(call, target, denied ? OutboundError.Denied : OutboundError.Unreachable, flags, $"CONNECT answered {e.StatusCode}");
        }
        catch (Exception e) when (e is IOException or SocketException or OperationCanceledException or AuthenticationException)
        {
            Log.TunnelFailed(_logger, call.SourceName, target.Authority, key.Destination.ToString(), e.Message);
            _metrics.Failed(IstioMetricLabels.ReporterSource, source, null, target.Workload, target.Service, ResponseFlags.Connect, mutualTls: true);
            return Refused(call, target, OutboundError.Unreachable, ResponseFlags.Connect, e.Message);
        }
        var counters = _metrics.Open(IstioMetricLabels.ReporterSource, source, null, target.Workload, target.Service, ResponseFlags.None, mutualTls: true);
        return await RelayAsync(call, target, stream, () => stream.CompleteWritesAsync(), bound: null, counters, ct).ConfigureAwait(false);
    }

    private async ValueTask<OutboundResult> PlainAsync(Call call, ResolvedDestination target, CancellationToken ct)
    {
        Socket socket;
        try
        {
            socket = _options.CreateSocket is { } create
                ? await create(target.Target.AddressFamily, ct).ConfigureAwait(false)
                : new Socket(target.Target.AddressFamily, SocketType.Stream, ProtocolType.Tcp);
        }
        catch (Exception e) when (e is IOException or SocketException)
        {
            Log.PlainFailed(_logger, call.SourceName, target.Target.ToString(), e.Message);
            _metrics.Failed(IstioMetricLabels.ReporterSource, call.Workload, null, target.Workload, target.Service, ResponseFlags.Connect, mutualTls: false);
            return Refused(call, target, OutboundError.Unreachable, ResponseFlags.Connect, e.Message);
        }
        socket.NoDelay = true;
        try
        {
            _options.ConfigureSocket?.Invoke(socket);
            using var timeout = CancellationTokenSource.CreateLinkedTokenSource(ct);
            timeout.CancelAfter(_options.ConnectTimeout);
            await socket.ConnectAsync(target.Target, timeout.Token).ConfigureAwait(false);
        }
        catch (Exception e) when (e is SocketException or OperationCanceledException)
        {
            socket.Dispose();
            Log.PlainFailed(_logger, call.SourceName, target.Target.ToString(), e.Message);
            _metrics.Failed(IstioMetricLabels.ReporterSource, call.Workload, null, target.Workload, target.Service, ResponseFlags.Connect, mutualTls: false);
            var refused = e is SocketException { SocketErrorCode: SocketError.ConnectionRefused };
            return Refused(call, target, refused ? OutboundError.ConnectionRefused : OutboundError.Unreachable, ResponseFlags.Connect, e.Message);
        }
        var counters = _metrics.Open(IstioMetricLabels.ReporterSource, call.Workload, null, target.Workload, target.Service, ResponseFlags.None, mutualTls: false);
        var network = new NetworkStream(socket, ownsSocket: true);
        return await RelayAsync(call, target, network, () =>
        {
            try { socket.Shutdown(SocketShutdown.Send); } catch (SocketException) { } catch (ObjectDisposedException) { }
            return ValueTask.CompletedTask;
        }, (IPEndPoint?)socket.LocalEndPoint, counters, ct).ConfigureAwait(false);
    }

    /// <summary>Tells the front door, relays both ways until both are done, then counts and logs; owns <paramref name="upstream"/>.</summary>
    private async ValueTask<OutboundResult> RelayAsync(Call call, ResolvedDestination target, Stream upstream, Func<ValueTask> completeUpstreamWrites,
        IPEndPoint? bound, TcpCounters counters, CancellationToken ct)
    {
        var metered = new MeteredStream(upstream);
        string flags;
        string? error = null;
        await using (metered.ConfigureAwait(false))
        {
            // On shutdown, disposing the upstream unblocks a read that does not observe the token.
            using var abort = ct.UnsafeRegister(static s => ((Stream)s!).Dispose(), metered);
            try
            {
                await call.Client.ConnectedAsync(metered, bound, ct).ConfigureAwait(false);
                var relay = await BidirectionalRelay.RunAsync(
                    call.Client.Stream, metered, call.Client.CompleteWrites, completeUpstreamWrites, _options.RelayBufferSize, ct).ConfigureAwait(false);
                // The relay stops at the first failure of either side; the metered upstream knows whether it was its own.
                flags = relay.Error is null ? ResponseFlags.None : metered.Faulted ? ResponseFlags.UpstreamReset : ResponseFlags.DownstreamReset;
                error = relay.Error?.Message;
            }
            catch (Exception e) when (e is IOException or SocketException or OperationCanceledException or ObjectDisposedException)
            {
                // The front door could not tell the app (it went away): nothing was relayed.
                flags = ResponseFlags.DownstreamReset;
                error = e.Message;
            }
        }
        counters.ConnectionClosed(metered.BytesWritten, metered.BytesRead);
        WriteAccessLog(call, target, metered.BytesWritten, metered.BytesRead, flags, error);
        return new OutboundResult(OutboundError.None, flags, metered.BytesWritten, metered.BytesRead);
    }

    private OutboundResult Refused(Call call, ResolvedDestination? target, OutboundError error, string flags, string? reason)
    {
        WriteAccessLog(call, target, 0, 0, flags, reason);
        return new OutboundResult(error, flags, 0, 0);
    }

    private void WriteAccessLog(Call call, ResolvedDestination? target, long sent, long received, string flags, string? error)
    {
        const string unknown = AccessLogEntry.Unknown;
        var hbone = target is { UseHbone: true };
        var destinationAddress = target is null ? call.Destination.ToString()
            : hbone ? target.TunnelEndpoint!.ToString() : target.Target.ToString();
        AccessLog.Write(_logger, new AccessLogEntry(TrafficDirection.Outbound,
            call.Client.RemoteEndPoint.ToString(), call.Workload?.WorkloadName ?? unknown, call.Workload?.Identity ?? unknown,
            destinationAddress, hbone ? target!.Authority : unknown,
            target?.Service?.Hostname ?? unknown, target?.Workload?.WorkloadName ?? unknown,
            hbone ? target!.ExpectedIdentity ?? unknown : unknown,
            sent, received, Stopwatch.GetElapsedTime(call.Started), flags, error));
    }

    /// <summary>The headers Istio's ztunnel sends: baggage, forwarded (for= the app's address, host= the service when one was targeted), traceparent.</summary>
    private static List<(string Name, string Value)> BuildHeaders(WorkloadInfo source, IPEndPoint client, ResolvedDestination target)
    {
        var forwarded = target.Service is { } svc
            ? $"for=\"{ResolvedDestination.FormatAuthority(client)}\";host={svc.Hostname}"
            : $"for=\"{ResolvedDestination.FormatAuthority(client)}\"";
        Span<byte> trace = stackalloc byte[24];
        RandomNumberGenerator.Fill(trace);
        return
        [
            ("baggage", $"k8s.namespace.name={source.Namespace},k8s.pod.name={source.Name},service.name={source.CanonicalName},service.version={source.CanonicalRevision}"),
            ("forwarded", forwarded),
            ("traceparent", $"00-{Convert.ToHexStringLower(trace[..16])}-{Convert.ToHexStringLower(trace[16..])}-01"),
        ];
    }

    /// <summary>One connection's facts, gathered once.</summary>
    private sealed record Call(WorkloadInfo? Workload, IPAddress SourceAddress, OutboundClient Client, OriginalDestination Destination, long Started)
    {
        public string SourceName => Workload?.Uid ?? SourceAddress.ToString();
    }

    private static partial class Log
    {
        [LoggerMessage(1, LogLevel.Warning, "outbound from {Source}: cannot route {Host}:{Port}: {Error}")]
        public static partial void Unresolved(ILogger logger, string source, string host, int port, string error);

        [LoggerMessage(2, LogLevel.Warning, "outbound from {Source}: HBONE CONNECT {Authority} answered {Status}")]
        public static partial void TunnelRefused(ILogger logger, string source, string authority, int status);

        [LoggerMessage(3, LogLevel.Warning, "outbound from {Source}: HBONE to {Authority} via {Tunnel} failed: {Error}")]
        public static partial void TunnelFailed(ILogger logger, string source, string authority, string tunnel, string error);

        [LoggerMessage(4, LogLevel.Warning, "outbound from {Source}: plain TCP to {Target} failed: {Error}")]
        public static partial void PlainFailed(ILogger logger, string source, string target, string error);

        [LoggerMessage(5, LogLevel.Warning, "outbound from {Source}: the pod is no longer in the mesh; refusing")]
        public static partial void SourceNotInMesh(ILogger logger, string source);

        [LoggerMessage(7, LogLevel.Warning, "outbound from {Source}: {Target} refused: {Reason}")]
        public static partial void MeshEndpointRefused(ILogger logger, string source, string target, string reason);
    }
}

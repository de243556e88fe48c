using System.Diagnostics;
using System.Net;
using System.Net.Sockets;
using System.Security.Cryptography;
using Ambient.Hbone;
using Ambient.Core.Model;
using Ambient.Core.Telemetry;
using Ambient.Ztunnel.Proxy.Socks5;
using Ambient.Ztunnel.State;
using Ambient.Ztunnel.Telemetry;

namespace Ambient.Ztunnel.Proxy.Outbound;

/// <summary>
/// Where a captured outbound connection goes (the ambient data flow): the source pod is the owner of the listener
/// address; the destination is resolved in the current snapshot; an in-mesh destination is reached over a pooled
/// HBONE connection presenting the SOURCE pod's certificate, anything else over plain TCP.
/// </summary>
internal sealed partial class OutboundHandler : ISocks5ConnectHandler
{
    private readonly ProxyState _state;
    private readonly HboneConnectionPool _pool;
    private readonly ConnectionMetrics _metrics;
    private readonly ILogger _logger;
    private readonly TimeSpan _connectTimeout;
    private readonly Action<Socket>? _configureSocket;
    private readonly MeshEndpoints _meshEndpoints;

    public OutboundHandler(ProxyState state, HboneConnectionPool pool, ConnectionMetrics metrics, ILogger logger,
        TimeSpan? connectTimeout = null, Action<Socket>? configureSocket = null, MeshEndpoints? meshEndpoints = null)
    {
        _state = state;
        _pool = pool;
        _metrics = metrics;
        _logger = logger;
        _connectTimeout = connectTimeout ?? TimeSpan.FromSeconds(10);
        _configureSocket = configureSocket;
        _meshEndpoints = meshEndpoints ?? MeshEndpoints.Default;
    }

    public async ValueTask<Socks5ConnectResult> ConnectAsync(IPEndPoint listener, IPEndPoint client, Socks5Destination destination, CancellationToken ct)
    {
        var source = _state.FindWorkloadByAddress(listener.Address);
        var result = destination.Host is { } host
            ? _state.ResolveDestination(source, host, destination.Port)
            : _state.ResolveDestination(source, destination.Address!, destination.Port);
        var what = destination.Host ?? destination.Address!.ToString();
        if (!result.Succeeded)
        {
            Log.Unresolved(_logger, source?.Uid ?? listener.Address.ToString(), what, destination.Port, result.Error ?? "");
            _metrics.Failed(TcpMetricLabels.ReporterSource, source, null, null, null, "NR", mutualTls: false);
            return Socks5ConnectResult.Failed(result.Failure == ResolveFailure.PortNotExposed ? Socks5ReplyCode.ConnectionRefused : Socks5ReplyCode.HostUnreachable);
        }
        var target = result.Destination!;
        // Judged on where the connection would really go: a service port may name a ztunnel port as its target.
        if (_meshEndpoints.Refusal(target.Target) is { } refusal)
        {
            Log.MeshEndpointRefused(_logger, source?.Uid ?? listener.Address.ToString(), target.Target.ToString(), refusal);
            return Socks5ConnectResult.Failed(Socks5ReplyCode.NotAllowed);
        }
        var started = Stopwatch.GetTimestamp();
        if (target.UseHbone)
        {
            return await ConnectHboneAsync(source, client, target, started, ct).ConfigureAwait(false);
        }
        return await ConnectPlainAsync(source, target, started, ct).ConfigureAwait(false);
    }

    private async ValueTask<Socks5ConnectResult> ConnectHboneAsync(WorkloadInfo? source, IPEndPoint client, ResolvedDestination target, long started, CancellationToken ct)
    {
        if (source is null || !source.IsInMesh)
        {
            // Only enrolled pods get a listener, so this is a pod that left the mesh a moment ago: refuse rather
            // than send its traffic with no identity.
            Log.SourceNotInMesh(_logger, source?.Uid ?? client.Address.ToString());
            return Socks5ConnectResult.Failed(Socks5ReplyCode.NotAllowed);
        }
        var key = new HbonePoolKey(source.Identity, target.ExpectedIdentity!, target.TunnelEndpoint!);
        var authority = FormatAuthority(target.Target);
        var headers = BuildHeaders(source, client, target);
        HboneStream stream;
        try
        {
            stream = await _pool.OpenAsync(key, authority, headers, ct).ConfigureAwait(false);
        }
        catch (HboneConnectException e)
        {
            var flag = e.StatusCode == 401 ? "DENY" : "CONNECT";
            Log.TunnelRefused(_logger, source.Uid, authority, e.StatusCode);
            _metrics.Failed(TcpMetricLabels.ReporterSource, source, null, target.Workload, target.Service, flag, mutualTls: true);
            return Socks5ConnectResult.Failed(e.StatusCode == 401 ? Socks5ReplyCode.NotAllowed : Socks5ReplyCode.HostUnreachable);
        }
        catch (Exception e) when (e is IOException or SocketException or OperationCanceledException or System.Security.Authentication.AuthenticationException)
        {
            Log.TunnelFailed(_logger, source.Uid, authority, key.Destination.ToString(), e.Message);
            _metrics.Failed(TcpMetricLabels.ReporterSource, source, null, target.Workload, target.Service, "CONNECT", mutualTls: true);
            return Socks5ConnectResult.Failed(Socks5ReplyCode.HostUnreachable);
        }
        var counters = _metrics.Open(TcpMetricLabels.ReporterSource, source, null, target.Workload, target.Service, "-", mutualTls: true);
        var metered = new MeteredStream(stream, (written, read) =>
        {
            counters.ConnectionClosed(written, read);
            Log.Access(_logger, "source", source.Identity, client.ToString(), target.ExpectedIdentity!, authority,
                target.Service?.Hostname ?? "-", written, read, Stopwatch.GetElapsedTime(started).TotalMilliseconds, "mtls");
        });
        return new Socks5ConnectResult(Socks5ReplyCode.Succeeded, metered, null) { CompleteWrites = () => stream.CompleteWritesAsync() };
    }

    private async ValueTask<Socks5ConnectResult> ConnectPlainAsync(WorkloadInfo? source, ResolvedDestination target, long started, CancellationToken ct)
    {
        var socket = new Socket(target.Target.AddressFamily, SocketType.Stream, ProtocolType.Tcp) { NoDelay = true };
        try
        {
            _configureSocket?.Invoke(socket);
            using var timeout = CancellationTokenSource.CreateLinkedTokenSource(ct);
            timeout.CancelAfter(_connectTimeout);
            await socket.ConnectAsync(target.Target, timeout.Token).ConfigureAwait(false);
        }
        catch (Exception e) when (e is SocketException or OperationCanceledException)
        {
            socket.Dispose();
            Log.PlainFailed(_logger, source?.Uid ?? "-", target.Target.ToString(), e.Message);
            _metrics.Failed(TcpMetricLabels.ReporterSource, source, null, target.Workload, target.Service, "CONNECT", mutualTls: false);
            return Socks5ConnectResult.Failed(e is SocketException { SocketErrorCode: SocketError.ConnectionRefused }
                ? Socks5ReplyCode.ConnectionRefused : Socks5ReplyCode.HostUnreachable);
        }
        var counters = _metrics.Open(TcpMetricLabels.ReporterSource, source, null, target.Workload, target.Service, "-", mutualTls: false);
        var network = new NetworkStream(socket, ownsSocket: true);
        var metered = new MeteredStream(network, (written, read) =>
        {
            counters.ConnectionClosed(written, read);
            Log.Access(_logger, "source", source?.Identity ?? "-", "-", "-", target.Target.ToString(),
                target.Service?.Hostname ?? "-", written, read, Stopwatch.GetElapsedTime(started).TotalMilliseconds, "plaintext");
        });
        return new Socks5ConnectResult(Socks5ReplyCode.Succeeded, metered, null)
        {
            CompleteWrites = () =>
            {
                try { socket.Shutdown(SocketShutdown.Send); } catch (SocketException) { } catch (ObjectDisposedException) { }
                return ValueTask.CompletedTask;
            },
        };
    }

    /// <summary>The headers Istio's ztunnel sends: baggage, forwarded (for= the app's address, host= the service when one was targeted), traceparent.</summary>
    private static List<(string Name, string Value)> BuildHeaders(WorkloadInfo source, IPEndPoint client, ResolvedDestination target)
    {
        var forwarded = target.Service is { } svc
            ? $"for=\"{FormatAuthority(client)}\";host={svc.Hostname}"
            : $"for=\"{FormatAuthority(client)}\"";
        Span<byte> trace = stackalloc byte[24];
        RandomNumberGenerator.Fill(trace);
        return
        [
            ("baggage", $"k8s.namespace.name={source.Namespace},k8s.pod.name={source.Name},service.name={source.CanonicalName},service.version={source.CanonicalRevision}"),
            ("forwarded", forwarded),
            ("traceparent", $"00-{Convert.ToHexStringLower(trace[..16])}-{Convert.ToHexStringLower(trace[16..])}-01"),
        ];
    }

    internal static string FormatAuthority(IPEndPoint endpoint) =>
        endpoint.AddressFamily == AddressFamily.InterNetworkV6 ? $"[{endpoint.Address}]:{endpoint.Port}" : $"{endpoint.Address}:{endpoint.Port}";

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

        [LoggerMessage(6, LogLevel.Information, "access reporter={Reporter} src.identity={SourceIdentity} src.addr={SourceAddress} dst.identity={DestinationIdentity} dst.addr={Destination} dst.service={Service} bytes_sent={Sent} bytes_recv={Received} duration_ms={DurationMs:F1} security={Security}")]
        public static partial void Access(ILogger logger, string reporter, string sourceIdentity, string sourceAddress, string destinationIdentity,
            string destination, string service, long sent, long received, double durationMs, string security);
    }
}

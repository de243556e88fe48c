using System.Net;
using System.Security.Cryptography.X509Certificates;
using Ambient.Core.Authz;
using Ambient.Core.Identity;
using Ambient.Core.Memory;
using Ambient.Core.Model;
using Ambient.Core.Telemetry;
using Ambient.Hbone.Telemetry;
using Ambient.Hbone.Server;
using Ambient.Dataplane.Identity;
using Ambient.Dataplane.State;
using Ambient.Ztunnel.Telemetry;

namespace Ambient.Ztunnel.Proxy.Inbound;

/// <summary>
/// The inbound server's seams answered from the node's live state: each listener presents its pod's current
/// certificate, peers are judged by the mesh trust bundle, only workloads on the listener's own address are
/// served (no open relay; a service hostname resolves to that workload), the mesh's own endpoints are refused, and
/// every tunnel is counted with reporter=destination.
/// </summary>
internal sealed partial class MeshInbound : IInboundIdentity, IInboundTargets, IInboundObserver
{
    private readonly ProxyState _state;
    private readonly CertificateManager _certificates;
    private readonly ConnectionMetrics _metrics;
    private readonly MeshEndpoints _meshEndpoints;
    private readonly ILogger _logger;
    // Keyed by instance: two tunnels can carry equal info (same peer, target and start tick).
    private readonly System.Collections.Concurrent.ConcurrentDictionary<InboundConnectionInfo, TcpCounters> _open = new(ReferenceEqualityComparer.Instance);

    public MeshInbound(ProxyState state, CertificateManager certificates, ConnectionMetrics metrics, MeshEndpoints meshEndpoints, ILogger logger)
    {
        _state = state;
        _certificates = certificates;
        _metrics = metrics;
        _meshEndpoints = meshEndpoints;
        _logger = logger;
    }

    public X509Certificate2? GetServerCertificate(IPAddress listenerAddress, out X509Certificate2Collection? chain)
    {
        chain = null;
        var workload = _state.FindWorkloadByAddress(listenerAddress);
        if (workload is null || !workload.IsInMesh)
        {
            return null;
        }
        return _certificates.ServingCertificate(workload.Identity, out chain);
    }

    public string? ValidateClient(X509Certificate2 clientCert, X509Chain? chain, out string? failureReason) =>
        _certificates.ValidatePeer(clientCert, chain, out failureReason);

    public IPEndPoint? ResolveServiceTarget(IPAddress listenerAddress, string hostname, int port, out string? refusal)
    {
        var snapshot = _state.Snapshot;
        var service = snapshot.FindServiceByHostname(hostname);
        if (service is null)
        {
            refusal = $"authority {hostname} is not a known service hostname";
            return null;
        }
        foreach (var endpoint in snapshot.EndpointsOf(service))
        {
            if (!endpoint.Workload.Addresses.Contains(listenerAddress))
            {
                continue;
            }
            // The workload's own mapping first, else the service's numeric target port, as the outbound side resolves it.
            if (endpoint.TryGetTargetPort(service, port, out int targetPort))
            {
                refusal = null;
                return new IPEndPoint(listenerAddress, targetPort);
            }
            refusal = $"authority {hostname}:{port}: the workload served here has no target port for service port {port}";
            return null;
        }
        refusal = $"authority {hostname}: no workload of that service is served by this listener";
        return null;
    }

    public string? Refusal(IPEndPoint target) => _meshEndpoints.Refusal(target);

    public bool IsServedTarget(IPAddress listenerAddress, IPEndPoint target)
    {
        if (!target.Address.Equals(listenerAddress))
        {
            return false;
        }
        var workload = _state.FindWorkloadByAddress(target.Address);
        return workload is not null && workload.IsInMesh && workload.Node == _state.NodeName;
    }

    /// <summary>
    /// The L4 authorization of istio/ztunnel's inbound path, on the destination side: the policies of the target
    /// workload judged against the authenticated peer, the source address and the target address and port, with the
    /// policies of the latest push (no restart, no cache across pushes). A target workload this node no longer knows
    /// is refused, as ztunnel refuses when it cannot find the destination workload.
    /// </summary>
    public bool IsAllowed(InboundConnectionInfo info, out string? denial)
    {
        var workload = _state.FindWorkloadByAddress(info.Destination.Address);
        if (workload is null)
        {
            denial = "connection closed due to policy rejection: destination workload not found";
            return false;
        }
        var connection = new L4Connection(info.PeerIdentity, SourceAddress(info), info.Destination.Address, info.Destination.Port);
        var decision = _state.Authorizer.Evaluate(workload, connection);
        if (decision.DryRun is { } dryRun)
        {
            Log.DryRun(_logger, info.PeerIdentity, info.Destination.ToString(), dryRun.Describe());
        }
        denial = decision.Allowed ? null : "connection closed due to policy rejection: " + decision.Describe();
        return decision.Allowed;
    }

    /// <summary>
    /// The source address policies see (ipBlocks): the app's address from <c>forwarded: for=</c> when it belongs to a
    /// workload with the authenticated identity (a peer cannot claim another's address), else the TCP peer.
    /// </summary>
    private IPAddress SourceAddress(InboundConnectionInfo info)
    {
        if (ForwardedFor(info.Forwarded) is { } forwarded
            && _state.FindWorkloadByAddress(forwarded) is { } source
            && source.Identity == info.PeerIdentity)
        {
            return forwarded;
        }
        return info.Source.Address;
    }

    public void ConnectionOpened(InboundConnectionInfo info, string responseFlags)
    {
        // Reported once the outcome is known (see IInboundObserver), so a denied or failed tunnel lands in its
        // flagged row from the start.
        var (source, destination) = Ends(info);
        _open[info] = _metrics.Open(TcpMetricLabels.ReporterDestination, source, info.PeerIdentity, destination, ServiceFrom(info), responseFlags, mutualTls: true);
    }

    public void ConnectionClosed(InboundConnectionInfo info, long bytesIn, long bytesOut, string responseFlags)
    {
        if (_open.TryRemove(info, out var counters))
        {
            counters.ConnectionClosed(bytesIn, bytesOut);
        }
    }

    public InboundPeers Describe(InboundConnectionInfo info)
    {
        const string unknown = AccessLogEntry.Unknown;
        var (source, destination) = Ends(info);
        return new InboundPeers(source?.WorkloadName ?? unknown, destination?.WorkloadName ?? unknown,
            destination?.Identity ?? unknown, ServiceFrom(info)?.Hostname ?? unknown);
    }

    public void TlsFailure(IPEndPoint remote, string reason)
    {
        Log.TlsFailure(_logger, remote.ToString(), reason);
        _metrics.TlsFailure();
    }

    /// <summary>
    /// The source pod, from `forwarded: for=` or else the baggage's k8s.namespace.name/k8s.pod.name (the app's own
    /// address is not the pod's when it reached the SOCKS5 listener from elsewhere), trusted only if its identity is
    /// the authenticated peer's; and the target pod.
    /// </summary>
    private (WorkloadInfo? Source, WorkloadInfo? Destination) Ends(InboundConnectionInfo info)
    {
        WorkloadInfo? source = null;
        if (ForwardedFor(info.Forwarded) is { } address)
        {
            source = _state.FindWorkloadByAddress(address);
        }
        if ((source is null || source.Identity != info.PeerIdentity)
            && BaggageValue(info.Baggage, "k8s.namespace.name") is { } ns && BaggageValue(info.Baggage, "k8s.pod.name") is { } pod)
        {
            source = _state.Snapshot.FindPod(ns, pod);
        }
        if (source is not null && source.Identity != info.PeerIdentity)
        {
            source = null;
        }
        return (source, _state.FindWorkloadByAddress(info.Destination.Address));
    }

    private static string? BaggageValue(string? baggage, string key)
    {
        if (baggage is null)
        {
            return null;
        }
        foreach (var member in baggage.Split(','))
        {
            var eq = member.IndexOf('=');
            if (eq > 0 && member.AsSpan(0, eq).Trim().SequenceEqual(key))
            {
                return member[(eq + 1)..].Trim();
            }
        }
        return null;
    }

    private ServiceInfo? ServiceFrom(InboundConnectionInfo info)
    {
        // forwarded: for="1.2.3.4:5";host=name.ns.svc.cluster.local
        var f = info.Forwarded;
        var i = f?.IndexOf("host=", StringComparison.Ordinal) ?? -1;
        if (i < 0)
        {
            return null;
        }
        var host = f![(i + 5)..];
        var end = host.IndexOf(';');
        return _state.Snapshot.FindServiceByHostname(end < 0 ? host : host[..end]);
    }

    private static IPAddress? ForwardedFor(string? forwarded)
    {
        if (forwarded is null)
        {
            return null;
        }
        var i = forwarded.IndexOf("for=", StringComparison.Ordinal);
        if (i < 0)
        {
            return null;
        }
        var value = forwarded[(i + 4)..];
        var end = value.IndexOf(';');
        value = (end < 0 ? value : value[..end]).Trim('"');
        return IPEndPoint.TryParse(value, out var ep) ? ep.Address : IPAddress.TryParse(value, out var ip) ? ip : null;
    }

    private static partial class Log
    {
        [LoggerMessage(1, LogLevel.Warning, "inbound TLS handshake from {Remote} refused: {Reason}")]
        public static partial void TlsFailure(ILogger logger, string remote, string reason);

        [LoggerMessage(2, LogLevel.Information, "authorization of {Peer} -> {Target}: {Outcome}")]
        public static partial void DryRun(ILogger logger, string peer, string target, string outcome);
    }
}

/// <summary>The HBONE server's connection count feeds the memory trimmer: a closed burst gives memory back to the OS.</summary>
internal sealed class TrimmingConnectionCounter(MemoryTrimmer trimmer) : IInboundConnectionCounter
{
    public void Opened() => trimmer.Opened();

    public void Closed() => trimmer.Closed();
}

using System.Text;
using Ambient.Core.Identity;
using Ambient.Core.Model;
using Ambient.Core.Telemetry;
using Ambient.Hbone.Telemetry;

namespace Ambient.Ztunnel.Telemetry;

/// <summary>
/// The ztunnel's Istio-named TCP metrics. Label sets are built once per connection from the workloads at both ends;
/// byte counts are added when the connection closes.
/// </summary>
internal sealed class ConnectionMetrics
{
    private readonly TcpMetrics _tcp = new();

    public TcpCounters Open(string reporter, WorkloadInfo? source, string? sourcePrincipal, WorkloadInfo? destination,
        ServiceInfo? service, string responseFlags, bool mutualTls)
    {
        var labels = Labels(reporter, source, sourcePrincipal, destination, service, responseFlags, mutualTls);
        var counters = _tcp.For(labels);
        counters.ConnectionOpened();
        return counters;
    }

    /// <summary>A failed connection: opened and closed at once, under its failure flag.</summary>
    public void Failed(string reporter, WorkloadInfo? source, string? sourcePrincipal, WorkloadInfo? destination, ServiceInfo? service, string responseFlags, bool mutualTls)
    {
        Open(reporter, source, sourcePrincipal, destination, service, responseFlags, mutualTls).ConnectionClosed(0, 0);
    }

    /// <summary>An inbound TLS handshake failed: counted with reporter=destination under TLS_FAILURE.</summary>
    public void TlsFailure() =>
        Failed(TcpMetricLabels.ReporterDestination, null, null, null, null, ResponseFlags.TlsFailure, mutualTls: false);

    public void WritePrometheus(StringBuilder sb) => _tcp.WritePrometheus(sb);

    internal static TcpMetricLabels Labels(string reporter, WorkloadInfo? source, string? sourcePrincipal, WorkloadInfo? destination,
        ServiceInfo? service, string responseFlags, bool mutualTls)
    {
        const string unknown = TcpMetricLabels.Unknown;
        string Principal(WorkloadInfo? w, string? explicitPrincipal) =>
            explicitPrincipal ?? (w is not null && mutualTls ? w.Identity : unknown);
        return new TcpMetricLabels(
            reporter,
            source?.WorkloadName ?? unknown,
            source?.Namespace ?? NamespaceOf(sourcePrincipal) ?? unknown,
            Principal(source, sourcePrincipal),
            source?.CanonicalName ?? unknown,
            source?.CanonicalRevision ?? unknown,
            service?.Hostname ?? unknown,
            service?.Namespace ?? unknown,
            destination?.WorkloadName ?? unknown,
            destination?.Namespace ?? unknown,
            destination is not null && mutualTls ? destination.Identity : unknown,
            responseFlags,
            mutualTls ? TcpMetricLabels.MutualTls : TcpMetricLabels.Unknown);
    }

    private static string? NamespaceOf(string? principal) =>
        principal is not null && SpiffeId.TryParse(principal, out var id) ? id.Namespace : null;
}

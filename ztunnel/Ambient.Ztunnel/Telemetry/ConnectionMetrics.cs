using System.Text;
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
        Failed(IstioMetricLabels.ReporterDestination, null, null, null, null, ResponseFlags.TlsFailure, mutualTls: false);

    public void WritePrometheus(StringBuilder sb) => _tcp.WritePrometheus(sb);

    internal static IstioMetricLabels Labels(string reporter, WorkloadInfo? source, string? sourcePrincipal, WorkloadInfo? destination,
        ServiceInfo? service, string responseFlags, bool mutualTls) =>
        IstioMetricLabels.For(reporter, source, sourcePrincipal, destination, service, IstioMetricLabels.Tcp, responseCode: null, responseFlags, mutualTls);
}

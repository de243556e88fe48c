using System.Collections.Concurrent;
using System.Text;

namespace Ambient.Core.Telemetry;

/// <summary>
/// The label set of Istio's TCP metrics, spelled as Istio spells them so existing dashboards work.
/// A record so equal label sets share one counter row.
/// </summary>
internal sealed record TcpMetricLabels(
    string Reporter,
    string SourceWorkload,
    string SourceWorkloadNamespace,
    string SourcePrincipal,
    string SourceApp,
    string SourceVersion,
    string DestinationService,
    string DestinationServiceNamespace,
    string DestinationWorkload,
    string DestinationWorkloadNamespace,
    string DestinationPrincipal,
    string ResponseFlags,
    string ConnectionSecurityPolicy)
{
    public const string ReporterSource = "source";
    public const string ReporterDestination = "destination";
    public const string Unknown = "unknown";
    public const string MutualTls = "mutual_tls";

    internal void Write(StringBuilder sb)
    {
        sb.Append("reporter=\"").Append(Escape(Reporter))
          .Append("\",source_workload=\"").Append(Escape(SourceWorkload))
          .Append("\",source_workload_namespace=\"").Append(Escape(SourceWorkloadNamespace))
          .Append("\",source_principal=\"").Append(Escape(SourcePrincipal))
          .Append("\",source_app=\"").Append(Escape(SourceApp))
          .Append("\",source_version=\"").Append(Escape(SourceVersion))
          .Append("\",destination_service=\"").Append(Escape(DestinationService))
          .Append("\",destination_service_namespace=\"").Append(Escape(DestinationServiceNamespace))
          .Append("\",destination_workload=\"").Append(Escape(DestinationWorkload))
          .Append("\",destination_workload_namespace=\"").Append(Escape(DestinationWorkloadNamespace))
          .Append("\",destination_principal=\"").Append(Escape(DestinationPrincipal))
          .Append("\",request_protocol=\"tcp\",response_flags=\"").Append(Escape(ResponseFlags))
          .Append("\",connection_security_policy=\"").Append(Escape(ConnectionSecurityPolicy))
          .Append('"');
    }

    // Prometheus text format: backslash, double quote and newline are escaped inside label values.
    private static string Escape(string value) =>
        value.AsSpan().IndexOfAny('\\', '"', '\n') < 0 ? value : value.Replace("\\", "\\\\").Replace("\"", "\\\"").Replace("\n", "\\n");
}

/// <summary>
/// istio_tcp_connections_opened_total / closed_total / received_bytes_total / sent_bytes_total.
/// A connection resolves its row once when it opens and adds to it with Interlocked; nothing is
/// allocated per byte or per read.
/// </summary>
internal sealed class TcpMetrics
{
    private readonly ConcurrentDictionary<TcpMetricLabels, TcpCounters> _rows = new();

    public TcpCounters For(TcpMetricLabels labels) => _rows.GetOrAdd(labels, static _ => new TcpCounters());

    public void WritePrometheus(StringBuilder sb)
    {
        // Snapshot the rows once so the four families list the same label sets.
        var rows = _rows.ToArray();
        Array.Sort(rows, static (a, b) => string.CompareOrdinal(a.Key.ToString(), b.Key.ToString()));
        WriteFamily(sb, rows, "istio_tcp_connections_opened_total", "Total TCP connections opened", static c => c.Opened);
        WriteFamily(sb, rows, "istio_tcp_connections_closed_total", "Total TCP connections closed", static c => c.Closed);
        WriteFamily(sb, rows, "istio_tcp_received_bytes_total", "Bytes received by the destination during TCP connections", static c => c.ReceivedBytes);
        WriteFamily(sb, rows, "istio_tcp_sent_bytes_total", "Bytes sent by the destination during TCP connections", static c => c.SentBytes);
    }

    private static void WriteFamily(StringBuilder sb, KeyValuePair<TcpMetricLabels, TcpCounters>[] rows, string name, string help, Func<TcpCounters, long> value)
    {
        PrometheusWriter.Family(sb, name, "counter", help);
        foreach (var (labels, counters) in rows)
        {
            sb.Append(name).Append('{');
            labels.Write(sb);
            sb.Append("} ").Append(value(counters)).Append('\n');
        }
    }
}

/// <summary>One row's counters; updated with Interlocked from any connection's task.</summary>
internal sealed class TcpCounters
{
    private long _opened, _closed, _received, _sent;

    public long Opened => Volatile.Read(ref _opened);
    public long Closed => Volatile.Read(ref _closed);
    public long ReceivedBytes => Volatile.Read(ref _received);
    public long SentBytes => Volatile.Read(ref _sent);

    public void ConnectionOpened() => Interlocked.Increment(ref _opened);

    public void ConnectionClosed(long receivedBytes, long sentBytes)
    {
        Interlocked.Add(ref _received, receivedBytes);
        Interlocked.Add(ref _sent, sentBytes);
        Interlocked.Increment(ref _closed);
    }
}

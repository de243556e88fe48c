using System.Collections.Concurrent;
using System.Text;

namespace Ambient.Core.Telemetry;

/// <summary>
/// istio_tcp_connections_opened_total / closed_total / received_bytes_total / sent_bytes_total.
/// A connection resolves its row once when it opens and adds to it with Interlocked; nothing is
/// allocated per byte or per read.
/// </summary>
internal sealed class TcpMetrics
{
    private readonly ConcurrentDictionary<IstioMetricLabels, TcpCounters> _rows = new();

    public TcpCounters For(IstioMetricLabels labels) => _rows.GetOrAdd(labels, static _ => new TcpCounters());

    public void WritePrometheus(StringBuilder sb)
    {
        // Snapshot the rows once so the four families list the same label sets.
        var rows = _rows.ToArray();
        Array.Sort(rows, static (a, b) => string.CompareOrdinal(a.Key.ToPrometheus(), b.Key.ToPrometheus()));
        WriteFamily(sb, rows, "istio_tcp_connections_opened_total", "Total TCP connections opened", static c => c.Opened);
        WriteFamily(sb, rows, "istio_tcp_connections_closed_total", "Total TCP connections closed", static c => c.Closed);
        WriteFamily(sb, rows, "istio_tcp_received_bytes_total", "Bytes received by the destination during TCP connections", static c => c.ReceivedBytes);
        WriteFamily(sb, rows, "istio_tcp_sent_bytes_total", "Bytes sent by the destination during TCP connections", static c => c.SentBytes);
    }

    private static void WriteFamily(StringBuilder sb, KeyValuePair<IstioMetricLabels, TcpCounters>[] rows, string name, string help, Func<TcpCounters, long> value)
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

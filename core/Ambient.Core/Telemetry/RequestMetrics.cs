using System.Collections.Concurrent;
using System.Globalization;
using System.Text;

namespace Ambient.Core.Telemetry;

/// <summary>
/// Istio's HTTP/gRPC request metrics: istio_requests_total, istio_request_duration_milliseconds,
/// istio_request_bytes and istio_response_bytes. A row is resolved once per label set; recording a request is a
/// handful of Interlocked operations on it.
/// </summary>
internal sealed class RequestMetrics
{
    /// <summary>Envoy's default histogram buckets, which Istio's proxies use for all three histograms.</summary>
    internal static readonly double[] DefaultBuckets =
        [0.5, 1, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000, 30000, 60000, 300000, 600000, 1800000, 3600000];

    private readonly ConcurrentDictionary<IstioMetricLabels, RequestRow> _rows = new();

    public RequestRow For(IstioMetricLabels labels) => _rows.GetOrAdd(labels, static l => new RequestRow(l.ToPrometheus()));

    public void WritePrometheus(StringBuilder sb)
    {
        var rows = _rows.Values.ToArray();
        Array.Sort(rows, static (a, b) => string.CompareOrdinal(a.Labels, b.Labels));
        const string requests = "istio_requests_total";
        PrometheusWriter.Family(sb, requests, "counter", "Total requests handled by an Istio proxy");
        foreach (var row in rows)
        {
            sb.Append(requests).Append('{').Append(row.Labels).Append("} ").Append(row.Requests).Append('\n');
        }
        WriteHistogram(sb, rows, "istio_request_duration_milliseconds", "Duration of requests in milliseconds", static r => r.Duration);
        WriteHistogram(sb, rows, "istio_request_bytes", "Sizes of requests in bytes", static r => r.RequestBytes);
        WriteHistogram(sb, rows, "istio_response_bytes", "Sizes of responses in bytes", static r => r.ResponseBytes);
    }

    private static void WriteHistogram(StringBuilder sb, RequestRow[] rows, string name, string help, Func<RequestRow, Histogram> histogram)
    {
        PrometheusWriter.Family(sb, name, "histogram", help);
        foreach (var row in rows)
        {
            var h = histogram(row);
            long cumulative = 0;
            for (var i = 0; i < DefaultBuckets.Length; i++)
            {
                cumulative += h.BucketCount(i);
                sb.Append(name).Append("_bucket{").Append(row.Labels).Append(",le=\"")
                    .Append(DefaultBuckets[i].ToString(CultureInfo.InvariantCulture)).Append("\"} ").Append(cumulative).Append('\n');
            }
            var count = h.Count;
            sb.Append(name).Append("_bucket{").Append(row.Labels).Append(",le=\"+Inf\"} ").Append(count).Append('\n');
            sb.Append(name).Append("_sum{").Append(row.Labels).Append("} ").Append(h.Sum.ToString(CultureInfo.InvariantCulture)).Append('\n');
            sb.Append(name).Append("_count{").Append(row.Labels).Append("} ").Append(count).Append('\n');
        }
    }
}

/// <summary>One label set's request counter and histograms; <see cref="Labels"/> is its Prometheus text, built once.</summary>
internal sealed class RequestRow(string labels)
{
    private long _requests;

    public string Labels { get; } = labels;
    public long Requests => Volatile.Read(ref _requests);
    public Histogram Duration { get; } = new(RequestMetrics.DefaultBuckets);
    public Histogram RequestBytes { get; } = new(RequestMetrics.DefaultBuckets);
    public Histogram ResponseBytes { get; } = new(RequestMetrics.DefaultBuckets);

    public void Record(double durationMilliseconds, long requestBytes, long responseBytes)
    {
        Duration.Observe(durationMilliseconds);
        RequestBytes.Observe(requestBytes);
        ResponseBytes.Observe(responseBytes);
        Interlocked.Increment(ref _requests);
    }
}

/// <summary>A Prometheus histogram: per-bucket (non-cumulative) counts, the sum and the count, updated lock-free.</summary>
internal sealed class Histogram(double[] upperBounds)
{
    // One slot per bound plus the overflow slot (+Inf only).
    private readonly long[] _counts = new long[upperBounds.Length + 1];
    private long _sumBits;

    public long Count
    {
        get
        {
            long total = 0;
            for (var i = 0; i < _counts.Length; i++)
            {
                total += Volatile.Read(ref _counts[i]);
            }
            return total;
        }
    }

    public double Sum => BitConverter.Int64BitsToDouble(Volatile.Read(ref _sumBits));

    public long BucketCount(int index) => Volatile.Read(ref _counts[index]);

    public void Observe(double value)
    {
        var slot = 0;
        while (slot < upperBounds.Length && value > upperBounds[slot])
        {
            slot++;
        }
        Interlocked.Increment(ref _counts[slot]);
        long seen, next;
        do
        {
            seen = Volatile.Read(ref _sumBits);
            next = BitConverter.DoubleToInt64Bits(BitConverter.Int64BitsToDouble(seen) + value);
        }
        while (Interlocked.CompareExchange(ref _sumBits, next, seen) != seen);
    }
}

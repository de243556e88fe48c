using System.Globalization;

namespace Ambient.TestCommon;

/// <summary>Reads counters out of Prometheus text exposition, as the tests compare them before and after an action.</summary>
public static class PrometheusCounters
{
    /// <summary>Sum of the <paramref name="family"/> rows whose label set contains every one of <paramref name="labels"/>
    /// (each written as in the text, e.g. <c>reporter="source"</c>).</summary>
    public static long Sum(string metrics, string family, params string[] labels)
    {
        long total = 0;
        foreach (var line in metrics.Split('\n'))
        {
            if (!line.StartsWith(family + "{", StringComparison.Ordinal)) continue;
            var all = true;
            foreach (var l in labels) all &= line.Contains(l, StringComparison.Ordinal);
            if (all) total += long.Parse(line[(line.LastIndexOf(' ') + 1)..], CultureInfo.InvariantCulture);
        }
        return total;
    }
}

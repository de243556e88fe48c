using System.Globalization;

namespace Ambient.Ctl.Demo;

/// <summary>One sample of the Prometheus text format: <c>name{label="value",...} number</c>.</summary>
internal sealed record MetricSample(string Name, IReadOnlyDictionary<string, string> Labels, double Value)
{
    public string Label(string name) => Labels.TryGetValue(name, out var v) ? v : "";

    /// <summary>Name plus sorted labels: the series identity.</summary>
    public string SeriesKey
    {
        get
        {
            var keys = new List<string>(Labels.Keys);
            keys.Sort(StringComparer.Ordinal);
            var parts = new List<string>(keys.Count);
            foreach (var k in keys) parts.Add(k + "=" + Labels[k]);
            return Name + "{" + string.Join(",", parts) + "}";
        }
    }
}

/// <summary>A small reader of the Prometheus text exposition format (comments skipped, escapes \\ \" \n in values).</summary>
internal static class PrometheusText
{
    public static List<MetricSample> Parse(string text)
    {
        var result = new List<MetricSample>();
        foreach (var raw in text.Split('\n'))
        {
            var line = raw.Trim();
            if (line.Length == 0 || line[0] == '#') continue;
            var sample = ParseLine(line);
            if (sample is not null) result.Add(sample);
        }
        return result;
    }

    internal static MetricSample? ParseLine(string line)
    {
        var i = 0;
        while (i < line.Length && line[i] != '{' && line[i] != ' ') i++;
        var name = line[..i];
        var labels = new Dictionary<string, string>(StringComparer.Ordinal);
        if (i < line.Length && line[i] == '{')
        {
            i++;
            while (i < line.Length && line[i] != '}')
            {
                var eq = line.IndexOf('=', i);
                if (eq < 0 || eq + 1 >= line.Length || line[eq + 1] != '"') return null;
                var key = line[i..eq].Trim().TrimStart(',').Trim();
                var sb = new System.Text.StringBuilder();
                var j = eq + 2;
                for (; j < line.Length && line[j] != '"'; j++)
                {
                    if (line[j] == '\\' && j + 1 < line.Length)
                    {
                        j++;
                        sb.Append(line[j] == 'n' ? '\n' : line[j]);
                    }
                    else sb.Append(line[j]);
                }
                if (j >= line.Length) return null;
                labels[key] = sb.ToString();
                i = j + 1;
                while (i < line.Length && (line[i] == ',' || line[i] == ' ')) i++;
            }
            i++;
        }
        var rest = line[Math.Min(i, line.Length)..].Trim();
        var space = rest.IndexOf(' ', StringComparison.Ordinal);
        if (space > 0) rest = rest[..space]; // drop a timestamp
        return double.TryParse(rest, NumberStyles.Float, CultureInfo.InvariantCulture, out var value)
            ? new MetricSample(name, labels, value)
            : null;
    }

    /// <summary>Samples of <paramref name="after"/> whose value grew since <paramref name="before"/>, with the growth as value.</summary>
    public static List<MetricSample> Delta(List<MetricSample> before, List<MetricSample> after)
    {
        var old = new Dictionary<string, double>(StringComparer.Ordinal);
        foreach (var s in before) old[s.SeriesKey] = s.Value;
        var result = new List<MetricSample>();
        foreach (var s in after)
        {
            var growth = s.Value - old.GetValueOrDefault(s.SeriesKey);
            if (growth > 0) result.Add(s with { Value = growth });
        }
        return result;
    }
}

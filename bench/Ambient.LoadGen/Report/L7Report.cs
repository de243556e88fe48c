using System.Globalization;
using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;
using Ambient.LoadGen.Measure;
using static Ambient.LoadGen.Report.L4Report;

namespace Ambient.LoadGen.Report;

/// <summary>
/// The L7 side-by-side table: direct, the mesh with its waypoint (ztunnel -> waypoint -> ztunnel) and the haproxy
/// pair (HTTP mode, one routing rule, TLS 1.3 mutual TLS between them). Medians over runs with min-max spreads, the
/// ratios of the mesh to haproxy, then the targets. The layout and helpers are the L4 report's.
/// </summary>
internal static class L7Report
{
    /// <summary>The proxy the targets are about, by its process name in the mesh setup.</summary>
    internal const string Waypoint = "waypoint";

    private sealed record Row(string Metric, string Unit, Func<L7Result, Stat> Get);

    public static string Write(L7Result direct, L7Result mesh, L7Result peer, JsonObject environment, string jsonPath)
    {
        var inv = CultureInfo.InvariantCulture;
        var rate = environment["rate"]?.ToString() ?? "fixed";
        Row[] rows =
        [
            new("max req/s (closed loop)", "req/s", r => Stat.Of(r.MaxRequestsPerSecond)),
            new($"latency P50 @{rate} rps", "ms", r => Stat.Of(Select(r.Latency, l => l.P50Ms))),
            new($"latency P90 @{rate} rps", "ms", r => Stat.Of(Select(r.Latency, l => l.P90Ms))),
            new($"latency P99 @{rate} rps", "ms", r => Stat.Of(Select(r.Latency, l => l.P99Ms))),
            new($"latency P99.9 @{rate} rps", "ms", r => Stat.Of(Select(r.Latency, l => l.P999Ms))),
            new($"path CPU / 100k req @{rate} rps", "cpu-s", r => Stat.Of(r.CpuSecondsPer100kAtRate.GetValueOrDefault("all") ?? [])),
            new("path CPU / 100k req @max", "cpu-s", r => Stat.Of(r.CpuSecondsPer100kAtMax.GetValueOrDefault("all") ?? [])),
            new($"waypoint CPU / 100k req @{rate} rps", "cpu-s", r => Stat.Of(r.CpuSecondsPer100kAtRate.GetValueOrDefault(Waypoint) ?? [])),
            new("waypoint CPU / 100k req @max", "cpu-s", r => Stat.Of(r.CpuSecondsPer100kAtMax.GetValueOrDefault(Waypoint) ?? [])),
            new("proxy peak RSS (max on path)", "MiB", r => PeakRss(r, null)),
            new("waypoint peak RSS", "MiB", r => PeakRss(r, Waypoint)),
        ];
        var sb = new StringBuilder();
        sb.AppendLine(inv, $"{"metric",-36} {"unit",-6} {"direct",-22} {"mesh + waypoint",-22} {"haproxy pair",-22} {"mesh/direct",11} {"mesh/haproxy",12}");
        sb.AppendLine(new string('-', 137));
        var table = new JsonArray();
        foreach (var row in rows)
        {
            var d = row.Get(direct);
            var m = row.Get(mesh);
            var p = row.Get(peer);
            sb.AppendLine(inv, $"{row.Metric,-36} {row.Unit,-6} {Cell(d),-22} {Cell(m),-22} {Cell(p),-22} {Ratio(m.Median, d.Median),11} {Ratio(m.Median, p.Median),12}");
            table.Add(new JsonObject
            {
                ["metric"] = row.Metric,
                ["unit"] = row.Unit,
                ["direct"] = StatJson(d),
                ["mesh"] = StatJson(m),
                ["haproxy"] = StatJson(p),
                ["meshOverDirect"] = Num(m.Median / d.Median),
                ["meshOverHaproxy"] = Num(m.Median / p.Median),
            });
        }
        sb.AppendLine();
        var targets = new JsonArray();
        var max = rows[0].Get(mesh).Median / rows[0].Get(peer).Median;
        Target(sb, targets, "max req/s >= 0.5x haproxy pair", max >= 0.5, $"{max:F2}x");
        // Added P99 from all runs' samples pooled per setup, as in the L4 report (one run's P99 rests on few samples).
        var addedMesh = PooledP99(mesh.Latency) - PooledP99(direct.Latency);
        var addedPeer = PooledP99(peer.Latency) - PooledP99(direct.Latency);
        var perRun = $"median of per-run differences: mesh {Stat.Of(PairedDifference(mesh.Latency, direct.Latency)).Median:F3} ms, haproxy {Stat.Of(PairedDifference(peer.Latency, direct.Latency)).Median:F3} ms";
        if (addedPeer > 0)
        {
            var ratio = Math.Max(addedMesh, 0) / addedPeer;
            Target(sb, targets, "added P99 <= 2x haproxy pair's", ratio <= 2,
                $"mesh adds {addedMesh:F3} ms, haproxy adds {addedPeer:F3} ms ({ratio:F2}x; P99 of all runs pooled; {perRun})");
        }
        else
        {
            Target(sb, targets, "added P99 <= 2x haproxy pair's", null,
                $"inconclusive: haproxy's added P99 is {addedPeer:F3} ms (<= 0), the mesh's {addedMesh:F3} ms ({perRun})");
        }
        var rss = PeakRss(mesh, Waypoint).Median;
        // Decimal megabytes, the stricter reading of "60 MB"; the table shows MiB, as VmHWM does.
        Target(sb, targets, "waypoint peak RSS <= 60 MB", rss * 1.048576 <= 60, $"{rss * 1.048576:F1} MB ({rss:F1} MiB)");

        var json = new JsonObject
        {
            ["benchmark"] = "l7",
            ["date"] = DateTimeOffset.UtcNow.ToString("O", inv),
            ["environment"] = environment,
            ["rows"] = table,
            ["targets"] = targets,
            ["setups"] = new JsonArray(Raw(direct), Raw(mesh), Raw(peer)),
        };
        Directory.CreateDirectory(Path.GetDirectoryName(Path.GetFullPath(jsonPath))!);
        File.WriteAllText(jsonPath, json.ToJsonString(new JsonSerializerOptions { WriteIndented = true }));
        sb.AppendLine(inv, $"JSON: {jsonPath}");
        return sb.ToString();
    }

    /// <summary>VmHWM of the named process, or the largest on the path when <paramref name="name"/> is null.</summary>
    private static Stat PeakRss(L7Result r, string? name)
    {
        var max = double.NaN;
        foreach (var p in r.Processes)
        {
            if (name is null || p.Name == name)
            {
                max = double.IsNaN(max) ? p.PeakRssMiB : Math.Max(max, p.PeakRssMiB);
            }
        }
        return new Stat(max, max, max);
    }

    private static JsonNode Raw(L7Result r) => JsonSerializer.SerializeToNode(r, new JsonSerializerOptions { NumberHandling = System.Text.Json.Serialization.JsonNumberHandling.AllowNamedFloatingPointLiterals })!;
}

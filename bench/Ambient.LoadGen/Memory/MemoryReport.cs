using System.Globalization;
using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;
using static Ambient.LoadGen.Report.L4Report;

namespace Ambient.LoadGen.Memory;

/// <summary>One run's two phases, as written by <c>memory-run</c> and read back by <c>memory-report</c>.</summary>
internal sealed record MemoryRunResult(PhaseResult? Ztunnel, PhaseResult? Istiod);

/// <summary>
/// The memory table: per process before / peak / after RSS as the median over runs with the min-max spread, then
/// the two targets, checked in every run (a target is met only if it was met in each run).
/// </summary>
internal static class MemoryReport
{
    public static readonly JsonSerializerOptions Json = new() { WriteIndented = true };

    public static string Write(IReadOnlyList<MemoryRunResult> runs, JsonObject environment, string jsonPath)
    {
        var inv = CultureInfo.InvariantCulture;
        var sb = new StringBuilder();
        sb.AppendLine(inv, $"{"process",-12} {"cold MiB",-20} {"before MiB",-20} {"peak MiB",-20} {"after MiB",-20} {"after/before",-20} {"back within 20% (s)",-20}");
        sb.AppendLine(new string('-', 138));
        var rows = new JsonArray();
        var targets = new JsonArray();
        foreach (var (name, pick, target) in new (string, Func<MemoryRunResult, PhaseResult?>, string)[]
        {
            ("ztunnel", r => r.Ztunnel, "ztunnel RSS within 20% of before, 60 s after 2,000 idle connections closed"),
            ("istiod-lite", r => r.Istiod, "istiod-lite RSS within 20% of before, 60 s after a 10 MB config file was removed"),
        })
        {
            var phases = runs.Select(pick).OfType<PhaseResult>().ToList();
            if (phases.Count == 0)
            {
                continue;
            }
            var ratios = phases.Select(p => p.AfterMib / p.BeforeMib).ToList();
            var back = phases.Select(p => p.ReturnedAfterSeconds ?? double.NaN).ToList();
            sb.AppendLine(inv, $"{name,-12} {Cell(Stat.Of(phases.Select(p => p.ColdMib).ToList())),-20} {Cell(Stat.Of(phases.Select(p => p.BeforeMib).ToList())),-20} " +
                $"{Cell(Stat.Of(phases.Select(p => p.PeakMib).ToList())),-20} {Cell(Stat.Of(phases.Select(p => p.AfterMib).ToList())),-20} " +
                $"{Cell(Stat.Of(ratios), "F2"),-20} {BackCell(back),-20}");
            rows.Add(new JsonObject
            {
                ["process"] = name,
                ["load"] = phases[0].Load,
                ["coldMiB"] = StatJson(Stat.Of(phases.Select(p => p.ColdMib).ToList())),
                ["beforeMiB"] = StatJson(Stat.Of(phases.Select(p => p.BeforeMib).ToList())),
                ["peakMiB"] = StatJson(Stat.Of(phases.Select(p => p.PeakMib).ToList())),
                ["afterMiB"] = StatJson(Stat.Of(phases.Select(p => p.AfterMib).ToList())),
                ["afterOverBefore"] = StatJson(Stat.Of(ratios)),
            });
            var failedRuns = ratios.Count(r => !(r <= MemoryRun.ReturnFactor));
            var failures = phases.Sum(p => p.Failures);
            var met = failedRuns == 0 && failures == 0;
            var detail = string.Create(inv, $"after/before per run: {string.Join(", ", ratios.Select(r => r.ToString("F2", inv)))}") +
                (failures > 0 ? string.Create(inv, $"; {failures} connections failed or were cut while idle") : "");
            sb.AppendLine(inv, $"{"",-12} load: {phases[0].Load}; load phase {Cell(Stat.Of(phases.Select(p => p.LoadSeconds).ToList()))} s");
            targets.Add(new JsonObject { ["target"] = target, ["met"] = met, ["detail"] = detail });
        }
        sb.AppendLine();
        foreach (var t in targets)
        {
            sb.AppendLine(inv, $"target {(string)t!["target"]!,-88} {((bool)t["met"]! ? "MET   " : "MISSED")} {(string)t["detail"]!}");
        }
        var json = new JsonObject
        {
            ["benchmark"] = "memory",
            ["date"] = DateTimeOffset.UtcNow.ToString("O", inv),
            ["environment"] = environment,
            ["rows"] = rows,
            ["targets"] = targets,
            ["runs"] = JsonSerializer.SerializeToNode(runs, Json),
        };
        Directory.CreateDirectory(Path.GetDirectoryName(Path.GetFullPath(jsonPath))!);
        File.WriteAllText(jsonPath, json.ToJsonString(Json));
        sb.AppendLine(inv, $"JSON: {jsonPath}");
        return sb.ToString();
    }

    private static string Cell(Stat s, string format = "F1") =>
        string.Create(CultureInfo.InvariantCulture, $"{s.Median.ToString(format, CultureInfo.InvariantCulture)} ({s.Min.ToString(format, CultureInfo.InvariantCulture)}-{s.Max.ToString(format, CultureInfo.InvariantCulture)})");

    private static string BackCell(List<double> seconds)
    {
        var returned = seconds.Where(s => !double.IsNaN(s)).ToList();
        if (returned.Count == 0)
        {
            return "never";
        }
        var text = Cell(Stat.Of(returned));
        return returned.Count == seconds.Count ? text : string.Create(CultureInfo.InvariantCulture, $"{text}; {seconds.Count - returned.Count} run(s) never");
    }

    private static JsonObject StatJson(Stat s) => new() { ["median"] = Num(s.Median), ["min"] = Num(s.Min), ["max"] = Num(s.Max) };

    private static JsonNode? Num(double v) => double.IsNaN(v) || double.IsInfinity(v) ? null : JsonValue.Create(Math.Round(v, 3));
}

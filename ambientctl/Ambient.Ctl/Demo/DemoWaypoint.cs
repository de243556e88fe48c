using System.Globalization;
using Ambient.Config.Yaml;
using Ambient.Ctl.Cli;
using Ambient.Ctl.Inspect;
using Ambient.Ctl.Labels;

namespace Ambient.Ctl.Demo;

/// <summary>One row of what the waypoint saw: growth of istio_requests_total (reporter="waypoint") for one series.</summary>
internal sealed record WaypointRequests(string SourcePrincipal, string Destination, string DestinationPrincipal, string ResponseCode, long Count);

/// <summary>
/// The pure parts of the demo's waypoint steps: the HTTPRoute it writes (a header match, then a 90/10 split between
/// the echo versions), the verdict on a split, and what the waypoint's own metrics say about the requests.
/// </summary>
internal static class DemoWaypoint
{
    public const string Namespace = "demo";
    public const string Name = "waypoint";
    public const string RouteName = "echo-split";
    public const string VersionHeader = "x-version";

    /// <summary>The Service the route is attached to, and the per-version Services it sends to (samples/mesh/demo.yaml).</summary>
    public const string Service = "echo";
    public const string V1 = "echo-v1";
    public const string V2 = "echo-v2";
    public const int V1Weight = 90;
    public const int V2Weight = 10;

    /// <summary>The first line of the route file: the demo wrote it and removes it.</summary>
    public const string Marker = "# Written by `ambientctl demo` for its waypoint step; the demo removes it.";

    public static string RouteFile(string folder) => Path.Combine(folder, $"demo-httproute-{RouteName}.yaml");

    /// <summary>Requests with <c>x-version: v2</c> go to v2; every other request is split 90/10 between v1 and v2.</summary>
    public static string RouteYaml() => $"""
        {Marker}
        apiVersion: gateway.networking.k8s.io/v1
        kind: HTTPRoute
        metadata:
          name: {RouteName}
          namespace: {Namespace}
        spec:
          parentRefs:
          - group: ""
            kind: Service
            name: {Service}
            port: 80
          rules:
          - matches:
            - headers:
              - name: {VersionHeader}
                value: v2
            backendRefs:
            - name: {V2}
              port: 80
          - backendRefs:
            - name: {V1}
              port: 80
              weight: {V1Weight}
            - name: {V2}
              port: 80
              weight: {V2Weight}

        """;

    /// <summary>Writes the route file, parsed before it lands as every edit ambientctl makes; null with why not.</summary>
    public static string? WriteRoute(string folder, out string? error)
    {
        var path = RouteFile(folder);
        var text = RouteYaml();
        var parsed = ManifestParser.Parse(path, text);
        if (!parsed.IsClean)
        {
            error = $"the demo's HTTPRoute does not read back: {string.Join("; ", parsed.Errors)}";
            return null;
        }
        NamespaceLabelEditor.WriteAtomically(path, text);
        error = null;
        return path;
    }

    /// <summary>
    /// Undoes the waypoint steps in <paramref name="folder"/>: the route file, the waypoint's file (as `waypoint delete`)
    /// and the namespace's use-waypoint label, as step 5 puts back the label step 4 removed.
    /// </summary>
    public static void Remove(string folder)
    {
        DeleteRoute(folder);
        using var output = new StringWriter();
        using var error = new StringWriter();
        WaypointCommand.Delete(folder, Namespace, [Name], all: false, output, error);
        NamespaceLabelEditor.Apply(folder, Namespace, new LabelChange(WaypointLabels.Use, null), out _, out _);
    }

    /// <summary>Removes the route file if the demo wrote it (its first line is the marker).</summary>
    public static void DeleteRoute(string folder)
    {
        var path = RouteFile(folder);
        try
        {
            using (var reader = new StreamReader(path))
            {
                if (reader.ReadLine() != Marker) return;
            }
            File.Delete(path);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            // Already gone, or not ours to remove: the demo's temp folder goes away with it anyway.
        }
    }

    /// <summary>
    /// Whether <paramref name="answers"/> (requests per answering pod, <paramref name="total"/> sent) looks like the
    /// 90/10 split: every request answered by v1 or v2, v2 neither absent nor a third or more. For 100 requests the
    /// chance of a correct split failing is below 1e-4 (P(v2 = 0) = 0.9^100).
    /// </summary>
    public static string? SplitProblem(IReadOnlyDictionary<string, int> answers, int total)
    {
        var v1 = answers.GetValueOrDefault(V1);
        var v2 = answers.GetValueOrDefault(V2);
        if (v1 + v2 != total) return $"{total - v1 - v2} of {total} requests were not answered by {V1} or {V2}";
        if (v2 == 0) return $"no request went to {V2}: the split is not applied";
        if (v2 * 3 >= total) return $"{v2} of {total} requests went to {V2}: not a {V1Weight}/{V2Weight} split";
        return null;
    }

    /// <summary>"echo-v1 91 / echo-v2 9": the answering pods, by name.</summary>
    public static string Tally(IReadOnlyDictionary<string, int> answers)
    {
        var pods = new List<string>(answers.Keys);
        pods.Sort(StringComparer.Ordinal);
        var parts = new List<string>(pods.Count);
        foreach (var pod in pods) parts.Add(pod + " " + answers[pod].ToString(CultureInfo.InvariantCulture));
        return string.Join(" / ", parts);
    }

    /// <summary>
    /// The requests the waypoint counted between two scrapes of its /stats/prometheus: istio_requests_total with
    /// reporter="waypoint", one row per source, destination workload and response code, in that order.
    /// </summary>
    public static List<WaypointRequests> RequestsSeen(List<MetricSample> before, List<MetricSample> after)
    {
        var rows = new List<WaypointRequests>();
        foreach (var s in PrometheusText.Delta(before, after))
        {
            if (s.Name != "istio_requests_total" || s.Label("reporter") != "waypoint") continue;
            var destination = s.Label("destination_workload_namespace") is { Length: > 0 } ns
                ? ns + "/" + s.Label("destination_workload")
                : s.Label("destination_service");
            rows.Add(new WaypointRequests(s.Label("source_principal"), destination, s.Label("destination_principal"),
                s.Label("response_code"), (long)s.Value));
        }
        rows.Sort(static (a, b) =>
        {
            var c = string.CompareOrdinal(a.SourcePrincipal, b.SourcePrincipal);
            if (c == 0) c = string.CompareOrdinal(a.Destination, b.Destination);
            return c != 0 ? c : string.CompareOrdinal(a.ResponseCode, b.ResponseCode);
        });
        return rows;
    }

    /// <summary>The sum of a metric's growth over the series with reporter="waypoint" (0 if it did not grow).</summary>
    public static double Growth(List<MetricSample> before, List<MetricSample> after, string name)
    {
        var sum = 0.0;
        foreach (var s in PrometheusText.Delta(before, after))
        {
            if (s.Name == name && s.Label("reporter") == "waypoint") sum += s.Value;
        }
        return sum;
    }
}

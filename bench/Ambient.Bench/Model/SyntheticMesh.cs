using System.Collections.Immutable;
using Ambient.Core.Config;

namespace Ambient.Bench.Model;

/// <summary>
/// A synthetic mesh as config records: pods spread evenly over ambient namespaces and nodes, one service per
/// <c>podsPerService</c> pods selecting them by app label, one numeric and one named target port per service.
/// </summary>
internal static class SyntheticMesh
{
    private static readonly SourceLocation Source = new("synthetic.yaml", 1);
    private static readonly ImmutableSortedDictionary<string, string> NoMap = ImmutableSortedDictionary<string, string>.Empty;

    public static List<Resource> Generate(int pods = 10_000, int namespaces = 100, int podsPerService = 10, int nodes = 10)
    {
        var resources = new List<Resource>(pods + pods / podsPerService + namespaces);
        for (var n = 0; n < namespaces; n++)
        {
            resources.Add(new NamespaceResource("v1", Meta("", $"ns-{n:D3}", ("istio.io/dataplane-mode", "ambient")), Source));
        }
        var perNamespace = pods / namespaces;
        for (var i = 0; i < pods; i++)
        {
            var ns = $"ns-{i / perNamespace:D3}";
            var app = $"app-{i / podsPerService:D4}";
            resources.Add(Pod(ns, $"{app}-{i % podsPerService}", app, "v1", $"node-{i % nodes:D2}"));
            if (i % podsPerService == 0)
            {
                resources.Add(new ServiceResource("v1", Meta(ns, app), Source, "ClusterIP", null, Map(("app", app)),
                [
                    new ServicePortSpec("http", 80, TargetPort.FromNumber(8080), "http", "TCP"),
                    new ServicePortSpec("alt", 81, TargetPort.FromName("http"), null, "TCP"),
                ]));
            }
        }
        return resources;
    }

    /// <summary>The same config with the <c>version</c> label of one pod changed (its canonical revision changes).</summary>
    public static List<Resource> WithOnePodChanged(List<Resource> config, string version)
    {
        var copy = new List<Resource>(config);
        var index = copy.FindIndex(r => r is PodResource);
        var pod = (PodResource)copy[index];
        copy[index] = Pod(pod.Metadata.Namespace, pod.Metadata.Name, pod.Metadata.Labels["app"], version, pod.NodeName!);
        return copy;
    }

    private static PodResource Pod(string ns, string name, string app, string version, string node)
        => new("v1", Meta(ns, name, ("app", app), ("version", version)), Source, app, node,
            [new ContainerSpec("app", "app:1", [], [], [new ContainerPort("http", 8080, "TCP")], NoMap)], null);

    internal static ObjectMeta Meta(string ns, string name, params (string, string)[] labels) => new(name, ns, Map(labels), NoMap);

    internal static ImmutableSortedDictionary<string, string> Map(params (string Key, string Value)[] pairs)
    {
        var b = ImmutableSortedDictionary.CreateBuilder<string, string>(StringComparer.Ordinal);
        foreach (var (k, v) in pairs)
        {
            b[k] = v;
        }
        return b.ToImmutable();
    }
}

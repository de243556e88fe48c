using System.Collections.Immutable;
using Ambient.Core.Config;

namespace Ambient.Core.Tests.Model;

/// <summary>Config records built directly, as the YAML parser would produce them.</summary>
internal static class ConfigFixtures
{
    private static readonly SourceLocation Source = new("mesh.yaml", 1);

    public static ImmutableSortedDictionary<string, string> Map(params (string Key, string Value)[] pairs)
    {
        var b = ImmutableSortedDictionary.CreateBuilder<string, string>(StringComparer.Ordinal);
        foreach (var (k, v) in pairs)
        {
            b[k] = v;
        }
        return b.ToImmutable();
    }

    public static ObjectMeta Meta(string ns, string name, params (string, string)[] labels)
        => new(name, ns, Map(labels), ImmutableSortedDictionary<string, string>.Empty);

    public static NamespaceResource Namespace(string name, params (string, string)[] labels)
        => new("v1", Meta("", name, labels), Source);

    public static NamespaceResource AmbientNamespace(string name) => Namespace(name, ("istio.io/dataplane-mode", "ambient"));

    public static PodResource Pod(
        string ns, string name, (string, string)[]? labels = null, string serviceAccount = "default",
        string? node = "node-a", string? podIP = null, params ContainerPort[] ports)
        => new("v1", Meta(ns, name, labels ?? []), Source, serviceAccount, node,
            [new ContainerSpec("app", "app:1", [], [], [.. ports], ImmutableSortedDictionary<string, string>.Empty)], podIP);

    public static ServiceResource Service(
        string ns, string name, (string, string)[] selector, ServicePortSpec[] ports, string? clusterIP = null, string type = "ClusterIP")
        => new("v1", Meta(ns, name), Source, type, clusterIP, Map(selector), [.. ports]);

    public static ServicePortSpec Port(int port, int targetPort = 0, string? appProtocol = null, string? name = null)
        => new(name, port, TargetPort.FromNumber(targetPort), appProtocol, "TCP");

    public static ServicePortSpec NamedTargetPort(int port, string targetPortName, string? appProtocol = null)
        => new(null, port, TargetPort.FromName(targetPortName), appProtocol, "TCP");

    public static PodResource WithLabels(this PodResource pod, params (string, string)[] labels)
        => pod with { Metadata = pod.Metadata with { Labels = Map(labels) } };
}

/// <summary>The benchmark's synthetic mesh: pods spread over namespaces, services selecting a fixed number of pods each.</summary>
internal static class SyntheticConfig
{
    public static List<Resource> Generate(int pods = 10_000, int namespaces = 100, int podsPerService = 10, int nodes = 10)
    {
        var resources = new List<Resource>(pods + pods / podsPerService + namespaces);
        for (var n = 0; n < namespaces; n++)
        {
            resources.Add(ConfigFixtures.AmbientNamespace($"ns-{n:D3}"));
        }
        var perNamespace = pods / namespaces;
        for (var i = 0; i < pods; i++)
        {
            var ns = $"ns-{i / perNamespace:D3}";
            var app = $"app-{i / podsPerService:D4}";
            resources.Add(ConfigFixtures.Pod(ns, $"{app}-{i % podsPerService}", [("app", app), ("version", "v1")],
                serviceAccount: app, node: $"node-{i % nodes:D2}", ports: new ContainerPort("http", 8080, "TCP")));
            if (i % podsPerService == 0)
            {
                resources.Add(ConfigFixtures.Service(ns, app, [("app", app)],
                    [ConfigFixtures.Port(80, 8080, "http", "http"), ConfigFixtures.NamedTargetPort(81, "http")]));
            }
        }
        return resources;
    }
}

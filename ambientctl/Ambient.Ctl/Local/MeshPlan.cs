using System.Collections.Immutable;
using System.Net;
using Ambient.Core.Config;
using Ambient.Core.Model;

namespace Ambient.Ctl.Local;

/// <summary>One process of a pod: a container, with where it lives and what it runs.</summary>
internal sealed record ContainerPlan(
    string Namespace,
    string Pod,
    string Container,
    string Node,
    IPAddress Address,
    string ServiceAccount,
    string? Image,
    ImmutableArray<string> Command,
    ImmutableArray<string> Args,
    int? Port,
    ImmutableSortedDictionary<string, string> Env,
    SourceLocation Source)
{
    /// <summary>Name used in logs, the state file and messages: ns/pod or ns/pod/container when the pod has several.</summary>
    public string DisplayName { get; init; } = Namespace + "/" + Pod;
}

/// <summary>
/// What `local up` will run for a folder: one ztunnel per node named by a pod's spec.nodeName (at the address
/// istiod-lite publishes for it) and one process per container. Built from the same parser and address allocator
/// istiod-lite uses, so a pod process binds exactly the address the mesh routes to.
/// </summary>
internal sealed record MeshPlan(
    string ConfigFolder,
    ImmutableArray<Resource> Resources,
    ImmutableSortedDictionary<string, IPAddress> Nodes,
    ImmutableArray<ContainerPlan> Containers)
{
    public const string EchoImage = "ambient/echo";
    public const string SleepImage = "ambient/sleep";

    /// <summary>Parses and validates the folder; every problem is reported with file:line, nothing throws.</summary>
    public static MeshPlan? Load(string folder, out ImmutableArray<ConfigError> errors)
    {
        var problems = ImmutableArray.CreateBuilder<ConfigError>();
        var full = Path.GetFullPath(folder);
        if (!Directory.Exists(full))
        {
            errors = [new ConfigError(new SourceLocation(full, 0), "-f", "folder does not exist")];
            return null;
        }
        var files = new List<FileContribution>();
        foreach (var file in EnumerateYaml(full))
        {
            string text;
            try
            {
                text = File.ReadAllText(file);
            }
            catch (Exception e) when (e is IOException or UnauthorizedAccessException)
            {
                problems.Add(new ConfigError(new SourceLocation(file, 0), "-", $"cannot read: {e.Message}"));
                continue;
            }
            var parsed = ManifestParser.Parse(file, text);
            files.Add(new FileContribution(file, parsed.Resources, parsed.Errors));
        }
        if (files.Count == 0 && problems.Count == 0)
        {
            problems.Add(new ConfigError(new SourceLocation(full, 0), "-f", "no *.yaml or *.yml files in the folder"));
        }
        var merged = ConfigMerge.Merge(1, files);
        problems.AddRange(merged.Errors);
        var firstNodeOctet = NodeAddressBase.FromEnvironment(out var baseError);
        if (baseError is not null) problems.Add(baseError);
        var assignment = LoopbackAddressAllocator.AssignAll(merged.Resources, firstNodeOctet);
        problems.AddRange(assignment.Problems);

        var namespaces = new HashSet<string>(StringComparer.Ordinal);
        foreach (var r in merged.Resources)
        {
            if (r is NamespaceResource ns) namespaces.Add(ns.Metadata.Name);
        }
        var containers = ImmutableArray.CreateBuilder<ContainerPlan>();
        foreach (var r in merged.Resources)
        {
            if (r is not PodResource pod) continue;
            if (string.IsNullOrEmpty(pod.NodeName))
            {
                problems.Add(new ConfigError(pod.Source, "spec.nodeName",
                    $"pod {pod.Metadata.Namespace}/{pod.Metadata.Name} names no node; the local mesh runs one ztunnel per spec.nodeName"));
            }
            if (!namespaces.Contains(pod.Metadata.Namespace) && pod.Metadata.Namespace != "default")
            {
                problems.Add(new ConfigError(pod.Source, "metadata.namespace",
                    $"namespace '{pod.Metadata.Namespace}' is not declared (add a Namespace document)"));
            }
            var address = assignment.PodAddress(pod.Metadata.Namespace, pod.Metadata.Name);
            if (address is null || !IPAddress.IsLoopback(address))
            {
                problems.Add(new ConfigError(pod.Source, "status.podIP",
                    $"pod {pod.Metadata.Namespace}/{pod.Metadata.Name} needs a loopback address (127.x.y.z) to run locally, not {address}"));
                continue;
            }
            foreach (var c in pod.Containers)
            {
                if (CheckRunnable(pod, c) is { } problem)
                {
                    problems.Add(problem);
                    continue;
                }
                containers.Add(new ContainerPlan(pod.Metadata.Namespace, pod.Metadata.Name, c.Name, pod.NodeName ?? "", address,
                    pod.ServiceAccountName, c.Image, c.Command, c.Args, c.Ports.IsEmpty ? null : c.Ports[0].Port, c.Env, pod.Source)
                {
                    DisplayName = pod.Containers.Length == 1
                        ? pod.Metadata.Namespace + "/" + pod.Metadata.Name
                        : pod.Metadata.Namespace + "/" + pod.Metadata.Name + "/" + c.Name,
                });
            }
        }
        if (containers.Count == 0 && problems.Count == 0)
        {
            problems.Add(new ConfigError(new SourceLocation(full, 0), "-f", "the folder declares no pods; nothing to run"));
        }
        errors = problems.ToImmutable();
        if (!errors.IsEmpty) return null;
        var nodes = ImmutableSortedDictionary.CreateRange(StringComparer.Ordinal, assignment.Nodes);
        return new MeshPlan(full, merged.Resources, nodes, containers.ToImmutable());
    }

    /// <summary>A container runs either a built-in sample image or, given command:, a program of this host.</summary>
    internal static ConfigError? CheckRunnable(PodResource pod, ContainerSpec c)
    {
        var field = $"spec.containers[{c.Name}]";
        if (!c.Command.IsEmpty)
        {
            var program = c.Command[0];
            return HostPrograms.Resolve(program) is null
                ? new ConfigError(pod.Source, field + ".command", $"program '{program}' was not found (not a file, not on PATH)")
                : null;
        }
        if (c.Image is EchoImage or SleepImage) return null;
        return new ConfigError(pod.Source, field + ".image",
            $"image '{c.Image}' is not a built-in sample image ({EchoImage}, {SleepImage}); give the container a command: to run a program of this host");
    }

    private static IEnumerable<string> EnumerateYaml(string folder)
    {
        var files = new List<string>();
        foreach (var f in Directory.EnumerateFiles(folder, "*", SearchOption.AllDirectories))
        {
            if (f.EndsWith(".yaml", StringComparison.OrdinalIgnoreCase) || f.EndsWith(".yml", StringComparison.OrdinalIgnoreCase))
            {
                files.Add(f);
            }
        }
        files.Sort(StringComparer.Ordinal);
        return files;
    }
}

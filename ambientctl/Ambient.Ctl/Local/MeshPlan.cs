using System.Collections.Immutable;
using System.Net;
using Ambient.Config.Yaml;
using Ambient.Core.Config;
using Ambient.Core;
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

    /// <summary>Enrolled in the mesh (istio.io/dataplane-mode of the pod, else of its namespace), as istiod-lite decides.</summary>
    public bool InMesh { get; init; }

    /// <summary>Every containerPort, in declaration order (<see cref="Port"/> is the first): the echo image listens on all.</summary>
    public ImmutableArray<int> Ports { get; init; } = [];

    /// <summary>The pod's <c>app</c> label when the pod started (told to the process; a relabel restarts nothing).</summary>
    public string? App { get; init; }

    /// <summary>
    /// Whether <paramref name="other"/> runs the same process: what it runs, with what, where. Labels, enrolment and
    /// the line it is declared on are not part of it, so a label change never restarts a pod.
    /// </summary>
    public bool SameProcess(ContainerPlan other) =>
        DisplayName == other.DisplayName && Node == other.Node && Address.Equals(other.Address) && ServiceAccount == other.ServiceAccount
        && Image == other.Image && Port == other.Port && Ports.SequenceEqual(other.Ports) && Command.SequenceEqual(other.Command) && Args.SequenceEqual(other.Args)
        && Env.Count == other.Env.Count && Env.All(e => other.Env.TryGetValue(e.Key, out var v) && v == e.Value);
}

/// <summary>The containers a config asks for, the node addresses, and what keeps some pods from running.</summary>
internal sealed record PodPlan(
    ImmutableSortedDictionary<string, IPAddress> Nodes,
    ImmutableArray<ContainerPlan> Containers,
    ImmutableArray<ConfigError> Problems)
{
    public AddressRanges Addresses { get; init; } = AddressRanges.Loopback;
}

/// <summary>
/// What `local up` will run for a folder (or one file, as kubectl's -f takes either): one ztunnel per node named by a
/// pod's spec.nodeName (at the address istiod-lite publishes for it) and one process per container. Built from the
/// same parser and address allocator istiod-lite uses, so a pod process binds exactly the address the mesh routes to.
/// </summary>
internal sealed record MeshPlan(
    string ConfigFolder,
    ImmutableArray<Resource> Resources,
    ImmutableSortedDictionary<string, IPAddress> Nodes,
    ImmutableArray<ContainerPlan> Containers)
{
    /// <summary>The address plan the pods were placed with (istiod-lite is told the same).</summary>
    public AddressRanges Addresses { get; init; } = AddressRanges.Loopback;

    public const string EchoImage = "ambient/echo";
    public const string SleepImage = "ambient/sleep";

    /// <summary>The image of the pods ambientctl runs for waypoint Gateways (class istio-waypoint), as Istio's
    /// deployment controller runs a waypoint Deployment for each; never written by users.</summary>
    public const string WaypointImage = "ambient/waypoint";

    /// <summary>Parses and validates the folder or file; every problem is reported with file:line, nothing throws.</summary>
    public static MeshPlan? Load(string path, out ImmutableArray<ConfigError> errors, AddressRanges? ranges = null)
    {
        var problems = ImmutableArray.CreateBuilder<ConfigError>();
        var full = Path.TrimEndingDirectorySeparator(Path.GetFullPath(path));
        List<string> paths;
        if (File.Exists(full))
        {
            paths = [full];
        }
        else if (Directory.Exists(full))
        {
            paths = EnumerateYaml(full);
            if (paths.Count == 0) problems.Add(new ConfigError(new SourceLocation(full, 0), "-f", "no *.yaml or *.yml files in the folder"));
        }
        else
        {
            errors = [new ConfigError(new SourceLocation(full, 0), "-f", "no such file or folder")];
            return null;
        }
        var files = new List<FileContribution>();
        foreach (var file in paths)
        {
            string text;
            try
            {
                text = File.ReadAllText(file);
            }
            catch (Exception e) when (e is IOException or UnauthorizedAccessException)
            {
                problems.Add(new ConfigError(new SourceLocation(file, 0), "", $"cannot read: {e.Message}"));
                continue;
            }
            var parsed = ManifestParser.Parse(file, text);
            files.Add(new FileContribution(file, parsed.Resources, parsed.Errors));
        }
        var merged = ConfigMerge.Merge(1, files);
        problems.AddRange(merged.Errors);
        var pods = Plan(merged.Resources, ranges);
        problems.AddRange(pods.Problems);
        if (pods.Containers.IsEmpty && problems.Count == 0)
        {
            problems.Add(new ConfigError(new SourceLocation(full, 0), "-f", "declares no pods; nothing to run"));
        }
        errors = problems.ToImmutable();
        if (!errors.IsEmpty) return null;
        return new MeshPlan(full, merged.Resources, pods.Nodes, pods.Containers) { Addresses = pods.Addresses };
    }

    /// <summary>
    /// The processes a set of resources asks for, and what keeps a pod from running (each problem leaves out only
    /// its own container). Strict `local up` refuses any problem; the running supervisor starts what it can.
    /// </summary>
    /// <param name="ranges">The address plan; null: loopback, nodes from <see cref="NodeAddressBase"/>.</param>
    internal static PodPlan Plan(ImmutableArray<Resource> resources, AddressRanges? ranges = null)
    {
        var problems = ImmutableArray.CreateBuilder<ConfigError>();
        if (ranges is null)
        {
            var firstNodeOctet = NodeAddressBase.FromEnvironment(out var baseError);
            if (baseError is not null) problems.Add(baseError);
            ranges = AddressRanges.LoopbackFrom(firstNodeOctet);
        }
        var assignment = LoopbackAddressAllocator.AssignAll(resources, ranges);
        problems.AddRange(assignment.Problems);

        var namespaces = new Dictionary<string, NamespaceResource>(StringComparer.Ordinal);
        foreach (var r in resources)
        {
            if (r is NamespaceResource ns) namespaces[ns.Metadata.Name] = ns;
        }
        var containers = ImmutableArray.CreateBuilder<ContainerPlan>();
        foreach (var r in resources)
        {
            if (r is not PodResource pod) continue;
            if (string.IsNullOrEmpty(pod.NodeName))
            {
                problems.Add(new ConfigError(pod.Source, "spec.nodeName",
                    $"pod {pod.Metadata.Namespace}/{pod.Metadata.Name} names no node; the local mesh runs one ztunnel per spec.nodeName"));
            }
            namespaces.TryGetValue(pod.Metadata.Namespace, out var nsResource);
            if (nsResource is null && pod.Metadata.Namespace != "default")
            {
                problems.Add(new ConfigError(pod.Source, "metadata.namespace",
                    $"namespace '{pod.Metadata.Namespace}' is not declared (add a Namespace document)"));
            }
            var address = assignment.PodAddress(pod.Metadata.Namespace, pod.Metadata.Name);
            if (ranges.Mode == NetworkMode.Loopback && (address is null || !IPAddress.IsLoopback(address)))
            {
                problems.Add(new ConfigError(pod.Source, "status.podIP",
                    $"pod {pod.Metadata.Namespace}/{pod.Metadata.Name} needs a loopback address (127.x.y.z) to run locally, not {address}"));
                continue;
            }
            if (address is null || ranges.Mode == NetworkMode.Netns && !InNodeRange(address, pod.NodeName, assignment, ranges))
            {
                // Without a node there is nothing to say beyond spec.nodeName's problem above.
                if (!string.IsNullOrEmpty(pod.NodeName))
                {
                    problems.Add(new ConfigError(pod.Source, "status.podIP",
                        $"pod {pod.Metadata.Namespace}/{pod.Metadata.Name} needs an address in node {pod.NodeName}'s pod range to run in a network namespace, not {address?.ToString() ?? "none"}"));
                }
                // Its containers' problems too, as loopback mode reports them: one run shows everything to fix.
                foreach (var c in pod.Containers)
                {
                    if (CheckRunnable(pod, c) is { } containerProblem) problems.Add(containerProblem);
                }
                continue;
            }
            var inMesh = MeshBuilder.IsEnrolled(pod, nsResource);
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
                    InMesh = inMesh,
                    Ports = c.Ports.Select(p => p.Port).Distinct().ToImmutableArray(),
                    App = pod.Metadata.Label("app"),
                });
            }
        }
        foreach (var waypoint in assignment.Waypoints)
        {
            if (WaypointContainer(waypoint, assignment) is { } plan) containers.Add(plan);
        }
        var nodes = ImmutableSortedDictionary.CreateRange(StringComparer.Ordinal, assignment.Nodes);
        return new PodPlan(nodes, containers.ToImmutable(), problems.ToImmutable()) { Addresses = ranges };
    }

    /// <summary>Netns mode: the address is in the /24 whose gateway is the node's address (so its bridge routes it).</summary>
    private static bool InNodeRange(IPAddress? address, string? node, LoopbackAssignment assignment, AddressRanges ranges)
    {
        if (address is null || string.IsNullOrEmpty(node) || assignment.NodeAddress(node) is not { } gateway) return false;
        if (!LoopbackAddressAllocator.TryToUInt32(address, out var a) || !LoopbackAddressAllocator.TryToUInt32(gateway, out var g)) return false;
        return (a & 0xffffff00) == (g & 0xffffff00) && a != g && (a & 0xff) is not (0 or 255) && ranges.PodCidr.Contains(address);
    }

    /// <summary>
    /// The waypoint pod of a Gateway: at the address and on the node istiod-lite publishes for it (both computed by
    /// the shared allocator), with the Gateway's name as its service account, serving HBONE on 15008 and readiness
    /// on 15021. Not captured by the ztunnel: the waypoint terminates its own tunnels.
    /// </summary>
    private static ContainerPlan? WaypointContainer(WaypointPlacement waypoint, LoopbackAssignment assignment)
    {
        var address = assignment.PodAddress(waypoint.Namespace, waypoint.PodName);
        if (address is null || waypoint.Node.Length == 0) return null; // the allocator reported why
        return new ContainerPlan(waypoint.Namespace, waypoint.PodName, "waypoint", waypoint.Node, address, waypoint.Name,
            WaypointImage, [], [], MeshPorts.Hbone, ImmutableSortedDictionary<string, string>.Empty, waypoint.Gateway.Source)
        {
            Ports = [MeshPorts.Hbone, MeshPorts.Readiness],
            App = waypoint.Name,
        };
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

    private static List<string> EnumerateYaml(string folder)
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

using System.Collections.Immutable;
using System.Diagnostics;
using System.Globalization;
using Ambient.Core.Config;
using Ambient.Core.Model;
using Ambient.Core.Xds;
using Ambient.Istiod.Authz;
using Ambient.Istiod.Discovery;
using static Ambient.Bench.Model.SyntheticMesh;

namespace Ambient.Bench.Kube;

/// <summary>
/// <c>Ambient.Bench generation-probe [--pods N] [--services M] [--rounds K]</c>: what one config generation costs inside
/// istiod-lite, phase by phase, for the kube-scale mesh (10 namespaces, pods spread over the services by app label,
/// explicit pod IPs and cluster IPs, as the Kubernetes source yields them). Each round flips one pod's readiness and
/// runs the steps MeshController and a delta xDS session run: policies, MeshBuilder.Build, Attach, DiscoveryState.Publish
/// (the address resource set) and the diff a session sends. Prints the median and worst per phase, in ms. <c>--no-cache</c>
/// builds without a <see cref="MeshBuildCache"/>.
/// </summary>
internal static class GenerationProbe
{
    private static readonly SourceLocation Source = new("Pod", 0);
    private static readonly ImmutableSortedDictionary<string, string> NoMap = ImmutableSortedDictionary<string, string>.Empty;

    public static int Run(string[] args)
    {
        var pods = Option(args, "--pods", 10_000);
        var services = Option(args, "--services", 1_000);
        var rounds = Option(args, "--rounds", 30);
        const int namespaces = 10;
        var config = Generate(pods, services, namespaces);
        var root = AuthorizationPolicyConverter.DefaultRootNamespace;
        // As MeshController builds: with the cache of the previous build, unless --no-cache.
        var cache = Array.IndexOf(args, "--no-cache") >= 0 ? null : new MeshBuildCache();

        var started = Stopwatch.GetTimestamp();
        var firstPolicies = PolicySet.Build(config, root);
        var first = firstPolicies.Attach(MeshBuilder.Build(config, null, cache), root);
        var state = new DiscoveryState(first, firstPolicies.ForZtunnel, firstPolicies.ForWaypoints(first));
        Console.WriteLine($"generation-probe: {pods} pods, {services} services; first build + resource set {Stopwatch.GetElapsedTime(started).TotalMilliseconds:F0} ms");

        string[] phases = ["policies", "MeshBuilder.Build", "Attach", "DiscoveryState.Publish", "session diff", "total"];
        var times = new double[phases.Length][];
        for (var i = 0; i < phases.Length; i++) times[i] = new double[rounds];
        var podIndex = config.FindIndex(static r => r is PodResource);
        var allocated = GC.GetAllocatedBytesForCurrentThread();
        int[] collections = [GC.CollectionCount(0), GC.CollectionCount(1), GC.CollectionCount(2)];
        for (var round = 0; round < rounds; round++)
        {
            var index = podIndex + (round * 37) % pods;
            var pod = (PodResource)config[index];
            config[index] = pod with { Ready = !pod.Ready };
            var before = state.Current.ResourcesFor(XdsTypeUrls.Address)!;
            var t0 = Stopwatch.GetTimestamp();
            var policies = PolicySet.Build(config, root);
            var t1 = Stopwatch.GetTimestamp();
            var built = MeshBuilder.Build(config, null, cache);
            var t2 = Stopwatch.GetTimestamp();
            var snapshot = policies.Attach(built, root);
            var t3 = Stopwatch.GetTimestamp();
            var generation = state.Publish(snapshot, policies.ForZtunnel, policies.ForWaypoints(snapshot));
            var t4 = Stopwatch.GetTimestamp();
            var delta = XdsResourceSet.Diff(before, generation.ResourcesFor(XdsTypeUrls.Address)!);
            var t5 = Stopwatch.GetTimestamp();
            if (delta.Resources.Length != 1) throw new InvalidOperationException($"expected one changed resource, got {delta.Resources.Length}");
            long[] marks = [t0, t1, t2, t3, t4, t5];
            for (var p = 0; p < 5; p++) times[p][round] = Stopwatch.GetElapsedTime(marks[p], marks[p + 1]).TotalMilliseconds;
            times[5][round] = Stopwatch.GetElapsedTime(t0, t5).TotalMilliseconds;
        }
        allocated = GC.GetAllocatedBytesForCurrentThread() - allocated;
        Console.WriteLine($"  allocated {allocated / rounds / 1048576.0:F1} MiB per generation; GCs over {rounds} generations: "
            + $"gen0 {GC.CollectionCount(0) - collections[0]}, gen1 {GC.CollectionCount(1) - collections[1]}, gen2 {GC.CollectionCount(2) - collections[2]}"
            + (cache is null ? "" : $"; workloads reused by the last build: {cache.LastReused}, its addresses reused: {cache.LastAssignmentReused}"));
        for (var p = 0; p < phases.Length; p++)
        {
            Array.Sort(times[p]);
            Console.WriteLine($"  {phases[p],-24} median {times[p][rounds / 2],7:F2} ms   max {times[p][^1],7:F2} ms");
        }
        return 0;
    }

    /// <summary>The kube-scale bench's objects as the Kubernetes source converts them: pod p serves service p % services.</summary>
    internal static List<Resource> Generate(int pods, int services, int namespaces)
    {
        var resources = new List<Resource>(pods + services + namespaces);
        for (var n = 0; n < namespaces; n++)
        {
            resources.Add(new NamespaceResource("v1", Meta("", "scale-" + n, ("istio.io/dataplane-mode", "ambient")), Source));
        }
        for (var s = 0; s < services; s++)
        {
            resources.Add(new ServiceResource("v1", Meta("scale-" + (s % namespaces), "svc-" + s), Source, "ClusterIP",
                $"10.96.{s / 250}.{s % 250 + 1}", Map(("app", "svc-" + s)), [new ServicePortSpec("http", 80, TargetPort.FromNumber(8080), null, "TCP")]));
        }
        for (var p = 0; p < pods; p++)
        {
            var ip = $"10.{244 + p / 65000}.{p / 250 % 256}.{p % 250 + 1}";
            resources.Add(new PodResource("v1", Meta("scale-" + (p % namespaces), "pod-" + p, ("app", "svc-" + (p % services))), Source, "default",
                $"node-{p % 100:D2}", [new ContainerSpec("app", "app", [], [], [new ContainerPort(null, 8080, "TCP")], NoMap)], ip)
            {
                Uid = "uid-" + p.ToString(CultureInfo.InvariantCulture),
            });
        }
        // The source hands resources over sorted by Resource.Key.
        resources.Sort(static (a, b) => string.CompareOrdinal(a.Key, b.Key));
        return resources;
    }

    private static int Option(string[] args, string name, int fallback)
    {
        var i = Array.IndexOf(args, name);
        return i >= 0 && i + 1 < args.Length ? int.Parse(args[i + 1], CultureInfo.InvariantCulture) : fallback;
    }
}

using Ambient.Core.Config;
using Ambient.Core.Identity;
using Ambient.Core.Memory;
using Ambient.Core.Model;
using Ambient.Istiod.Authz;
using Ambient.Istiod.Ca;
using Ambient.Istiod.Discovery;

namespace Ambient.Istiod;

/// <summary>
/// Glue between the config source and everything that serves from the mesh: each config change builds a new
/// <see cref="MeshSnapshot"/>, publishes it to workload discovery, and makes sure every node has a token.
/// Also answers the CA's "does this node run a pod with that identity" from the same snapshot.
/// The source is any <see cref="IConfigSource"/> (a YAML folder today, the Kubernetes API later), started before the
/// controller is built so the first snapshot is the loaded config.
/// </summary>
internal sealed partial class MeshController : IWorkloadDirectory, IDisposable
{
    private readonly IConfigSource _source;
    private readonly MeshOptions _options;
    private readonly NodeTokens _tokens;
    private readonly ILogger<MeshController> _logger;
    private readonly Lock _rebuildLock = new();
    // Builds run one at a time (the constructor, then under _rebuildLock): each reuses the last one's unchanged workloads.
    private readonly MeshBuildCache _buildCache = new();
    private readonly MemoryTrimmer _trimmer;
    private readonly string _rootNamespace;
    private PolicySet _policies = PolicySet.Empty;
    private PodIndex _pods = PodIndex.Empty;

    /// <param name="rootNamespace">Istio's root namespace: its policies without a selector are mesh-wide, its selector
    /// policies select workloads of every namespace.</param>
    public MeshController(IConfigSource source, MeshOptions options, NodeTokens tokens, ILogger<MeshController> logger,
        string rootNamespace = AuthorizationPolicyConverter.DefaultRootNamespace)
    {
        _source = source;
        _options = options;
        _tokens = tokens;
        _logger = logger;
        _rootNamespace = rootNamespace;
        var config = source.Current;
        var (initial, policies) = BuildSnapshot(config);
        Volatile.Write(ref _policies, policies);
        Discovery = new DiscoveryState(initial, policies.ForZtunnel, policies.ForWaypoints(initial));
        EnsureNodeTokens(Discovery.Current.Snapshot);
        // After a large part of the mesh is removed (at least 1000 workloads and services, down to half), the old
        // config, snapshots and xDS bytes sit in gen2 and the large object heap until something compacts them; 5 s
        // without a further drop lets the sessions push the removals first.
        _trimmer = new MemoryTrimmer(logger, "workloads and services", minimumDrop: 1000, quietPeriod: TimeSpan.FromSeconds(5));
        _trimmer.SetLevel(Size(Discovery.Current.Snapshot));
        _source.Changed += OnConfigChanged;
    }

    public DiscoveryState Discovery { get; }

    /// <summary>Raised after each published mesh (on the config source's thread), e.g. to write its status back to the API.</summary>
    public event Action<MeshSnapshot>? Published;

    public MeshSnapshot Snapshot => Discovery.Current.Snapshot;

    /// <summary>The AuthorizationPolicies and PeerAuthentications of the published config, converted (for the debug endpoint).</summary>
    public PolicySet Policies => Volatile.Read(ref _policies);

    public bool HasPodOnNode(string node, SpiffeId identity) =>
        identity.TrustDomain == _options.TrustDomain && Snapshot.HasPodOnNode(node, identity.Namespace, identity.ServiceAccount);

    public bool TryGetPod(string @namespace, string name, out KnownPod pod)
    {
        var pods = Volatile.Read(ref _pods);
        var config = _source.Current;
        if (!ReferenceEquals(pods.Config, config))
        {
            // Indexed once per config generation, on the first CA request that needs it (Kubernetes mode only).
            pods = new PodIndex(config);
            Volatile.Write(ref _pods, pods);
        }
        return pods.Pods.TryGetValue((@namespace, name), out pod);
    }

    private sealed class PodIndex
    {
        public PodIndex(ConfigSnapshot config)
        {
            Config = config;
            var pods = new Dictionary<(string, string), KnownPod>();
            foreach (var resource in config.Resources)
            {
                if (resource is PodResource p)
                {
                    pods[(p.Metadata.Namespace, p.Metadata.Name)] = new KnownPod(p.Uid, p.ServiceAccountName, p.NodeName);
                }
            }
            Pods = pods;
        }

        public ConfigSnapshot Config { get; }
        public IReadOnlyDictionary<(string, string), KnownPod> Pods { get; }

        public static PodIndex Empty { get; } = new(ConfigSnapshot.Empty);
    }

    private void OnConfigChanged(ConfigSnapshot config)
    {
        lock (_rebuildLock)
        {
            var (snapshot, policies) = BuildSnapshot(config);
            Volatile.Write(ref _policies, policies);
            var generation = Discovery.Publish(snapshot, policies.ForZtunnel, policies.ForWaypoints(snapshot));
            EnsureNodeTokens(snapshot);
            Log.Published(_logger, generation.Number, snapshot.Workloads.Length, snapshot.Services.Length, config.Errors.Length);
            _trimmer.SetLevel(Size(snapshot));
            Published?.Invoke(snapshot);
        }
    }

    private static int Size(MeshSnapshot snapshot) => snapshot.Workloads.Length + snapshot.Services.Length;

    private (MeshSnapshot Snapshot, PolicySet Policies) BuildSnapshot(ConfigSnapshot config)
    {
        var started = System.Diagnostics.Stopwatch.GetTimestamp();
        var policies = PolicySet.Build(config.Resources, _rootNamespace);
        var snapshot = policies.Attach(MeshBuilder.Build(config.Resources, _options, _buildCache), _rootNamespace);
        Log.Built(_logger, config.Generation, snapshot.Workloads.Length, snapshot.Services.Length,
            System.Diagnostics.Stopwatch.GetElapsedTime(started).TotalMilliseconds);
        foreach (var p in policies.Policies)
        {
            foreach (var warning in p.Warnings)
            {
                Log.PolicyWarning(_logger, p.Key, warning);
            }
        }
        foreach (var p in policies.PeerAuthentications)
        {
            foreach (var warning in p.Warnings)
            {
                Log.PeerAuthenticationWarning(_logger, p.Key, warning);
            }
        }
        return (snapshot, policies);
    }

    private void EnsureNodeTokens(MeshSnapshot snapshot)
    {
        foreach (var node in snapshot.NodeAddresses.Keys)
        {
            _tokens.GetOrCreate(node);
        }
    }

    public void Dispose()
    {
        _source.Changed -= OnConfigChanged;
        _trimmer.Dispose();
    }

    private static partial class Log
    {
        [LoggerMessage(1, LogLevel.Information, "mesh built from config generation {ConfigGeneration}: {Workloads} workloads, {Services} services in {Milliseconds:F1} ms")]
        public static partial void Built(ILogger logger, long configGeneration, int workloads, int services, double milliseconds);

        [LoggerMessage(2, LogLevel.Information, "discovery generation {Generation} published: {Workloads} workloads, {Services} services, {Errors} config errors")]
        public static partial void Published(ILogger logger, long generation, int workloads, int services, int errors);

        [LoggerMessage(3, LogLevel.Warning, "AuthorizationPolicy {Policy}: {Warning}")]
        public static partial void PolicyWarning(ILogger logger, string policy, string warning);

        [LoggerMessage(4, LogLevel.Warning, "PeerAuthentication {Policy}: {Warning}")]
        public static partial void PeerAuthenticationWarning(ILogger logger, string policy, string warning);
    }
}

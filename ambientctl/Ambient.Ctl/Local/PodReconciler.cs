using Ambient.Config.Yaml;
using Ambient.Core.Config;
using Microsoft.Extensions.Logging.Abstractions;

namespace Ambient.Ctl.Local;

/// <summary>
/// The supervisor's kubelet. It watches the config exactly as istiod-lite does (the same <see cref="FolderConfigSource"/>,
/// so the same last good state of each file) and, on each change, starts the pods that appeared, stops the pods that
/// went away, restarts a pod whose process changed (image, command, environment), and records enrolment and the
/// config's current errors and warnings in the state file for `exec` and `status`. A pod its new config cannot run
/// (an unknown image, say) keeps its last good process; a new one waits until its config is fixed. Labels never
/// restart anything: enrolment is the ztunnel's business.
/// </summary>
internal sealed class PodReconciler : IAsyncDisposable
{
    /// <summary>
    /// How long the config folder must be quiet before the reconciler acts (istiod-lite waits 150 ms). A label switch
    /// waits for it; `ambientctl label` saves with one rename, and an editor's truncate-then-write comes within a
    /// millisecond or two (a file read half-way that does not parse keeps its last good content).
    /// </summary>
    internal static readonly TimeSpan Debounce = TimeSpan.FromMilliseconds(30);

    private readonly LocalMesh _mesh;
    private readonly FolderConfigSource _source;
    private readonly SemaphoreSlim _changed = new(0, int.MaxValue);
    private readonly CancellationTokenSource _stop;
    private ConfigSnapshot? _latest;
    private Task _loop = Task.CompletedTask;

    private PodReconciler(LocalMesh mesh, CancellationToken meshStopping)
    {
        _mesh = mesh;
        _stop = CancellationTokenSource.CreateLinkedTokenSource(meshStopping);
        _source = new FolderConfigSource(mesh.Plan.ConfigFolder, NullLogger<FolderConfigSource>.Instance, Debounce);
    }

    public static PodReconciler Start(LocalMesh mesh, CancellationToken meshStopping)
    {
        var reconciler = new PodReconciler(mesh, meshStopping);
        reconciler._source.Changed += reconciler.OnChanged;
        // The first load raises Changed too: whatever was edited while the mesh was starting is acted on at once.
        reconciler._source.Start();
        reconciler._loop = Task.Run(reconciler.RunAsync);
        return reconciler;
    }

    private void OnChanged(ConfigSnapshot config)
    {
        Volatile.Write(ref _latest, config);
        _changed.Release();
    }

    private async Task RunAsync()
    {
        while (true)
        {
            try
            {
                await _changed.WaitAsync(_stop.Token).ConfigureAwait(false);
            }
            catch (OperationCanceledException)
            {
                return;
            }
            while (_changed.Wait(0)) { } // several changes queued: the latest covers them all
            var config = Volatile.Read(ref _latest)!;
            try
            {
                await ReconcileAsync(config).ConfigureAwait(false);
            }
            catch (Exception e) when (e is not OperationCanceledException)
            {
                _mesh.Report($"acting on config generation {config.Generation} failed: {e.Message}");
            }
        }
    }

    internal async Task ReconcileAsync(ConfigSnapshot config)
    {
        var plan = MeshPlan.Plan(config.Resources, _mesh.Plan.Addresses);
        var errors = new List<ConfigError>(config.Errors);
        errors.AddRange(plan.Problems);
        if (!NodesFit(plan, _mesh.Plan))
        {
            errors.Add(new ConfigError(new SourceLocation(_mesh.Plan.ConfigFolder, 0), "spec.nodeName",
                $"the pods now name nodes {string.Join(", ", plan.Nodes.Keys)}; this local mesh runs ztunnels for {string.Join(", ", _mesh.Plan.Nodes.Keys)} " +
                "(nodes are fixed at `local up`): restart it with `ambientctl local down` and `local up` to add one"));
        }

        var desired = new Dictionary<string, ContainerPlan>(StringComparer.Ordinal);
        foreach (var c in plan.Containers)
        {
            if (_mesh.Plan.Nodes.TryGetValue(c.Node, out var address) && plan.Nodes.TryGetValue(c.Node, out var now) && address.Equals(now))
            {
                desired[LocalMesh.ComponentName(c)] = c;
            }
            else if (!_mesh.Plan.Nodes.ContainsKey(c.Node))
            {
                errors.Add(new ConfigError(c.Source, "spec.nodeName", $"node '{c.Node}' has no ztunnel in this local mesh; pod {c.DisplayName} is not started"));
            }
        }
        var declared = new HashSet<string>(StringComparer.Ordinal);
        foreach (var r in config.Resources)
        {
            if (r is PodResource pod) declared.Add(pod.Metadata.Namespace + "/" + pod.Metadata.Name);
        }

        var running = _mesh.RunningPods();
        foreach (var (name, old) in running)
        {
            if (desired.ContainsKey(name) || declared.Contains(old.Namespace + "/" + old.Pod)) continue; // still wanted, or kept as last good
            await _mesh.StopPodAsync(name, "its pod left the config").ConfigureAwait(false);
        }
        var inMesh = new Dictionary<string, bool>(StringComparer.Ordinal);
        foreach (var (name, c) in desired)
        {
            inMesh[name] = c.InMesh;
            if (running.TryGetValue(name, out var old))
            {
                if (old.SameProcess(c)) continue;
                await _mesh.StopPodAsync(name, "its pod spec changed; starting it again").ConfigureAwait(false);
            }
            try
            {
                await _mesh.StartPodAsync(c).ConfigureAwait(false);
            }
            catch (Exception e) when (e is LocalMeshException or InvalidOperationException)
            {
                errors.Add(new ConfigError(c.Source, "", $"pod {c.DisplayName} could not be started: {e.Message}"));
            }
        }
        errors.Sort(static (a, b) => SourceOrder.Compare(a.Source, b.Source));
        await _mesh.UpdateViewAsync(inMesh, errors.ConvertAll(e => e.ToString()), ConfigWarnings.Find(config).Select(w => w.ToString()).ToList(),
            config.Resources).ConfigureAwait(false);
    }

    /// <summary>Every node the config names runs a ztunnel here, at the address istiod-lite now gives it (a node left without pods is fine).</summary>
    private static bool NodesFit(PodPlan now, MeshPlan started)
    {
        foreach (var (node, address) in now.Nodes)
        {
            if (!started.Nodes.TryGetValue(node, out var running) || !running.Equals(address)) return false;
        }
        return true;
    }

    public async ValueTask DisposeAsync()
    {
        await _stop.CancelAsync().ConfigureAwait(false);
        await _loop.ConfigureAwait(false);
        _source.Changed -= OnChanged;
        _source.Dispose();
        _stop.Dispose();
        _changed.Dispose();
    }
}

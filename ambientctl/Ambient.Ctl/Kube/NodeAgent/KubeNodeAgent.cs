using System.Collections.Immutable;
using Ambient.Cni;
using Ambient.Config.Kubernetes;
using Ambient.Core.Config;
using Ambient.Core.Model;
using Ambient.Ctl.Local.NodeAgent;
using k8s;
using k8s.Autorest;
using k8s.Models;
using Microsoft.Extensions.Logging;

namespace Ambient.Ctl.Kube.NodeAgent;

/// <summary>How `ambientctl node-agent` runs on one node.</summary>
/// <param name="HostRoot">Where the host's root is mounted in the agent's container ("/" when the agent runs on the host):
/// CNI_NETNS paths the plugin sends are host paths.</param>
internal sealed record KubeNodeAgentOptions(string Node, string ClusterId, string HostRoot, string HostProc, TimeSpan Resync);

/// <summary>
/// The node agent of Kubernetes mode, istio-cni's ambient node agent: it decides which pods of its node are in the
/// mesh (MeshBuilder.IsEnrolled on the watched Pods and Namespaces) and has <see cref="InPodNodeAgent"/> - the same
/// agent `local up --network netns` runs - capture them. A new pod is enrolled while its sandbox is created (the
/// CNI plugin's ADD waits for it, so the pod's containers start captured); a pod that existed before the agent, or is
/// labelled later, is enrolled from the watch, its namespace found through the host's /proc; a pod unlabelled,
/// finished or deleted is released (rules removed, then the ztunnel's Del).
/// </summary>
internal sealed partial class KubeNodeAgent : IObjectSink, IAsyncDisposable
{
    private const string PodKind = "Pod";
    private const string NamespaceKind = "Namespace";

    private readonly IKubernetes _client;
    private readonly KubeNodeAgentOptions _options;
    private readonly InPodNodeAgent _agent;
    private readonly HostProcNetns _proc;
    private readonly ILogger _logger;
    private readonly List<IKindWatch> _watches = [];
    private readonly List<Task> _tasks = [];
    private readonly CancellationTokenSource _stop = new();
    private readonly SemaphoreSlim _changed = new(0, int.MaxValue);

    // One change to the enrolled set at a time: a CNI ADD and a reconcile must not undo each other.
    private readonly SemaphoreSlim _enrolling = new(1, 1);

    private readonly Lock _lock = new();
    private readonly Dictionary<string, PodResource> _pods = new(StringComparer.Ordinal);
    private readonly Dictionary<string, NamespaceResource> _namespaces = new(StringComparer.Ordinal);

    // Namespace paths by pod (namespace/name): what the plugin sent (with the pod's uid), then what /proc showed.
    private readonly Dictionary<string, (string? PodUid, string Netns)> _netns = new(StringComparer.Ordinal);

    public KubeNodeAgent(IKubernetes client, KubeNodeAgentOptions options, InPodNodeAgent agent, ILogger logger)
    {
        _client = client;
        _options = options;
        _agent = agent;
        _proc = new HostProcNetns(options.HostProc);
        _logger = logger;
        var selector = "spec.nodeName=" + options.Node;
        _watches.Add(new KindWatch<V1Namespace, V1NamespaceList>(NamespaceKind, (c, rv, w, t, ct) => client.CoreV1.ListNamespaceWithHttpMessagesAsync(
            allowWatchBookmarks: w ? true : null, continueParameter: c, limit: w ? null : PageSize, resourceVersion: rv, timeoutSeconds: t, watch: w ? true : null, cancellationToken: ct),
            static o => new ObjectEntry(KubernetesObjects.Namespace(o)), this, logger));
        _watches.Add(new KindWatch<V1Pod, V1PodList>(PodKind, (c, rv, w, t, ct) => client.CoreV1.ListPodForAllNamespacesWithHttpMessagesAsync(
            allowWatchBookmarks: w ? true : null, continueParameter: c, fieldSelector: selector, limit: w ? null : PageSize, resourceVersion: rv,
            timeoutSeconds: t, watch: w ? true : null, cancellationToken: ct),
            static o => new ObjectEntry(PodOfNode(o)), this, logger));
    }

    private const int PageSize = 500;

    public InPodNodeAgent Agent => _agent;

    /// <summary>Starts the watches and completes once both listed (and the first reconcile ran).</summary>
    public async Task StartAsync(CancellationToken cancellationToken)
    {
        foreach (var watch in _watches) _tasks.Add(Task.Run(() => watch.RunAsync(_stop.Token)));
        await Task.WhenAll(_watches.ConvertAll(static w => w.Synced)).WaitAsync(cancellationToken).ConfigureAwait(false);
        await ReconcileAsync(_stop.Token).ConfigureAwait(false);
        _tasks.Add(Task.Run(() => ReconcileLoopAsync(_stop.Token)));
    }

    /// <summary>
    /// A pod as the agent needs it: its labels, node, service account, uid. Unlike the mesh's conversion it keeps pods
    /// without an address (a sandbox being created has none yet); finished and host-network pods are never captured.
    /// </summary>
    internal static ObjectConversion PodOfNode(V1Pod pod)
    {
        if (pod.Status?.Phase is "Succeeded" or "Failed" || pod.Spec?.HostNetwork == true) return ObjectConversion.None;
        var meta = KubernetesObjects.Meta(pod.Metadata, clusterScoped: false);
        return new ObjectConversion(new PodResource(pod.ApiVersion ?? "v1", meta, SourceLocation.ForObject(PodKind, meta.Namespace, meta.Name),
            KubernetesObjects.ServiceAccountOf(pod.Spec), pod.Spec?.NodeName, [], pod.Status?.PodIP) { Uid = pod.Metadata?.Uid }, []);
    }

    void IObjectSink.Replace(string kind, Dictionary<string, ObjectEntry> objects)
    {
        lock (_lock)
        {
            if (kind == PodKind)
            {
                _pods.Clear();
                foreach (var (key, entry) in objects) SetPod(key, entry);
            }
            else
            {
                _namespaces.Clear();
                foreach (var (key, entry) in objects) SetNamespace(key, entry);
            }
        }
        Wake();
    }

    void IObjectSink.Apply(string kind, string key, ObjectEntry? entry)
    {
        lock (_lock)
        {
            if (kind == PodKind) SetPod(key, entry);
            else SetNamespace(key, entry);
        }
        Wake();
    }

    void IObjectSink.SetProblem(string kind, string? problem)
    {
        if (problem is not null) LogWatchProblem(_logger, kind, problem);
    }

    // Under _lock.
    private void SetPod(string key, ObjectEntry? entry)
    {
        if (entry?.Conversion.Resource is PodResource pod) _pods[key] = pod;
        else _pods.Remove(key);
    }

    // Under _lock.
    private void SetNamespace(string key, ObjectEntry? entry)
    {
        if (entry?.Conversion.Resource is NamespaceResource ns) _namespaces[key] = ns;
        else _namespaces.Remove(key);
    }

    private void Wake()
    {
        try { _changed.Release(); }
        catch (SemaphoreFullException) { }
    }

    private async Task ReconcileLoopAsync(CancellationToken cancellationToken)
    {
        while (!cancellationToken.IsCancellationRequested)
        {
            try
            {
                // Also every Resync: a pod whose processes had not started yet is looked for again.
                await _changed.WaitAsync(_options.Resync, cancellationToken).ConfigureAwait(false);
                while (_changed.Wait(0)) { }
                await ReconcileAsync(cancellationToken).ConfigureAwait(false);
            }
            catch (OperationCanceledException) when (cancellationToken.IsCancellationRequested)
            {
                return;
            }
        }
    }

    /// <summary>Makes the enrolled pods those of this node the labels put in the mesh whose namespace is known.</summary>
    internal async Task ReconcileAsync(CancellationToken cancellationToken)
    {
        await _enrolling.WaitAsync(cancellationToken).ConfigureAwait(false);
        try
        {
            var wanted = new Dictionary<string, (ZdsPod Pod, string NetnsPath)>(StringComparer.Ordinal);
            foreach (var pod in InMeshPods())
            {
                var key = pod.Metadata.Namespace + "/" + pod.Metadata.Name;
                if (NetnsOf(key, pod.Uid) is not { } netns)
                {
                    LogNoNetns(_logger, key, _proc.ProcRoot);
                    continue;
                }
                var zds = ZdsPodOf(pod);
                wanted[zds.Uid] = (zds, netns);
            }
            try
            {
                await _agent.ReconcileAsync(wanted, cancellationToken).ConfigureAwait(false);
            }
            catch (Exception e) when (e is ZdsException or NetnsCommandException or IOException or AggregateException)
            {
                LogReconcileFailed(_logger, e.Message);
            }
        }
        finally
        {
            _enrolling.Release();
        }
    }

    private List<PodResource> InMeshPods()
    {
        List<PodResource> pods = [];
        lock (_lock)
        {
            foreach (var pod in _pods.Values)
            {
                if (pod.NodeName != _options.Node) continue;
                _namespaces.TryGetValue(pod.Metadata.Namespace, out var ns);
                if (MeshBuilder.IsEnrolled(pod, ns)) pods.Add(pod);
            }
        }
        return pods;
    }

    /// <summary>The pod's namespace path as the agent opens it: from the plugin if it told us, else from /proc (remembered while it exists).</summary>
    private string? NetnsOf(string key, string? podUid)
    {
        lock (_lock)
        {
            if (_netns.TryGetValue(key, out var known) && (known.PodUid is null || podUid is null || known.PodUid == podUid) && File.Exists(known.Netns))
            {
                return known.Netns;
            }
            _netns.Remove(key);
        }
        if (podUid is null || _proc.Find(podUid) is not { } found) return null;
        lock (_lock) _netns[key] = (podUid, found);
        return found;
    }

    private ZdsPod ZdsPodOf(PodResource pod) => ZdsPod.For(_options.ClusterId, pod.Metadata.Namespace, pod.Metadata.Name, pod.ServiceAccountName);

    /// <summary>The plugin's ADD and DEL (<see cref="CniEventServer"/>).</summary>
    public async Task<CniAgentResponse> HandleAsync(CniAgentRequest request, CancellationToken cancellationToken)
    {
        var key = request.PodNamespace + "/" + request.PodName;
        using var stopping = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken, _stop.Token);
        await _enrolling.WaitAsync(stopping.Token).ConfigureAwait(false);
        try
        {
            if (request.Command == "DEL")
            {
                PodResource? known;
                lock (_lock)
                {
                    _netns.Remove(key);
                    _pods.TryGetValue(key, out known);
                }
                var uid = ZdsPod.For(_options.ClusterId, request.PodNamespace, request.PodName, known?.ServiceAccountName ?? "").Uid;
                await _agent.UnenrollAsync(uid, stopping.Token).ConfigureAwait(false);
                return new CniAgentResponse(null, false);
            }
            if (request.Command != "ADD" || string.IsNullOrEmpty(request.Netns)) return new CniAgentResponse($"unknown plugin event '{request.Command}'", false);
            var netns = OnHost(request.Netns);
            lock (_lock) _netns[key] = (request.PodUid, netns);
            var (pod, ns) = await LookUpAsync(request, stopping.Token).ConfigureAwait(false);
            if (pod is null)
            {
                return new CniAgentResponse($"pod {key} is not in the API server (or not on node {_options.Node})", false);
            }
            if (!MeshBuilder.IsEnrolled(pod, ns))
            {
                LogNotInMesh(_logger, key);
                return new CniAgentResponse(null, false);
            }
            await _agent.EnrollAsync(ZdsPodOf(pod), netns, stopping.Token).ConfigureAwait(false);
            return new CniAgentResponse(null, true);
        }
        catch (Exception e) when (e is ZdsException or NetnsCommandException or IOException or UnauthorizedAccessException or HttpOperationException or HttpRequestException)
        {
            LogEventFailed(_logger, request.Command, key, e.Message);
            return new CniAgentResponse(e.Message, false);
        }
        finally
        {
            _enrolling.Release();
        }
    }

    /// <summary>
    /// The pod and its namespace: from the watch, else (the sandbox can be faster than the watch) from the API server;
    /// what was read is kept, so the next reconcile does not release the pod the ADD enrolled.
    /// </summary>
    private async Task<(PodResource? Pod, NamespaceResource? Namespace)> LookUpAsync(CniAgentRequest request, CancellationToken cancellationToken)
    {
        var key = request.PodNamespace + "/" + request.PodName;
        PodResource? pod;
        NamespaceResource? ns;
        lock (_lock)
        {
            _pods.TryGetValue(key, out pod);
            _namespaces.TryGetValue(request.PodNamespace, out ns);
        }
        if (pod is null || (request.PodUid is { Length: > 0 } uid && pod.Uid != uid))
        {
            var read = await _client.CoreV1.ReadNamespacedPodAsync(request.PodName, request.PodNamespace, cancellationToken: cancellationToken).ConfigureAwait(false);
            pod = PodOfNode(read).Resource as PodResource;
            if (pod is null || pod.NodeName != _options.Node) return (null, ns);
            lock (_lock) _pods[key] = pod;
        }
        if (ns is null)
        {
            var read = await _client.CoreV1.ReadNamespaceAsync(request.PodNamespace, cancellationToken: cancellationToken).ConfigureAwait(false);
            ns = KubernetesObjects.Namespace(read).Resource as NamespaceResource;
            if (ns is not null) lock (_lock) _namespaces[request.PodNamespace] = ns;
        }
        return (pod, ns);
    }

    private string OnHost(string hostPath) =>
        _options.HostRoot is "" or "/" ? hostPath : Path.Join(_options.HostRoot, hostPath);

    public async ValueTask DisposeAsync()
    {
        await _stop.CancelAsync().ConfigureAwait(false);
        try { await Task.WhenAll(_tasks).WaitAsync(TimeSpan.FromSeconds(5)).ConfigureAwait(false); }
        catch (Exception e) when (e is OperationCanceledException or TimeoutException) { }
    }

    [LoggerMessage(Level = LogLevel.Warning, Message = "node agent: cannot watch {Kind}: {Problem}")]
    private static partial void LogWatchProblem(ILogger logger, string kind, string problem);

    [LoggerMessage(Level = LogLevel.Information, Message = "node agent: {Pod} is in the mesh but no process of it runs under {Proc} yet; looked for again on the next change")]
    private static partial void LogNoNetns(ILogger logger, string pod, string proc);

    [LoggerMessage(Level = LogLevel.Warning, Message = "node agent: bringing the pods in line with their labels failed (retried on the next change): {Reason}")]
    private static partial void LogReconcileFailed(ILogger logger, string reason);

    [LoggerMessage(Level = LogLevel.Information, Message = "node agent: {Pod} is not in the mesh; its sandbox starts as is")]
    private static partial void LogNotInMesh(ILogger logger, string pod);

    [LoggerMessage(Level = LogLevel.Warning, Message = "node agent: CNI {Command} for {Pod} failed: {Reason}")]
    private static partial void LogEventFailed(ILogger logger, string command, string pod, string reason);
}

using Ambient.Core.Model;
using Ambient.Ctl.Local.Netns;
using Microsoft.Extensions.Logging;

namespace Ambient.Ctl.Local.NodeAgent;

/// <summary>
/// Pod hooks that also hand pods to each node's ztunnel over ZDS: `local up` starts a node's ztunnel with
/// <c>--zds-socket</c> set to what <see cref="Listen"/> returned for that node, and disposes the hooks after every
/// program has stopped.
/// </summary>
internal interface IZdsPodHooks : IPodNetworkHooks, IAsyncDisposable
{
    /// <summary>Starts the node's agent (once) and returns the ZDS socket its ztunnel connects to.</summary>
    string Listen(string node, Action<string> report);

    /// <summary>How many of the node's ztunnel connections got their whole snapshot acked; 0 when no agent runs for it.</summary>
    int ZtunnelSnapshots(string node);
}

/// <summary>
/// The node agents of `local up --network netns` (istio-cni's role, one per node): a pod in the mesh is enrolled in its
/// node's ztunnel before its program starts (the sandbox hook returns once the ztunnel acked it, istio#42850), enrolled
/// or released live when its `istio.io/dataplane-mode` changes, and released before its namespace is deleted. Each
/// node's ZDS socket is in the state folder (zds/NODE.sock).
/// </summary>
internal sealed class LocalNodeAgents(string stateFolder, string clusterId = LocalNodeAgents.DefaultClusterId) : IZdsPodHooks
{
    // Istio's default, as istiod-lite names its workloads (the uid the ztunnel matches an enrolled pod with).
    public const string DefaultClusterId = "Kubernetes";

    // sockaddr_un.sun_path: 108 bytes with the terminating NUL.
    private const int MaxSocketPath = 107;
    private readonly Dictionary<string, InPodNodeAgent> _agents = new(StringComparer.Ordinal);
    private readonly Lock _lock = new();

    internal static string SocketPath(string stateFolder, string node) => Path.Combine(stateFolder, "zds", node + ".sock");

    /// <summary>
    /// Istio's in-pod rules with its DNS capture: an enrolled pod's queries (UDP and TCP port 53, to whatever nameserver
    /// its resolv.conf names) go to the ztunnel's DNS proxy inside the pod; a pod outside the mesh keeps asking the
    /// cluster DNS VIP, which the node DNATs to its ztunnel's node-wide proxy.
    /// </summary>
    internal static NodeAgentOptions Options(string socketPath) => NodeAgentOptions.Default(socketPath, redirectDns: true);

    public string Listen(string node, Action<string> report)
    {
        lock (_lock)
        {
            if (_agents.TryGetValue(node, out var running)) return running.SocketPath;
            var path = SocketPath(stateFolder, node);
            if (System.Text.Encoding.UTF8.GetByteCount(path) > MaxSocketPath)
            {
                throw new LocalMeshException($"the node agent's socket {path} is longer than a Unix socket path may be ({MaxSocketPath} bytes): use a shorter --state folder");
            }
            // Owner-only: whoever can connect to or replace this socket could hand the ztunnel a namespace to serve.
            Ambient.Core.Files.OwnerOnlyFiles.CreateDirectory(Path.GetDirectoryName(path)!);
            var agent = InPodNodeAgent.Start(Options(path), new ReportLogger(report, node));
            _agents[node] = agent;
            return agent.SocketPath;
        }
    }

    public int ZtunnelSnapshots(string node)
    {
        lock (_lock) return _agents.TryGetValue(node, out var agent) ? agent.ZtunnelSnapshots : 0;
    }

    public Task PodSandboxReadyAsync(PodSandbox pod, CancellationToken cancellationToken) =>
        pod.InMesh ? AgentOf(pod).EnrollAsync(ZdsPodOf(pod), pod.NetnsPath, cancellationToken) : Task.CompletedTask;

    public Task PodEnrolmentChangedAsync(PodSandbox pod, CancellationToken cancellationToken) =>
        pod.InMesh
            ? AgentOf(pod).EnrollAsync(ZdsPodOf(pod), pod.NetnsPath, cancellationToken)
            : AgentOf(pod).UnenrollAsync(ZdsPodOf(pod).Uid, cancellationToken);

    public Task PodSandboxRemovingAsync(PodSandbox pod, CancellationToken cancellationToken) =>
        AgentOf(pod).UnenrollAsync(ZdsPodOf(pod).Uid, cancellationToken);

    private ZdsPod ZdsPodOf(PodSandbox pod) => ZdsPod.For(clusterId, pod.Namespace, pod.Pod, pod.ServiceAccount);

    private InPodNodeAgent AgentOf(PodSandbox pod)
    {
        lock (_lock)
        {
            return _agents.TryGetValue(pod.Node, out var agent)
                ? agent
                : throw new InvalidOperationException($"no node agent runs for node {pod.Node} (its ztunnel was not started with one)");
        }
    }

    /// <summary>Stops serving ZDS; enrolled pods keep their rules until their namespaces are deleted.</summary>
    public async ValueTask DisposeAsync()
    {
        InPodNodeAgent[] agents;
        lock (_lock)
        {
            agents = [.. _agents.Values];
            _agents.Clear();
        }
        foreach (var agent in agents)
        {
            var path = agent.SocketPath;
            await agent.DisposeAsync().ConfigureAwait(false);
            try { File.Delete(path); } catch (IOException) { }
        }
    }

    /// <summary>The agent's log lines go where `local up` reports (its console and ambientctl.log).</summary>
    private sealed class ReportLogger(Action<string> report, string name) : ILogger
    {
        public IDisposable? BeginScope<TState>(TState state) where TState : notnull => null;

        public bool IsEnabled(LogLevel logLevel) => logLevel >= LogLevel.Information;

        public void Log<TState>(LogLevel logLevel, EventId eventId, TState state, Exception? exception, Func<TState, Exception?, string> formatter)
        {
            if (!IsEnabled(logLevel)) return;
            report($"{name}: {formatter(state, exception)}{(exception is null ? "" : " (" + exception.Message + ")")}");
        }
    }
}

using System.Globalization;
using System.Net;
using System.Net.Sockets;
using Ambient.Core;
using Ambient.Core.Config;
using Ambient.Core.Model;
using Ambient.Ctl.Local.Netns;
using Ambient.Ctl.Local.NodeAgent;

namespace Ambient.Ctl.Local;

/// <summary>Settings of one `local up`.</summary>
internal sealed record LocalMeshOptions(string StateFolder, IPAddress ControlAddress, TextWriter? Echo, TimeSpan ReadyTimeout)
{
    /// <summary>Set for `--network netns`: every pod in a network namespace of its own; null for loopback.</summary>
    public NetnsSettings? Netns { get; init; }

    /// <summary>Where each ztunnel's DNS proxy forwards names that are not the mesh's; empty: the host's /etc/resolv.conf.</summary>
    public System.Collections.Immutable.ImmutableArray<IPEndPoint> DnsUpstreams { get; init; } = [];

    /// <summary>.ambient-state beside the config folder, or beside the folder holding the config file.</summary>
    public static string DefaultStateFolder(string configPath) =>
        Path.GetFullPath(Path.Combine(File.Exists(configPath) ? Path.GetDirectoryName(Path.GetFullPath(configPath))! : configPath, "..", ".ambient-state"));
}

/// <summary>Thrown for a problem that stops `local up`, with a message naming what is wrong.</summary>
internal sealed class LocalMeshException(string message) : Exception(message);

/// <summary>
/// The local mesh on this machine: istiod-lite, one ztunnel per node, one process per pod container, started in
/// that order (each waits for what it needs), supervised, recorded in the state file, and stopped together.
/// While it runs it watches the config as istiod-lite does and acts as a kubelet on it (see <see cref="PodReconciler"/>).
/// </summary>
internal sealed class LocalMesh : IAsyncDisposable
{
    // SIGINT, SIGTERM at half time, SIGKILL at the end: the whole mesh is gone within 5 s of Ctrl-C.
    private static readonly TimeSpan StopGrace = TimeSpan.FromSeconds(3);
    private readonly MeshPlan _plan;
    private readonly LocalMeshOptions _options;
    private readonly Action<string> _report;
    private readonly List<SupervisedProcess> _components = [];
    private readonly Lock _stateLock = new();
    private string _phase = LocalState.PhaseStarting;
    private string? _message;
    // What each running pod process was started from, by component name; enrolment is updated live.
    private readonly Dictionary<string, ContainerPlan> _pods = new(StringComparer.Ordinal);
    private IReadOnlyList<string> _configErrors = [];
    private IReadOnlyList<string> _configWarnings = [];
    private Launcher? _samples;
    private Launcher? _waypoint;
    private PodReconciler? _reconciler;
    private ZtunnelUpgrades? _upgrades;
    // Netns mode only: the bridges, pod namespaces and iptables chains on the host.
    private PodNetwork? _network;

    private readonly CancellationToken _stopping;

    private LocalMesh(MeshPlan plan, LocalMeshOptions options, Action<string> report, CancellationToken stopping)
    {
        _stopping = stopping;
        _plan = plan;
        _options = options;
        _report = report;
    }

    public MeshPlan Plan => _plan;
    public LocalMeshOptions Options => _options;
    public IReadOnlyList<SupervisedProcess> Components => _components;

    internal void Report(string message) => _report(message);

    /// <summary>Checks ports and binaries, starts everything and waits until it is ready.</summary>
    public static async Task<LocalMesh> StartAsync(MeshPlan plan, LocalMeshOptions options, Action<string> report, CancellationToken ct)
    {
        var istiod = Executables.Find(Executables.Istiod, out var e1) ?? throw new LocalMeshException(e1!);
        var ztunnel = Executables.Find(Executables.Ztunnel, out var e2) ?? throw new LocalMeshException(e2!);
        var samples = Executables.Find(Executables.Samples, out var e3);
        if (samples is null && NeedsSamples(plan)) throw new LocalMeshException(e3!);
        HostNetworkTools? tools = null;
        if (options.Netns is { } netns)
        {
            tools = HostNetworkTools.CheckUsable(out var reason) ?? throw new LocalMeshException(reason!);
            CheckNetnsPlan(plan, options, netns);
        }
        else
        {
            CheckPorts(plan, options);
        }

        var mesh = new LocalMesh(plan, options, report, ct) { _samples = samples };
        try
        {
            if (options.Netns is { } settings)
            {
                mesh._network = PodNetwork.Create(plan, settings, options.StateFolder, tools!, report);
            }
            await mesh.StartAllAsync(istiod, ztunnel, ct).ConfigureAwait(false);
            mesh._reconciler = PodReconciler.Start(mesh, ct);
            if (options.Netns?.Hooks is IZdsPodHooks agents)
            {
                mesh._upgrades = ZtunnelUpgrades.Start(mesh, agents, ct);
            }
            mesh.SetPhase(LocalState.PhaseReady, null);
            return mesh;
        }
        catch (Exception e)
        {
            mesh.SetPhase(LocalState.PhaseFailed, e.Message);
            await mesh.DisposeAsync().ConfigureAwait(false);
            throw;
        }
    }

    /// <summary>Netns mode: the plan was made for these ranges, and istiod-lite listens where pods can reach it.</summary>
    private static void CheckNetnsPlan(MeshPlan plan, LocalMeshOptions options, NetnsSettings netns)
    {
        if (plan.Addresses != netns.Ranges) throw new InvalidOperationException("the plan was made for another address plan than --network netns");
        foreach (var address in plan.Nodes.Values)
        {
            if (address.Equals(options.ControlAddress)) return;
        }
        throw new LocalMeshException($"in netns mode istiod-lite must listen on a node's bridge address (pods reach it there), not {options.ControlAddress}"
            + (IPAddress.IsLoopback(options.ControlAddress) ? "; a loopback control address needs --network loopback" : ""));
    }

    private static bool NeedsSamples(MeshPlan plan)
    {
        foreach (var c in plan.Containers)
        {
            if (c.Command.IsEmpty) return true;
        }
        return false;
    }

    /// <summary>Every address:port the mesh will bind, tried now so a clash is reported before anything starts.</summary>
    internal static void CheckPorts(MeshPlan plan, LocalMeshOptions options)
    {
        var wanted = new List<(IPEndPoint Endpoint, string Owner)>
        {
            (new IPEndPoint(options.ControlAddress, MeshPorts.IstiodGrpc), "istiod-lite CA + discovery"),
            (new IPEndPoint(options.ControlAddress, MeshPorts.IstiodMonitoring), "istiod-lite monitoring"),
        };
        foreach (var (node, address) in plan.Nodes)
        {
            wanted.Add((new IPEndPoint(address, MeshPorts.Admin), $"ztunnel {node} admin"));
            wanted.Add((new IPEndPoint(address, MeshPorts.Metrics), $"ztunnel {node} metrics"));
            wanted.Add((new IPEndPoint(address, MeshPorts.Readiness), $"ztunnel {node} readiness"));
        }
        var seenPods = new HashSet<IPAddress>();
        foreach (var c in plan.Containers)
        {
            // A waypoint pod is not captured: its own process listens on 15008 (in c.Ports).
            if (c.Image != MeshPlan.WaypointImage && seenPods.Add(c.Address))
            {
                wanted.Add((new IPEndPoint(c.Address, MeshPorts.Hbone), $"ztunnel HBONE for pod {c.Namespace}/{c.Pod}"));
                wanted.Add((new IPEndPoint(c.Address, MeshPorts.Socks5), $"ztunnel SOCKS5 for pod {c.Namespace}/{c.Pod}"));
            }
            foreach (var port in c.Ports) wanted.Add((new IPEndPoint(c.Address, port), $"pod {c.DisplayName} port {port}"));
        }
        var busy = new List<string>();
        foreach (var (endpoint, owner) in wanted)
        {
            if (!IsFree(endpoint)) busy.Add($"{endpoint} ({owner})");
        }
        if (busy.Count > 0)
        {
            throw new LocalMeshException("ports already in use: " + string.Join(", ", busy)
                + ". Is another local mesh running? See `ambientctl local status`; stop it with `ambientctl local down`.");
        }
    }

    internal static bool IsFree(IPEndPoint endpoint)
    {
        using var socket = new Socket(endpoint.AddressFamily, SocketType.Stream, ProtocolType.Tcp);
        try
        {
            socket.Bind(endpoint);
            return true;
        }
        catch (SocketException)
        {
            return false;
        }
    }

    private async Task StartAllAsync(Launcher istiod, Launcher ztunnel, CancellationToken ct)
    {
        var state = _options.StateFolder;
        var logs = Path.Combine(state, "logs");
        var control = _options.ControlAddress.ToString();
        WriteState();

        _report($"starting istiod-lite on {control}:{MeshPorts.IstiodGrpc} (config {_plan.ConfigFolder}, network {_plan.Addresses})");
        List<string> istiodArgs = ["--config", _plan.ConfigFolder, "--state", state, "--listen", $"{control}:{MeshPorts.IstiodGrpc}",
             "--monitoring", $"{control}:{MeshPorts.IstiodMonitoring}"];
        if (_plan.Addresses.Mode == NetworkMode.Netns)
        {
            // The one address plan: istiod-lite publishes exactly the addresses the pods get here.
            istiodArgs.AddRange(["--network", "netns", "--pod-cidr", _plan.Addresses.PodCidr.ToString(), "--service-cidr", _plan.Addresses.ServiceCidr.ToString()]);
        }
        await StartAsync(new ComponentSpec("istiod", "istiod", istiod, istiodArgs,
            new Dictionary<string, string>(), control, null, Path.Combine(logs, "istiod.log"))).ConfigureAwait(false);
        var rootCert = Path.Combine(state, "root-cert.pem");
        var tokens = new List<string> { rootCert };
        foreach (var node in _plan.Nodes.Keys) tokens.Add(Path.Combine(state, "tokens", node + ".token"));
        await WaitForAsync("istiod-lite to write the root certificate and node tokens", () => AllExist(tokens), "istiod", ct).ConfigureAwait(false);
        await WaitForAsync("istiod-lite to be ready", () => HttpOkAsync($"http://{control}:{MeshPorts.IstiodMonitoring}/ready"), "istiod", ct).ConfigureAwait(false);

        foreach (var (node, address) in _plan.Nodes)
        {
            _report($"starting ztunnel {node} on {address}");
            List<string> ztunnelArgs = ["--node", node, "--address", address.ToString(), "--root", rootCert,
                 "--token-file", Path.Combine(state, "tokens", node + ".token"),
                 "--istiod", $"https://{control}:{MeshPorts.IstiodGrpc}",
                 // The node's DNS proxy: a pod's resolver asks it from the pod's own address (netns mode: a pod outside
                 // the mesh; an enrolled pod's queries are redirected to the proxy the ztunnel opens inside the pod).
                 "--dns-port", MeshPorts.Dns.ToString(CultureInfo.InvariantCulture)];
            foreach (var upstream in _options.DnsUpstreams) ztunnelArgs.AddRange(["--dns-upstream", upstream.ToString()]);
            if (_options.Netns?.Hooks is IZdsPodHooks agents)
            {
                // In-pod mode: the node agent hands the ztunnel each enrolled pod's namespace; it listens inside them.
                ztunnelArgs.AddRange(["--zds-socket", agents.Listen(node, _report),
                    // `local restart ztunnel` lets the old one drain this long while the new one serves.
                    "--drain-timeout", ((int)ZtunnelUpgrades.DrainTimeout.TotalSeconds).ToString(CultureInfo.InvariantCulture)]);
            }
            await StartAsync(new ComponentSpec("ztunnel-" + node, "ztunnel", ztunnel, ztunnelArgs,
                new Dictionary<string, string>(), address.ToString(), node, Path.Combine(logs, $"ztunnel-{node}.log"))).ConfigureAwait(false);
        }
        foreach (var (node, address) in _plan.Nodes)
        {
            await WaitForAsync($"ztunnel {node} to be ready", () => HttpOkAsync($"http://{address}:{MeshPorts.Readiness}/healthz/ready"),
                "ztunnel-" + node, ct).ConfigureAwait(false);
        }

        foreach (var c in _plan.Containers) await StartPodAsync(c).ConfigureAwait(false);
        foreach (var c in _plan.Containers)
        {
            if (c.Port is { } port)
            {
                // In netns mode a connection from the host would be accepted by the pod's ztunnel (15006) before the app
                // listens: look for the app's listening socket in the pod's namespace instead, as a kubelet's probe would reach it.
                Func<Task<bool>> listening = _network is null
                    ? () => CanConnectAsync(new IPEndPoint(c.Address, port))
                    : () => Task.FromResult(ListensInItsNamespace(ComponentName(c), port));
                await WaitForAsync($"pod {c.DisplayName} to listen on {c.Address}:{port}", listening, ComponentName(c), ct).ConfigureAwait(false);
            }
        }
    }

    internal static string ComponentName(ContainerPlan c) => "pod-" + c.DisplayName.Replace('/', '-');

    /// <summary>
    /// Starts one pod container under supervision and records it. In netns mode the pod's namespace is made first
    /// (once per pod) and the node agent's hook runs before the program starts.
    /// </summary>
    internal async Task StartPodAsync(ContainerPlan c)
    {
        var env = PodEnvironment(c);
        Launcher launcher;
        IReadOnlyList<string> args;
        if (!c.Command.IsEmpty)
        {
            launcher = new Launcher(HostPrograms.Resolve(c.Command[0])!, [], c.Command[0]);
            var list = new List<string>();
            for (var i = 1; i < c.Command.Length; i++) list.Add(HostPrograms.Expand(c.Command[i], env));
            foreach (var a in c.Args) list.Add(HostPrograms.Expand(a, env));
            args = list;
        }
        else if (c.Image == MeshPlan.WaypointImage)
        {
            launcher = _waypoint ??= Executables.Find(Executables.Waypoint, out var error) ?? throw new LocalMeshException(error!);
            args = WaypointArguments(c);
        }
        else
        {
            // A sample pod added while running, to a mesh that started without one.
            launcher = _samples ??= Executables.Find(Executables.Samples, out var error) ?? throw new LocalMeshException(error!);
            args = [c.Image == MeshPlan.EchoImage ? "echo" : "sleep"];
        }
        var sandbox = _network is null ? null : await PrepareSandboxAsync(c).ConfigureAwait(false);
        if (sandbox is not null)
        {
            // `ip netns exec` enters the namespace, bind-mounts /etc/netns/NAME/resolv.conf and execs the program (same pid).
            launcher = new Launcher(_network!.Tools.Ip, ["netns", "exec", sandbox.NetnsName, launcher.FileName, .. launcher.PrefixArgs], launcher.Describe);
        }
        _report($"starting pod {c.DisplayName} on {c.Address} (node {c.Node}, {(c.Command.IsEmpty ? c.Image : c.Command[0])}{(c.InMesh ? "" : ", not in the mesh")}{(sandbox is null ? "" : ", netns " + sandbox.NetnsName)})");
        var name = ComponentName(c);
        lock (_stateLock) _pods[name] = c;
        try
        {
            StartComponent(new ComponentSpec(name, c.Image == MeshPlan.WaypointImage ? "waypoint" : "pod", launcher, args, env, c.Address.ToString(), c.Node,
                Path.Combine(_options.StateFolder, "logs", name + ".log")));
        }
        catch (InvalidOperationException)
        {
            // Not started at all: forget it, so the next config change tries again rather than seeing it "running".
            SupervisedProcess? failed;
            lock (_stateLock)
            {
                _pods.Remove(name);
                failed = _components.Find(p => p.Spec.Name == name);
                if (failed is not null) _components.Remove(failed);
            }
            // Nothing runs, so this only closes its log file.
            if (failed is not null) _ = failed.DisposeAsync().AsTask();
            if (sandbox is not null) await RemoveSandboxIfUnusedAsync(c.Namespace, c.Pod).ConfigureAwait(false);
            throw;
        }
        _network?.RefreshServices();
    }

    /// <summary>The pod's namespace, made now for its first container, then handed to the node agent before any program starts.</summary>
    private async Task<PodSandbox> PrepareSandboxAsync(ContainerPlan c)
    {
        if (!_network!.EnsurePod(c, out var sandbox)) return sandbox;
        try
        {
            await _options.Netns!.Hooks.PodSandboxReadyAsync(sandbox, _stopping).ConfigureAwait(false);
        }
        catch (Exception e) when (e is not OperationCanceledException)
        {
            _network.RemovePod(c.Namespace, c.Pod);
            throw new LocalMeshException($"pod {c.Namespace}/{c.Pod}: the node agent did not accept its network namespace: {e.Message}");
        }
        return sandbox;
    }

    /// <summary>Deletes a pod's namespace once none of its containers runs (after telling the node agent).</summary>
    private async Task RemoveSandboxIfUnusedAsync(string @namespace, string pod)
    {
        if (_network?.Find(@namespace, pod) is not { } sandbox) return;
        lock (_stateLock)
        {
            foreach (var (_, running) in _pods)
            {
                if (running.Namespace == @namespace && running.Pod == pod) return;
            }
        }
        try
        {
            await _options.Netns!.Hooks.PodSandboxRemovingAsync(sandbox, _stopping).ConfigureAwait(false);
        }
        catch (Exception e) when (e is not OperationCanceledException)
        {
            _report($"pod {@namespace}/{pod}: the node agent failed to release it: {e.Message}");
        }
        _network.RemovePod(@namespace, pod);
    }

    /// <summary>A waypoint pod runs the waypoint proxy with its node's token, as a ztunnel of that node would.</summary>
    private List<string> WaypointArguments(ContainerPlan c)
    {
        var state = _options.StateFolder;
        return
        [
            "--node", c.Node, "--namespace", c.Namespace, "--name", c.ServiceAccount, "--address", c.Address.ToString(),
            "--root", Path.Combine(state, "root-cert.pem"), "--token-file", Path.Combine(state, "tokens", c.Node + ".token"),
            "--istiod", $"https://{_options.ControlAddress}:{MeshPorts.IstiodGrpc}", "--admin", MeshPorts.Readiness.ToString(CultureInfo.InvariantCulture),
        ];
    }

    /// <summary>The supervised component named <paramref name="name"/> (e.g. ztunnel-NODE), if it runs.</summary>
    internal SupervisedProcess? FindComponent(string name)
    {
        lock (_stateLock) return _components.Find(c => c.Spec.Name == name);
    }

    /// <summary>Stops one pod container and forgets it.</summary>
    internal async Task StopPodAsync(string name, string why)
    {
        SupervisedProcess? process;
        lock (_stateLock)
        {
            process = _components.Find(c => c.Spec.Name == name);
            _pods.Remove(name);
        }
        if (process is null) return;
        _report($"stopping {name}: {why}");
        await process.DisposeAsync().ConfigureAwait(false);
        lock (_stateLock) _components.Remove(process);
        if (_network is not null && LastPlanOf(process) is { } stopped)
        {
            await RemoveSandboxIfUnusedAsync(stopped.Namespace, stopped.Pod).ConfigureAwait(false);
            _network.RefreshServices();
        }
        WriteState();
    }

    // A stopped pod component's namespace/pod, from the environment it was started with.
    private static (string Namespace, string Pod)? LastPlanOf(SupervisedProcess process) =>
        process.Spec.Env.TryGetValue("POD_NAMESPACE", out var ns) && process.Spec.Env.TryGetValue("POD_NAME", out var pod) ? (ns, pod) : null;

    /// <summary>The pods running now, as they were started (enrolment as last updated).</summary>
    internal Dictionary<string, ContainerPlan> RunningPods()
    {
        lock (_stateLock) return new Dictionary<string, ContainerPlan>(_pods, StringComparer.Ordinal);
    }

    /// <summary>
    /// Records enrolment and the config's problems as of the latest change, for exec and status; in netns mode tells the
    /// node agent of each pod whose enrolment changed, and rebuilds the Service DNAT rules from <paramref name="resources"/>.
    /// </summary>
    internal async Task UpdateViewAsync(IReadOnlyDictionary<string, bool> inMesh, IReadOnlyList<string> errors, IReadOnlyList<string> warnings,
        System.Collections.Immutable.ImmutableArray<Resource> resources)
    {
        var changed = new List<PodSandbox>();
        lock (_stateLock)
        {
            foreach (var (name, enrolled) in inMesh)
            {
                if (_pods.TryGetValue(name, out var c) && c.InMesh != enrolled)
                {
                    _pods[name] = c with { InMesh = enrolled };
                    if (_network?.SetInMesh(c.Namespace, c.Pod, enrolled) is { } sandbox) changed.Add(sandbox);
                }
            }
            _configErrors = errors;
            _configWarnings = warnings;
        }
        // Each pod's switch is its own (its namespace's rules, its own ZDS message): all at once, so a relabelled
        // namespace leaves or joins the mesh in the time one pod takes, not the sum of its pods'.
        var switches = new Task[changed.Count];
        var started = System.Diagnostics.Stopwatch.GetTimestamp();
        for (var i = 0; i < changed.Count; i++) switches[i] = ChangeEnrolmentAsync(changed[i]);
        await Task.WhenAll(switches).ConfigureAwait(false);
        if (changed.Count > 0)
        {
            // With the node agents' own lines (rules vs ztunnel ack per pod), where a label switch's time went.
            _report($"enrolment of {changed.Count} pod(s) switched in {System.Diagnostics.Stopwatch.GetElapsedTime(started).TotalMilliseconds:0} ms");
        }
        _network?.UpdateServices(resources);
        WriteState();
    }

    private async Task ChangeEnrolmentAsync(PodSandbox sandbox)
    {
        try
        {
            await _options.Netns!.Hooks.PodEnrolmentChangedAsync(sandbox, _stopping).ConfigureAwait(false);
        }
        catch (Exception e) when (e is not OperationCanceledException)
        {
            _report($"pod {sandbox.Namespace}/{sandbox.Pod}: the node agent failed to {(sandbox.InMesh ? "enrol" : "unenrol")} it: {e.Message}");
        }
    }

    /// <summary>What a pod is told about itself (the Kubernetes downward API, by convention).</summary>
    internal static Dictionary<string, string> PodEnvironment(ContainerPlan c)
    {
        var env = new Dictionary<string, string>(StringComparer.Ordinal)
        {
            ["POD_IP"] = c.Address.ToString(),
            ["POD_NAME"] = c.Pod,
            ["POD_NAMESPACE"] = c.Namespace,
            ["SERVICE_ACCOUNT"] = c.ServiceAccount,
            ["NODE_NAME"] = c.Node,
            // A program that honours ALL_PROXY reaches the mesh through its node's ztunnel, as if captured.
            ["AMBIENT_SOCKS5"] = $"{c.Address}:{MeshPorts.Socks5}",
        };
        if (c.Port is { } port) env["PORT"] = port.ToString(CultureInfo.InvariantCulture);
        // Every containerPort: the echo image listens on each, as a conformance backend must.
        if (!c.Ports.IsEmpty) env["PORTS"] = string.Join(',', c.Ports);
        // The downward API would give the pod its labels; the echo image reports `app` as its service when SERVICE_NAME is unset.
        if (c.App is { } app) env["POD_LABEL_APP"] = app;
        foreach (var (k, v) in c.Env) env[k] = HostPrograms.Expand(v, env);
        return env;
    }

    private Task StartAsync(ComponentSpec spec)
    {
        StartComponent(spec);
        return Task.CompletedTask;
    }

    private void StartComponent(ComponentSpec spec)
    {
        var p = new SupervisedProcess(spec, _report, _options.Echo, _stopping);
        p.Started += WriteState;
        lock (_stateLock) _components.Add(p);
        p.Start();
    }

    private async Task WaitForAsync(string what, Func<Task<bool>> probe, string component, CancellationToken ct)
    {
        using var timeout = CancellationTokenSource.CreateLinkedTokenSource(ct);
        timeout.CancelAfter(_options.ReadyTimeout);
        while (true)
        {
            if (await probe().ConfigureAwait(false)) return;
            SupervisedProcess? c;
            lock (_stateLock) c = _components.Find(x => x.Spec.Name == component);
            if (c is { Restarts: > 2 })
            {
                throw new LocalMeshException($"{component} keeps exiting (code {c.LastExitCode}) while waiting for {what}; see {c.Spec.LogPath}");
            }
            try
            {
                await Task.Delay(100, timeout.Token).ConfigureAwait(false);
            }
            catch (OperationCanceledException) when (!ct.IsCancellationRequested)
            {
                throw new LocalMeshException($"timed out after {_options.ReadyTimeout.TotalSeconds:0}s waiting for {what}; see {c?.Spec.LogPath}");
            }
        }
    }

    private static Task<bool> AllExist(List<string> files)
    {
        foreach (var f in files)
        {
            if (!File.Exists(f)) return Task.FromResult(false);
        }
        return Task.FromResult(true);
    }

    private static readonly HttpClient Probe = new(new SocketsHttpHandler { UseProxy = false }) { Timeout = TimeSpan.FromSeconds(2) };

    internal static async Task<bool> HttpOkAsync(string url)
    {
        try
        {
            using var response = await Probe.GetAsync(url).ConfigureAwait(false);
            return response.IsSuccessStatusCode;
        }
        catch (Exception e) when (e is HttpRequestException or TaskCanceledException)
        {
            return false;
        }
    }

    /// <summary>Whether a socket listens on <paramref name="port"/> in the network namespace of the component's process.</summary>
    private bool ListensInItsNamespace(string component, int port)
    {
        int pid;
        lock (_stateLock)
        {
            var process = _components.Find(p => p.Spec.Name == component)?.Current;
            try { pid = process is null || process.HasExited ? 0 : process.Id; } catch (InvalidOperationException) { pid = 0; }
        }
        return pid != 0 && (ProcNetTcp.Listens($"/proc/{pid}/net/tcp", port) || ProcNetTcp.Listens($"/proc/{pid}/net/tcp6", port));
    }

    internal static async Task<bool> CanConnectAsync(IPEndPoint endpoint)
    {
        using var socket = new Socket(endpoint.AddressFamily, SocketType.Stream, ProtocolType.Tcp);
        using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(1));
        try
        {
            await socket.ConnectAsync(endpoint, timeout.Token).ConfigureAwait(false);
            return true;
        }
        catch (Exception e) when (e is SocketException or OperationCanceledException)
        {
            return false;
        }
    }

    private void SetPhase(string phase, string? message)
    {
        lock (_stateLock)
        {
            _phase = phase;
            _message = message;
        }
        WriteState();
    }

    private void WriteState()
    {
        lock (_stateLock)
        {
            var records = new List<ComponentRecord>(_components.Count);
            foreach (var c in _components)
            {
                var p = c.Current;
                int pid;
                try { pid = p is null || p.HasExited ? 0 : p.Id; } catch (InvalidOperationException) { pid = 0; }
                PodRecord? pod = null;
                if (_pods.TryGetValue(c.Spec.Name, out var plan))
                {
                    pod = new PodRecord(plan.Namespace, plan.Pod, plan.ServiceAccount, plan.InMesh, c.Spec.Env)
                    {
                        Netns = _network?.Find(plan.Namespace, plan.Pod)?.NetnsName,
                    };
                }
                records.Add(new ComponentRecord(c.Spec.Name, c.Spec.Kind, pid, p is null || pid == 0 ? 0 : Signals.StartTicks(p),
                    c.Spec.Address, c.Spec.Node, c.Spec.LogPath, c.Restarts, pod));
            }
            using var self = System.Diagnostics.Process.GetCurrentProcess();
            try
            {
                new LocalState(Environment.ProcessId, Signals.StartTicks(self), _plan.ConfigFolder, _options.StateFolder,
                    _options.ControlAddress.ToString(), _phase, _message, records, _configErrors, _configWarnings)
                {
                    PodCidr = _options.Netns?.Ranges.PodCidr.ToString(),
                    ServiceCidr = _options.Netns?.Ranges.ServiceCidr.ToString(),
                }.Write();
            }
            catch (IOException e)
            {
                _report($"cannot write {LocalState.FilePath}: {e.Message}");
            }
        }
    }

    /// <summary>Stops every component at once (pods, ztunnels and istiod-lite in parallel) within the grace period.</summary>
    public async ValueTask DisposeAsync()
    {
        // No pod may be started or stopped behind the shutdown.
        if (_reconciler is not null) await _reconciler.DisposeAsync().ConfigureAwait(false);
        if (_upgrades is not null) await _upgrades.DisposeAsync().ConfigureAwait(false);
        SupervisedProcess[] all;
        lock (_stateLock) all = [.. _components];
        var stops = new Task[all.Length];
        for (var i = 0; i < all.Length; i++)
        {
            stops[i] = all[i].StopAsync(StopGrace);
        }
        await Task.WhenAll(stops).ConfigureAwait(false);
        foreach (var c in all) await c.DisposeAsync().ConfigureAwait(false);
        // Every program has stopped: the node agents, then the namespaces, links and rules can go.
        if (_options.Netns?.Hooks is IZdsPodHooks agents) await agents.DisposeAsync().ConfigureAwait(false);
        _network?.Dispose();
        var current = LocalState.Read(out _);
        if (current is not null && current.SupervisorPid == Environment.ProcessId) LocalState.Delete();
    }
}

using System.Diagnostics;
using System.Globalization;
using System.Net;
using System.Net.Sockets;
using System.Text.Json;
using Ambient.TestCommon;

// One mesh at a time: each run has its own node range and control address (MeshAddresses), but a 2-core host
// running two meshes side by side starves both, and the timing of restarts and outages is part of what is tested.
[assembly: CollectionBehavior(DisableTestParallelization = true)]

namespace Ambient.E2E.Tests;

/// <summary>
/// One `ambientctl local up --detach` for a test: a temp folder with its own AMBIENT_HOME, namespace and control
/// address, the state file's pids, logs and metrics at hand, and a Dispose that kills every process it ever saw by pid
/// (the supervisor first, so nothing is restarted behind our back), whatever the test's outcome.
/// </summary>
internal sealed class MeshRun : IDisposable
{
    public const string TrustDomain = "cluster.local";
    private readonly TempDir _dir = new();
    private readonly HashSet<(int Pid, long Ticks)> _seen = [];
    private readonly Lock _lock = new();

    private MeshRun(string prefix)
    {
        Namespace = prefix + Guid.NewGuid().ToString("N")[..6];
        Addresses = MeshAddresses.PickFree();
        Home = Path.Combine(_dir.Path, "home");
    }

    public string Namespace { get; }
    public MeshAddresses Addresses { get; }
    public string Control => Addresses.Control;
    public string Home { get; }
    public string ConfigFolder => Path.Combine(_dir.Path, "mesh");
    public string TempPath => _dir.Path;

    public string Spiffe(string serviceAccount) => $"spiffe://{TrustDomain}/ns/{Namespace}/sa/{serviceAccount}";

    /// <summary>Writes the YAML (<paramref name="yaml"/> gets the namespace) and brings the mesh up from its folder, or
    /// <paramref name="fromFile"/> from the file alone.</summary>
    /// <param name="network">Arguments that choose the network (e.g. `--network netns ...`) instead of loopback mode (named,
    /// since netns is the default as root) with this run's control address.</param>
    public static async Task<MeshRun> UpAsync(string prefix, Func<string, string> yaml, bool fromFile = false, IReadOnlyList<string>? network = null)
    {
        var run = new MeshRun(prefix);
        try
        {
            run._dir.Write("mesh/mesh.yaml", yaml(run.Namespace));
            var config = fromFile ? Path.Combine(run.ConfigFolder, "mesh.yaml") : run.ConfigFolder;
            var up = await run.CtlAsync(TimeSpan.FromSeconds(90), ["local", "up", "-f", config, "--detach", .. network ?? ["--network", "loopback", "--control-address", run.Control]]);
            Assert.True(up.Code == 0, $"local up failed ({up.Code}):\n{up.Output}");
            run.ReadState();
            return run;
        }
        catch
        {
            run.Dispose();
            throw;
        }
    }

    public sealed record Component(string Name, string Kind, int Pid, long StartTicks, string? Address, string? Node, string Log, int Restarts);
    public sealed record State(int SupervisorPid, long SupervisorStartTicks, string StateFolder, string Phase, List<Component> Components);

    private static readonly JsonSerializerOptions Json = new() { PropertyNamingPolicy = JsonNamingPolicy.CamelCase };

    public State ReadState()
    {
        var state = JsonSerializer.Deserialize<State>(File.ReadAllText(Path.Combine(Home, "local.json")), Json)!;
        lock (_lock)
        {
            _seen.Add((state.SupervisorPid, state.SupervisorStartTicks));
            foreach (var c in state.Components) _seen.Add((c.Pid, c.StartTicks));
        }
        return state;
    }

    public Component Get(string name) => ReadState().Components.Single(c => c.Name == name);
    public Component Pod(string pod) => Get($"pod-{Namespace}-{pod}");
    public Component Ztunnel(string node) => Get("ztunnel-" + node);
    public string RootCertPath => Path.Combine(ReadState().StateFolder, "root-cert.pem");

    /// <summary>A log file as it is now; the writer keeps it open, so share it.</summary>
    public static string ReadLog(Component c)
    {
        using var stream = new FileStream(c.Log, FileMode.Open, FileAccess.Read, FileShare.ReadWrite | FileShare.Delete);
        using var reader = new StreamReader(stream);
        return reader.ReadToEnd();
    }

    /// <summary>SIGKILL, as the OOM killer or a crash would: no chance to clean up.</summary>
    public static void Kill9(Component c)
    {
        Assert.True(c.Pid > 0 && Alive(c.Pid, c.StartTicks), $"{c.Name} (pid {c.Pid}) is not running");
        using var p = Process.GetProcessById(c.Pid);
        p.Kill();
        Assert.True(p.WaitForExit(5000), $"{c.Name} (pid {c.Pid}) survived SIGKILL");
    }

    /// <summary>Waits until the supervisor has started <paramref name="name"/> again (a new pid in the state file).</summary>
    public async Task<Component> WaitForRestartAsync(string name, int oldPid, TimeSpan timeout)
    {
        var sw = Stopwatch.StartNew();
        while (true)
        {
            var c = Get(name);
            if (c.Pid != 0 && c.Pid != oldPid && Alive(c.Pid, c.StartTicks)) return c;
            Assert.True(sw.Elapsed < timeout, $"{name} was not restarted within {timeout.TotalSeconds:0}s (state: pid {c.Pid}, restarts {c.Restarts})");
            await Task.Delay(100, TestContext.Current.CancellationToken);
        }
    }

    public static readonly HttpClient Plain = new(new SocketsHttpHandler { UseProxy = false }) { Timeout = TimeSpan.FromSeconds(5) };

    public static async Task<bool> HttpOkAsync(string url)
    {
        try
        {
            using var response = await Plain.GetAsync(url, TestContext.Current.CancellationToken);
            return response.IsSuccessStatusCode;
        }
        catch (Exception e) when (e is HttpRequestException or TaskCanceledException)
        {
            return false;
        }
    }

    public static Task<string> MetricsAsync(Component ztunnel) =>
        Plain.GetStringAsync($"http://{ztunnel.Address}:15020/metrics", TestContext.Current.CancellationToken);

    /// <summary>Sum of a counter's rows that carry every one of <paramref name="labels"/>.</summary>
    public static long Sum(string metrics, string family, params string[] labels) => PrometheusCounters.Sum(metrics, family, labels);

    public static async Task EventuallyAsync(Func<Task<bool>> condition, TimeSpan timeout, Func<Task<string>> message)
    {
        var sw = Stopwatch.StartNew();
        while (!await condition())
        {
            if (sw.Elapsed > timeout) Assert.Fail(await message());
            await Task.Delay(150, TestContext.Current.CancellationToken);
        }
    }

    /// <summary>
    /// An HTTP client "in" a pod: every connection goes through the pod's ztunnel SOCKS5 port. With
    /// <paramref name="keepAlive"/> it keeps one pooled connection (and counts how many it ever opened);
    /// without, each request asks for `Connection: close` and so gets a new connection. With
    /// <paramref name="fromPodAddress"/> its sockets are bound to the pod's address, as a pod's own are, so the
    /// ztunnel forwards it as the source address (what ipBlocks policies see).
    /// </summary>
    public static PodClient ClientIn(Component pod, bool keepAlive, bool fromPodAddress = false) => new(pod, keepAlive, fromPodAddress);

    internal sealed class PodClient : IDisposable
    {
        private readonly HttpClient _http;
        private readonly bool _keepAlive;
        private int _connections;

        public PodClient(Component pod, bool keepAlive, bool fromPodAddress = false)
        {
            _keepAlive = keepAlive;
            var handler = new SocketsHttpHandler
            {
                Proxy = new WebProxy($"socks5://{pod.Address}:15080"),
                UseProxy = true,
                MaxConnectionsPerServer = 1,
                PooledConnectionLifetime = keepAlive ? Timeout.InfiniteTimeSpan : TimeSpan.Zero,
                PooledConnectionIdleTimeout = TimeSpan.FromMinutes(5),
                ConnectCallback = (ctx, ct) =>
                {
                    Interlocked.Increment(ref _connections);
                    return ConnectNoDelayAsync(ctx, ct, fromPodAddress ? IPAddress.Parse(pod.Address!) : null);
                },
            };
            _http = new HttpClient(handler) { Timeout = TimeSpan.FromSeconds(5) };
        }

        /// <summary>A handler's ConnectCallback: a TCP connection with Nagle off (small requests go out at once),
        /// from <paramref name="source"/> when given (so the ztunnel sees the pod's own address as the source).</summary>
        public static async ValueTask<Stream> ConnectNoDelayAsync(SocketsHttpConnectionContext context, CancellationToken cancellationToken,
            IPAddress? source = null)
        {
            var socket = new Socket(SocketType.Stream, ProtocolType.Tcp) { NoDelay = true };
            try
            {
                if (source is not null) socket.Bind(new IPEndPoint(source.MapToIPv6(), 0));
                await socket.ConnectAsync(context.DnsEndPoint, cancellationToken);
                return new NetworkStream(socket, ownsSocket: true);
            }
            catch
            {
                socket.Dispose();
                throw;
            }
        }

        /// <summary>TCP connections opened to the SOCKS5 port so far.</summary>
        public int Connections => Volatile.Read(ref _connections);

        /// <summary>GET; returns the answering pod's name, or throws with what went wrong.</summary>
        public async Task<string> GetAsync(string url, CancellationToken ct, params (string Name, string Value)[] headers)
        {
            using var request = new HttpRequestMessage(HttpMethod.Get, url);
            foreach (var (name, value) in headers) request.Headers.Add(name, value);
            if (!_keepAlive) request.Headers.ConnectionClose = true;
            using var response = await _http.SendAsync(request, ct);
            var body = await response.Content.ReadAsStringAsync(ct);
            if (response.StatusCode != HttpStatusCode.OK) throw new HttpRequestException($"{url}: HTTP {(int)response.StatusCode}: {body}");
            using var json = JsonDocument.Parse(body);
            return json.RootElement.GetProperty("pod").GetString()!;
        }

        public void Dispose() => _http.Dispose();
    }

    /// <summary>
    /// Requests in a loop until stopped, each outcome recorded with its time: the "traffic keeps flowing" evidence.
    /// </summary>
    internal sealed class TrafficLoop : IAsyncDisposable
    {
        private readonly CancellationTokenSource _stop = new();
        private readonly List<(TimeSpan At, string? Error)> _results = [];
        private readonly Task _task;
        private readonly Stopwatch _clock;

        public TrafficLoop(PodClient client, string url, string expectedPod, Stopwatch clock)
        {
            _clock = clock;
            _task = Task.Run(async () =>
            {
                while (!_stop.IsCancellationRequested)
                {
                    string? error = null;
                    try
                    {
                        var pod = await client.GetAsync(url, _stop.Token);
                        if (pod != expectedPod) error = $"answered by {pod}, not {expectedPod}";
                    }
                    catch (OperationCanceledException) when (_stop.IsCancellationRequested)
                    {
                        return;
                    }
                    catch (Exception e)
                    {
                        error = e.GetType().Name + ": " + e.Message + (e.InnerException is { } i ? " <- " + i.Message : "");
                    }
                    lock (_results) _results.Add((_clock.Elapsed, error));
                    try { await Task.Delay(40, _stop.Token); } catch (OperationCanceledException) { return; }
                }
            });
        }

        public List<(TimeSpan At, string? Error)> Results
        {
            get { lock (_results) return [.. _results]; }
        }

        public async ValueTask DisposeAsync()
        {
            await _stop.CancelAsync();
            await _task;
            _stop.Dispose();
        }
    }

    public static bool Alive(int pid, long startTicks)
    {
        if (pid == 0) return false;
        try
        {
            using var p = Process.GetProcessById(pid);
            return !p.HasExited && Math.Abs(p.StartTime.ToUniversalTime().Ticks - startTicks) < TimeSpan.TicksPerSecond * 2;
        }
        // Win32Exception: it exited between HasExited and reading its start time from /proc.
        catch (Exception e) when (e is ArgumentException or InvalidOperationException or System.ComponentModel.Win32Exception)
        {
            return false;
        }
    }

    public Task<(int Code, string Output)> CtlAsync(TimeSpan timeout, params string[] args) => CtlAsync(Home, Addresses, timeout, args);

    /// <summary>
    /// Runs the built ambientctl with <paramref name="home"/> as its AMBIENT_HOME and the nodes in
    /// <paramref name="addresses"/>' range (pass the same to every command of one mesh).
    /// </summary>
    public static Task<(int Code, string Output)> CtlAsync(string home, MeshAddresses addresses, TimeSpan timeout, params string[] args) =>
        RunCtlAsync(home, addresses.NodeBase, timeout, args);

    /// <summary>Same without a range of its own: the nodes go where this process's environment says (default 127.0.1.x).</summary>
    public static Task<(int Code, string Output)> CtlAsync(string home, TimeSpan timeout, params string[] args) =>
        RunCtlAsync(home, Environment.GetEnvironmentVariable(MeshAddresses.NodeBaseVariable), timeout, args);

    private static async Task<(int Code, string Output)> RunCtlAsync(string home, string? nodeBase, TimeSpan timeout, string[] args)
    {
        var psi = new ProcessStartInfo(DotnetHost()) { UseShellExecute = false, RedirectStandardOutput = true, RedirectStandardError = true };
        psi.ArgumentList.Add(Path.Combine(AppContext.BaseDirectory, "ambientctl.dll"));
        foreach (var a in args) psi.ArgumentList.Add(a);
        psi.Environment["AMBIENT_HOME"] = home;
        psi.Environment[MeshAddresses.NodeBaseVariable] = nodeBase;
        return await RunAsync(psi, timeout);
    }

    /// <summary>Runs a tool with <paramref name="stdin"/> (or nothing) as its input; killed (with its children) if it overruns.</summary>
    public static async Task<(int Code, string Output)> RunAsync(ProcessStartInfo psi, TimeSpan timeout, byte[]? stdin = null)
    {
        psi.UseShellExecute = false;
        psi.RedirectStandardOutput = true;
        psi.RedirectStandardError = true;
        psi.RedirectStandardInput = true;
        using var p = Process.Start(psi)!;
        if (stdin is not null) await p.StandardInput.BaseStream.WriteAsync(stdin);
        p.StandardInput.Close();
        var stdout = p.StandardOutput.ReadToEndAsync();
        var stderr = p.StandardError.ReadToEndAsync();
        using var cts = new CancellationTokenSource(timeout);
        try
        {
            await p.WaitForExitAsync(cts.Token);
        }
        catch (OperationCanceledException)
        {
            p.Kill(entireProcessTree: true);
            throw new TimeoutException($"{psi.FileName} {string.Join(' ', psi.ArgumentList)} did not finish within {timeout}");
        }
        return (p.ExitCode, await stdout + await stderr);
    }

    internal static string DotnetHost() =>
        Environment.GetEnvironmentVariable("DOTNET_HOST_PATH") is { Length: > 0 } h ? h
        : Environment.ProcessPath is { } self && Path.GetFileNameWithoutExtension(self) == "dotnet" ? self : "dotnet";

    public void Dispose()
    {
        // The supervisor first (with its tree: a component it just restarted is its child), so nothing comes back;
        // then every pid the state file ever named, in case one was re-parented.
        try
        {
            if (File.Exists(Path.Combine(Home, "local.json")))
            {
                var state = ReadState();
                KillTree(state.SupervisorPid, state.SupervisorStartTicks);
                ReadState();
            }
        }
        catch (Exception e) when (e is IOException or JsonException) { }
        (int, long)[] all;
        lock (_lock) all = [.. _seen];
        foreach (var (pid, ticks) in all) KillTree(pid, ticks);
        _dir.Dispose();
    }

    private static void KillTree(int pid, long ticks)
    {
        if (!Alive(pid, ticks)) return;
        try
        {
            using var p = Process.GetProcessById(pid);
            p.Kill(entireProcessTree: true);
            p.WaitForExit(5000);
        }
        catch (Exception e) when (e is ArgumentException or InvalidOperationException or System.ComponentModel.Win32Exception) { }
    }
}

/// <summary>
/// The loopback addresses of one E2E mesh, chosen so it runs beside a mesh the user left running (`local up` puts
/// istiod-lite on 127.0.0.1 and nodes on 127.0.1.x, each node with the fixed ports 15000/15020/15021): a control
/// address in 127.0.0.20-249 and a node range 127.0.N.x with N in 100-254, both checked free before use.
/// Pods and VIPs need nothing: they are hashed from names, and each run has a namespace of its own.
/// </summary>
internal sealed record MeshAddresses(string Control, string NodeBase)
{
    public const string NodeBaseVariable = "AMBIENT_NODE_ADDRESS_BASE";

    // Enough for every E2E mesh (they have two nodes); the ports every node and the control plane bind.
    private const int NodesChecked = 4;
    private static readonly int[] NodePorts = [15000, 15020, 15021];
    private static readonly int[] ControlPorts = [15012, 15014];

    /// <summary>Node address <paramref name="index"/> (1-based) of this range.</summary>
    public string Node(int index) => NodeBase[..^1] + index.ToString(CultureInfo.InvariantCulture);

    public static MeshAddresses PickFree()
    {
        for (var attempt = 0; attempt < 100; attempt++)
        {
            var control = "127.0.0." + Random.Shared.Next(20, 250).ToString(CultureInfo.InvariantCulture);
            var candidate = new MeshAddresses(control, $"127.0.{Random.Shared.Next(100, 255).ToString(CultureInfo.InvariantCulture)}.0");
            if (candidate.AllFree()) return candidate;
        }
        throw new InvalidOperationException("no free control address and node range found in 100 tries: is something binding all of 127.0.0.0/16?");
    }

    private bool AllFree()
    {
        foreach (var port in ControlPorts)
        {
            if (!Free(Control, port)) return false;
        }
        for (var i = 1; i <= NodesChecked; i++)
        {
            foreach (var port in NodePorts)
            {
                if (!Free(Node(i), port)) return false;
            }
        }
        return true;
    }

    /// <summary>Whether nothing holds the endpoint (a bind test; `local up` checks again and names any clash).</summary>
    private static bool Free(string address, int port)
    {
        using var socket = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
        try
        {
            socket.Bind(new IPEndPoint(IPAddress.Parse(address), port));
            return true;
        }
        catch (SocketException)
        {
            return false;
        }
    }
}

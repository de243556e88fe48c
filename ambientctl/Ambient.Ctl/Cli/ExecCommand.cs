using System.CommandLine;
using System.Diagnostics;
using System.Net;
using Ambient.Core;
using Ambient.Ctl.Inspect;
using Ambient.Ctl.Local;

namespace Ambient.Ctl.Cli;

/// <summary>
/// `ambientctl exec POD -- CMD ...`: runs a host command "from" a pod of the running local mesh, as the supervisor
/// runs it (its last good config; the config's current problems are printed as warnings). A pod in the mesh gets
/// ALL_PROXY=socks5h://POD_IP:15080 (and curl gets --socks5-hostname), so its connections enter the mesh through the
/// pod's node ztunnel exactly as the pod's own traffic would. A pod outside the mesh has no ztunnel listener: the
/// command gets no proxy and reaches its peers directly, in plain text (curl from the pod's address). In netns mode the
/// command runs inside the pod's network namespace (`ip netns exec`) with no proxy settings: the pod's capture decides.
/// </summary>
internal static class ExecCommand
{
    // After a relabel the supervisor records the pod as meshed a moment before its ztunnel opens the listener.
    private static readonly TimeSpan ListenerWait = TimeSpan.FromSeconds(5);

    public static Command Build()
    {
        var pod = new Argument<string>("pod") { Description = "pod name, namespace/name, pod/NAME or deploy/NAME (the Deployment's first ready pod)" };
        var ns = new Option<string?>("--namespace", "-n") { Description = "the pod's namespace (needed when the name is not unique)" };
        var command = new Argument<string[]>("command") { Description = "the command and its arguments, after --", Arity = ArgumentArity.OneOrMore };
        var exec = new Command("exec", "Run a command from a pod's network identity (netns mode: inside its network namespace; loopback mode: through its node's ztunnel when the pod is in the mesh)") { pod, ns, command };
        exec.SetAction(async (parse, _) => await RunAsync(parse.GetValue(pod)!, parse.GetValue(ns), parse.GetValue(command)!).ConfigureAwait(false));
        return exec;
    }

    internal static async Task<int> RunAsync(string podName, string? ns, string[] command)
    {
        if (LocalCommands.RunningMesh(out var state) is not { } supervisor || state is null)
        {
            Console.Error.WriteLine("no local mesh is running; start one with `ambientctl local up -f PATH`");
            return ExitCodes.Failed;
        }
        supervisor.Dispose();
        PrintConfigProblems(state, Console.Error);
        if (PodTargets.Resolve(podName, ns, state, () => ConfigResources(state), TemplateHashDeploymentPods.Instance, "exec", out var resolveError) is not { } named)
        {
            Console.Error.WriteLine(resolveError);
            return ExitCodes.InvalidInput;
        }
        var target = FindPod(state, named.Name, named.Namespace, out var error);
        if (target is null)
        {
            Console.Error.WriteLine(error);
            return ExitCodes.InvalidInput;
        }
        var program = HostPrograms.Resolve(command[0]);
        if (program is null)
        {
            Console.Error.WriteLine($"exec: program '{command[0]}' was not found (not a file, not on PATH)");
            return ExitCodes.InvalidInput;
        }
        ProcessStartInfo psi;
        if (target.Pod!.Netns is { } netns)
        {
            if (HostPrograms.Resolve("ip") is not { } ip)
            {
                Console.Error.WriteLine("exec: the pod runs in a network namespace, and `ip` (iproute2) to enter it was not found on PATH");
                return ExitCodes.Failed;
            }
            var (netnsArgs, netnsEnv) = PrepareInNetns(program, command, target.Pod, netns);
            psi = new ProcessStartInfo(ip) { UseShellExecute = false };
            foreach (var a in netnsArgs) psi.ArgumentList.Add(a);
            // Captured, not proxied: a proxy setting of the caller's shell would take the command around the capture.
            foreach (var name in ProxyVariables) psi.Environment.Remove(name);
            foreach (var (k, v) in netnsEnv) psi.Environment[k] = v;
        }
        else
        {
            var (args, env) = Prepare(command, target);
            if (target.Pod.InMesh && !await WaitForListenerAsync(target).ConfigureAwait(false))
            {
                Console.Error.WriteLine($"warning: the ztunnel's SOCKS5 listener {target.Address}:{MeshPorts.Socks5} of pod " +
                    $"{target.Pod.Namespace}/{target.Pod.Name} does not answer; see `ambientctl local status`");
            }
            psi = new ProcessStartInfo(program) { UseShellExecute = false };
            foreach (var a in args) psi.ArgumentList.Add(a);
            foreach (var (k, v) in env) psi.Environment[k] = v;
        }
        using var process = Process.Start(psi)!;
        await process.WaitForExitAsync().ConfigureAwait(false);
        return process.ExitCode;
    }

    /// <summary>The resources of the running mesh's config, as istiod-lite reads them (for deploy/NAME).</summary>
    internal static IReadOnlyList<Ambient.Core.Config.Resource> ConfigResources(LocalState state)
    {
        return new LoadedConfig(state.ConfigFolder, MeshConfig.Read(state.ConfigFolder), state).AllResources;
    }

    /// <summary>The config's problems as the supervisor last saw them: the mesh keeps running its last good state.</summary>
    internal static void PrintConfigProblems(LocalState state, TextWriter error)
    {
        if (state.ConfigErrors is not { Count: > 0 } errors) return;
        error.WriteLine($"warning: the config has {errors.Count} problem(s); the mesh runs its last good state (`ambientctl local status` shows them):");
        foreach (var e in errors) error.WriteLine($"warning:   {e}");
    }

    /// <summary>
    /// Arguments and environment for the command. In the mesh: ALL_PROXY, and curl gets --socks5-hostname so names
    /// resolve in the mesh. Outside it: no proxy; curl gets --interface POD_IP so peers see the pod's own address.
    /// </summary>
    internal static (List<string> Args, Dictionary<string, string> Env) Prepare(string[] command, ComponentRecord pod)
    {
        var inMesh = pod.Pod?.InMesh ?? false;
        var socks = $"{pod.Address}:{MeshPorts.Socks5}";
        var args = new List<string>();
        if (Path.GetFileNameWithoutExtension(command[0]) == "curl")
        {
            args.Add(inMesh ? "--socks5-hostname" : "--interface");
            args.Add(inMesh ? socks : pod.Address!);
        }
        for (var i = 1; i < command.Length; i++) args.Add(command[i]);
        var env = new Dictionary<string, string>(pod.Pod?.Env ?? new Dictionary<string, string>(), StringComparer.Ordinal);
        if (inMesh)
        {
            env["ALL_PROXY"] = "socks5h://" + socks;
            env["all_proxy"] = "socks5h://" + socks;
        }
        return (args, env);
    }

    /// <summary>The environment variables curl, wget and most HTTP libraries take a proxy from.</summary>
    internal static readonly string[] ProxyVariables =
        ["ALL_PROXY", "all_proxy", "HTTP_PROXY", "http_proxy", "HTTPS_PROXY", "https_proxy", "NO_PROXY", "no_proxy"];

    /// <summary>
    /// Netns mode: `ip netns exec NETNS PROGRAM ARGS` (`ip` is the file to run), as the supervisor starts the pod's own
    /// programs: inside the pod's network namespace, with the pod's /etc/netns resolv.conf, and no proxy of any kind;
    /// the pod's node agent rules capture its connections, in the mesh or not, as for the pod's own processes.
    /// </summary>
    internal static (List<string> Args, Dictionary<string, string> Env) PrepareInNetns(string program, string[] command, PodRecord pod, string netns)
    {
        var args = new List<string> { "netns", "exec", netns, program };
        for (var i = 1; i < command.Length; i++) args.Add(command[i]);
        var env = new Dictionary<string, string>(pod.Env, StringComparer.Ordinal);
        foreach (var name in ProxyVariables) env.Remove(name);
        return (args, env);
    }

    private static async Task<bool> WaitForListenerAsync(ComponentRecord pod)
    {
        var endpoint = new IPEndPoint(IPAddress.Parse(pod.Address!), MeshPorts.Socks5);
        var sw = Stopwatch.StartNew();
        while (true)
        {
            if (await LocalMesh.CanConnectAsync(endpoint).ConfigureAwait(false)) return true;
            if (sw.Elapsed > ListenerWait) return false;
            await Task.Delay(100).ConfigureAwait(false);
        }
    }

    /// <summary>A running pod of the recorded mesh by name (or namespace/name).</summary>
    internal static ComponentRecord? FindPod(LocalState state, string name, string? ns, out string? error)
    {
        var slash = name.IndexOf('/', StringComparison.Ordinal);
        if (slash > 0)
        {
            ns = name[..slash];
            name = name[(slash + 1)..];
        }
        var found = new List<ComponentRecord>();
        foreach (var c in state.Components)
        {
            if (c.Pod is { } p && p.Name == name && (ns is null || p.Namespace == ns) && !found.Exists(f => f.Pod!.Namespace == p.Namespace)) found.Add(c);
        }
        error = found.Count switch
        {
            0 => $"exec: no pod '{(ns is null ? name : ns + "/" + name)}' runs in the mesh from {state.ConfigFolder}",
            > 1 => $"exec: pod '{name}' exists in several namespaces ({string.Join(", ", found.ConvertAll(f => f.Pod!.Namespace))}); use -n NAMESPACE",
            _ => null,
        };
        return found.Count == 1 ? found[0] : null;
    }
}

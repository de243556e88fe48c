using System.CommandLine;
using System.Diagnostics;
using Ambient.Ctl.Local;

namespace Ambient.Ctl.Cli;

/// <summary>
/// `ambientctl exec POD -- CMD ...`: runs a host command "from" a pod of the running local mesh. The command gets
/// ALL_PROXY=socks5h://POD_IP:15080 (and curl gets --socks5-hostname), so its connections enter the mesh through
/// the pod's node ztunnel exactly as the pod's own traffic would.
/// </summary>
internal static class ExecCommand
{
    public static Command Build()
    {
        var pod = new Argument<string>("pod") { Description = "pod name, or namespace/name" };
        var ns = new Option<string?>("--namespace", "-n") { Description = "the pod's namespace (needed when the name is not unique)" };
        var command = new Argument<string[]>("command") { Description = "the command and its arguments, after --", Arity = ArgumentArity.OneOrMore };
        var exec = new Command("exec", "Run a command from a pod's network identity (through its node's ztunnel)") { pod, ns, command };
        exec.SetAction(async (parse, _) => await RunAsync(parse.GetValue(pod)!, parse.GetValue(ns), parse.GetValue(command)!).ConfigureAwait(false));
        return exec;
    }

    internal static async Task<int> RunAsync(string podName, string? ns, string[] command)
    {
        if (LocalCommands.RunningMesh(out var state) is not { } supervisor || state is null)
        {
            Console.Error.WriteLine("no local mesh is running; start one with `ambientctl local up -f DIR`");
            return ExitCodes.Failed;
        }
        supervisor.Dispose();
        var plan = MeshPlan.Load(state.ConfigFolder, out var errors);
        if (plan is null)
        {
            LocalCommands.PrintErrors(Console.Error, errors);
            return ExitCodes.Failed;
        }
        var target = FindPod(plan, podName, ns, out var error);
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
        var psi = new ProcessStartInfo(program) { UseShellExecute = false };
        foreach (var a in WithProxy(command, target)) psi.ArgumentList.Add(a);
        foreach (var (k, v) in LocalMesh.PodEnvironment(target)) psi.Environment[k] = v;
        var proxy = $"socks5h://{target.Address}:{LocalMeshOptions.SocksPort}";
        psi.Environment["ALL_PROXY"] = proxy;
        psi.Environment["all_proxy"] = proxy;
        using var process = Process.Start(psi)!;
        await process.WaitForExitAsync().ConfigureAwait(false);
        return process.ExitCode;
    }

    /// <summary>The arguments after the program; curl also gets --socks5-hostname so names resolve in the mesh.</summary>
    internal static List<string> WithProxy(string[] command, ContainerPlan pod)
    {
        var args = new List<string>();
        if (Path.GetFileNameWithoutExtension(command[0]) == "curl")
        {
            args.Add("--socks5-hostname");
            args.Add($"{pod.Address}:{LocalMeshOptions.SocksPort}");
        }
        for (var i = 1; i < command.Length; i++) args.Add(command[i]);
        return args;
    }

    internal static ContainerPlan? FindPod(MeshPlan plan, string name, string? ns, out string? error)
    {
        var slash = name.IndexOf('/', StringComparison.Ordinal);
        if (slash > 0)
        {
            ns = name[..slash];
            name = name[(slash + 1)..];
        }
        var found = new List<ContainerPlan>();
        foreach (var c in plan.Containers)
        {
            if (c.Pod == name && (ns is null || c.Namespace == ns) && !found.Exists(f => f.Namespace == c.Namespace)) found.Add(c);
        }
        error = found.Count switch
        {
            0 => $"exec: no pod '{(ns is null ? name : ns + "/" + name)}' in {plan.ConfigFolder}",
            > 1 => $"exec: pod '{name}' exists in several namespaces ({string.Join(", ", found.ConvertAll(f => f.Namespace))}); use -n NAMESPACE",
            _ => null,
        };
        return found.Count == 1 ? found[0] : null;
    }
}

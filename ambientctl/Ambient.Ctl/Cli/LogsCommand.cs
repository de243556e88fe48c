using System.CommandLine;
using System.Text;
using Ambient.Ctl.Inspect;
using Ambient.Ctl.Local;

namespace Ambient.Ctl.Cli;

/// <summary>
/// `ambientctl logs POD|deploy/NAME [-n NS] [-c CONTAINER] [--tail N] [-f]`: a pod's stdout and stderr, as kubectl logs
/// prints them. The supervisor writes every line of each pod container to its own file (the state folder's
/// logs/pod-&lt;ns&gt;-&lt;pod&gt;[-&lt;container&gt;].log, recorded in the state file), kept across restarts.
/// </summary>
internal static class LogsCommand
{
    private static readonly TimeSpan FollowPoll = TimeSpan.FromMilliseconds(200);

    public static Command Build()
    {
        var pod = new Argument<string>("pod") { Description = "pod name, pod/NAME or deploy/NAME (the Deployment's first ready pod)" };
        var ns = new Option<string?>("--namespace", "-n") { Description = "the pod's namespace" };
        var container = new Option<string?>("--container", "-c") { Description = "the container (default: the pod's first)" };
        var tail = new Option<int>("--tail") { Description = "only the last N lines (-1: all)", DefaultValueFactory = _ => -1 };
        var follow = new Option<bool>("--follow", "-f") { Description = "keep printing new lines until interrupted" };
        var logs = new Command("logs", "Print a pod's stdout and stderr") { pod, ns, container, tail, follow };
        logs.SetAction(async (parse, ct) =>
        {
            if (LocalCommands.RunningMesh(out var state) is not { } supervisor || state is null)
            {
                Console.Error.WriteLine("logs: no local mesh is running; start one with `ambientctl local up -f PATH`");
                return ExitCodes.Failed;
            }
            supervisor.Dispose();
            var file = Find(state, parse.GetValue(pod)!, parse.GetValue(ns), parse.GetValue(container), () => ExecCommand.ConfigResources(state), Console.Error);
            if (file is null) return ExitCodes.InvalidInput;
            return await PrintAsync(file, parse.GetValue(tail), parse.GetValue(follow), Console.Out, ct).ConfigureAwait(false);
        });
        return logs;
    }

    /// <summary>The log file of the pod's container, or null after printing why.</summary>
    internal static string? Find(LocalState state, string target, string? ns, string? container, Func<IReadOnlyList<Ambient.Core.Config.Resource>> readConfig,
        TextWriter error)
    {
        if (PodTargets.Resolve(target, ns, state, readConfig, TemplateHashDeploymentPods.Instance, "logs", out var resolveError) is not { } named)
        {
            error.WriteLine(resolveError);
            return null;
        }
        var pod = ExecCommand.FindPod(state, named.Name, named.Namespace, out var findError);
        if (pod?.Pod is null)
        {
            error.WriteLine(findError?.Replace("exec:", "logs:", StringComparison.Ordinal));
            return null;
        }
        var containers = state.Components.Where(c => c.Pod is { } p && p.Namespace == pod.Pod.Namespace && p.Name == pod.Pod.Name).ToList();
        if (container is null)
        {
            if (containers.Count > 1)
            {
                error.WriteLine($"Defaulted container \"{ContainerName(containers[0])}\" out of: {string.Join(", ", containers.Select(ContainerName))}");
            }
            return containers[0].Log;
        }
        var chosen = containers.Find(c => ContainerName(c) == container);
        if (chosen is null)
        {
            error.WriteLine($"logs: container {container} is not valid for pod {pod.Pod.Name} (containers: {string.Join(", ", containers.Select(ContainerName))})");
            return null;
        }
        return chosen.Log;
    }

    // Component names are pod-<ns>-<pod> for one container, pod-<ns>-<pod>-<container> for several.
    private static string ContainerName(ComponentRecord c)
    {
        var single = "pod-" + c.Pod!.Namespace + "-" + c.Pod.Name;
        return c.Name.Length > single.Length + 1 && c.Name.StartsWith(single + "-", StringComparison.Ordinal) ? c.Name[(single.Length + 1)..] : c.Name;
    }

    /// <summary>Prints the file (its last <paramref name="tail"/> lines when tail &gt;= 0) and, following, what is appended until cancelled.</summary>
    internal static async Task<int> PrintAsync(string file, int tail, bool follow, TextWriter output, CancellationToken ct)
    {
        if (!File.Exists(file))
        {
            if (!follow) return ExitCodes.Ok; // nothing written yet
        }
        long position = 0;
        if (File.Exists(file))
        {
            await using var stream = new FileStream(file, FileMode.Open, FileAccess.Read, FileShare.ReadWrite | FileShare.Delete);
            var lines = await TailAsync(stream, tail, ct).ConfigureAwait(false);
            position = stream.Position; // read to the end: following starts from what was there then
            foreach (var line in lines) await output.WriteLineAsync(line).ConfigureAwait(false);
            await output.FlushAsync(ct).ConfigureAwait(false);
        }
        if (!follow) return ExitCodes.Ok;
        var pending = new StringBuilder();
        try
        {
            while (true)
            {
                await Task.Delay(FollowPoll, ct).ConfigureAwait(false);
                if (!File.Exists(file)) continue;
                await using var stream = new FileStream(file, FileMode.Open, FileAccess.Read, FileShare.ReadWrite | FileShare.Delete);
                if (stream.Length < position) position = 0; // truncated or replaced: start over
                if (stream.Length == position) continue;
                stream.Seek(position, SeekOrigin.Begin);
                using var reader = new StreamReader(stream, Encoding.UTF8, detectEncodingFromByteOrderMarks: false, leaveOpen: true);
                pending.Append(await reader.ReadToEndAsync(ct).ConfigureAwait(false));
                position = stream.Length;
                // Whole lines only: a line being written is printed once its newline arrives.
                var text = pending.ToString();
                var end = text.LastIndexOf('\n');
                if (end < 0) continue;
                await output.WriteAsync(text.AsMemory(0, end + 1), ct).ConfigureAwait(false);
                await output.FlushAsync(ct).ConfigureAwait(false);
                pending.Remove(0, end + 1);
            }
        }
        catch (OperationCanceledException) when (ct.IsCancellationRequested)
        {
            return ExitCodes.Ok;
        }
    }

    /// <summary>The last <paramref name="count"/> lines (every line when negative), keeping only those in memory.</summary>
    private static async Task<List<string>> TailAsync(Stream stream, int count, CancellationToken ct)
    {
        using var reader = new StreamReader(stream, Encoding.UTF8, detectEncodingFromByteOrderMarks: false, leaveOpen: true);
        var lines = new Queue<string>();
        while (await reader.ReadLineAsync(ct).ConfigureAwait(false) is { } line)
        {
            if (count == 0) continue;
            lines.Enqueue(line);
            if (count > 0 && lines.Count > count) lines.Dequeue();
        }
        return [.. lines];
    }
}

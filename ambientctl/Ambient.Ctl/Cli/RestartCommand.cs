using System.CommandLine;
using System.Diagnostics;
using Ambient.Core.Files;
using Ambient.Ctl.Local;

namespace Ambient.Ctl.Cli;

/// <summary>
/// `ambientctl local restart ztunnel [--node N]`: an upgrade of a node's ztunnel (its program as it is on disk now)
/// without dropping a connection, in netns mode. The running supervisor starts the new ztunnel, its node agent hands
/// it every pod with the listening sockets the old one passes over, and only then is the old one stopped: it stops
/// accepting and drains. Without --node every node's ztunnel, one after the other.
/// </summary>
internal static class RestartCommand
{
    private static readonly TimeSpan PollInterval = TimeSpan.FromMilliseconds(100);

    public static Command Build()
    {
        var node = new Option<string?>("--node") { Description = "only this node's ztunnel (default: every node's, one after the other)" };
        var timeout = new Option<int>("--timeout") { Description = "seconds to wait for each node (the old ztunnel's drain included)", DefaultValueFactory = _ => 120 };
        var ztunnel = new Command("ztunnel", "Replace a node's ztunnel without dropping connections (netns mode): the new one takes over the pods' listeners, then the old one drains")
        {
            node, timeout,
        };
        ztunnel.SetAction(async (parse, ct) =>
            await RunAsync(Console.Out, Console.Error, parse.GetValue(node), TimeSpan.FromSeconds(parse.GetValue(timeout)), ct).ConfigureAwait(false));
        return new Command("restart", "Restart a component of the running local mesh") { ztunnel };
    }

    internal static async Task<int> RunAsync(TextWriter output, TextWriter error, string? node, TimeSpan timeout, CancellationToken ct)
    {
        using var supervisor = LocalCommands.RunningMesh(out var state);
        if (supervisor is null || state is null)
        {
            error.WriteLine("no local mesh is running (start one with `ambientctl local up --detach`)");
            return ExitCodes.Failed;
        }
        if (state.PodCidr is null)
        {
            error.WriteLine("restarting a ztunnel without dropping connections needs netns mode (`local up --network netns`): in loopback mode its listeners are on the pods' addresses in the host's namespace and cannot be handed over");
            return ExitCodes.Failed;
        }
        var nodes = new List<string>();
        foreach (var c in state.Components)
        {
            if (c.Kind == "ztunnel" && c.Node is { } n && (node is null || n == node)) nodes.Add(n);
        }
        if (nodes.Count == 0)
        {
            error.WriteLine(node is null ? "the mesh runs no ztunnel" : $"no ztunnel runs for node {node}");
            return ExitCodes.Failed;
        }
        foreach (var n in nodes)
        {
            var result = ZtunnelUpgrades.ResultPath(state.StateFolder, n);
            try { File.Delete(result); } catch (IOException) { }
            PrivateFile.Write(ZtunnelUpgrades.RequestPath(state.StateFolder, n), "restart\n");
            var clock = Stopwatch.StartNew();
            string? answer = null;
            while (clock.Elapsed < timeout)
            {
                if (File.Exists(result))
                {
                    answer = File.ReadAllText(result).Trim();
                    File.Delete(result);
                    break;
                }
                await Task.Delay(PollInterval, ct).ConfigureAwait(false);
            }
            if (answer is null)
            {
                error.WriteLine($"ztunnel {n}: no answer within {timeout.TotalSeconds:0} s; see `ambientctl local status` and the supervisor's output");
                return ExitCodes.Failed;
            }
            var parts = answer.Split(' ');
            if (parts is ["ok", var oldPid, var newPid])
            {
                output.WriteLine($"ztunnel {n}: pid {newPid} serves every pod (listeners handed over); pid {oldPid} stopped accepting and drains its open connections ({clock.Elapsed.TotalSeconds:F1} s)");
                continue;
            }
            error.WriteLine($"ztunnel {n}: {answer}");
            return ExitCodes.Failed;
        }
        return ExitCodes.Ok;
    }
}

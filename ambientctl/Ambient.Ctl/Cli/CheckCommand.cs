using System.CommandLine;
using Ambient.Ctl.Install;
using Ambient.Ctl.Kube;
using k8s;

namespace Ambient.Ctl.Cli;

/// <summary>
/// `ambientctl check`: is the mesh on the cluster complete and ready? Prints each part (CRDs, mesh CA, istiod-lite,
/// ztunnels, node agents) and exits 0 only when all are; otherwise 1, naming what is missing or not ready.
/// </summary>
internal static class CheckCommand
{
    public static Command Build()
    {
        var kube = new KubeOptions();
        var check = new Command("check", "Check the mesh on the cluster: CRDs, mesh CA, istiod-lite, ztunnels, node agents; exit 1 unless all are ready");
        kube.AddTo(check);
        check.SetAction(async (parse, cancellationToken) =>
        {
            return await ClusterCommands.RunAsync(kube.Read(parse), "check", Console.Error,
                client => RunAsync(client, Console.Out, Console.Error, OutputStyle.Stdout, cancellationToken)).ConfigureAwait(false);
        });
        return check;
    }

    internal static async Task<int> RunAsync(IKubernetes client, TextWriter output, TextWriter error, OutputStyle style, CancellationToken cancellationToken)
    {
        IReadOnlyList<CheckItem> items;
        try
        {
            items = await MeshCheck.RunAsync(client, cancellationToken).ConfigureAwait(false);
        }
        catch (Exception e) when (KubeReads.DescribeFailure(e) is { } failure)
        {
            error.WriteLine("check: " + failure);
            return ExitCodes.Failed;
        }
        var table = new TextTable("component", "state", "detail");
        List<string> failing = [];
        foreach (var item in items)
        {
            table.AddRow(item.Name, item.Ok ? new Cell("ok", Tone.Good) : new Cell("fail", Tone.Bad), item.Detail);
            if (!item.Ok) failing.Add($"{item.Name}: {item.Detail}");
        }
        output.Write(table.Render(style));
        if (failing.Count == 0)
        {
            output.WriteLine("the mesh is ready");
            return ExitCodes.Ok;
        }
        error.WriteLine($"check: {failing.Count} not ready:");
        foreach (var line in failing) error.WriteLine("  " + line);
        return ExitCodes.Failed;
    }
}

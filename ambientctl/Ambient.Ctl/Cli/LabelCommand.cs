using System.CommandLine;
using Ambient.Ctl.Inspect;
using Ambient.Ctl.Kube;
using Ambient.Ctl.Labels;

namespace Ambient.Ctl.Cli;

/// <summary>
/// `ambientctl label namespace NAME KEY=VALUE|KEY-`: edits the Namespace in the running mesh's config (or -f PATH, a
/// file or a folder); istiod-lite watches it and pushes the change, so enrolment switches without restarting anything.
/// As kubectl, it labels only a namespace that exists: a typo is an error, never a new namespace. In Kubernetes mode
/// (<see cref="MeshTarget"/>) it patches the Namespace object instead.
/// </summary>
internal static class LabelCommand
{
    public static Command Build()
    {
        var kind = new Argument<string>("kind") { Description = "namespace (the only kind labelled here)" };
        var name = new Argument<string>("name") { Description = "the namespace" };
        var change = new Argument<string>("label") { Description = "KEY=VALUE to set, KEY- to remove (e.g. istio.io/dataplane-mode=ambient)" };
        var file = new Option<string?>("--file", "-f") { Description = "the mesh config, a YAML file or a folder of them (default: the running local mesh's)" };
        var label = new Command("label", "Set or remove a label of an existing namespace in the mesh config (picked up live) or cluster") { kind, name, change, file };
        var kube = new KubeOptions();
        kube.AddTo(label);
        label.SetAction(async (parse, ct) =>
        {
            var connection = kube.Read(parse);
            if (MeshTarget.UseCluster(parse.GetValue(file), connection))
            {
                return await RunClusterAsync(connection, parse.GetValue(kind)!, parse.GetValue(name)!, parse.GetValue(change)!, Console.Out, Console.Error, ct).ConfigureAwait(false);
            }
            return Run(parse.GetValue(kind)!, parse.GetValue(name)!, parse.GetValue(change)!,
                parse.GetValue(file) is { } path ? Path.GetFullPath(path) : null, Console.Out, Console.Error);
        });
        return label;
    }

    private static LabelChange? Validate(string kind, string changeText, TextWriter error)
    {
        if (kind is not ("namespace" or "namespaces" or "ns"))
        {
            error.WriteLine($"label: only namespaces can be labelled here, not '{kind}'");
            return null;
        }
        var change = LabelChange.Parse(changeText, out var parseError);
        if (change is null) error.WriteLine($"label: {parseError}");
        return change;
    }

    internal static async Task<int> RunClusterAsync(KubeConnection connection, string kind, string name, string changeText, TextWriter output, TextWriter error, CancellationToken ct)
    {
        if (Validate(kind, changeText, error) is not { } change) return ExitCodes.InvalidInput;
        return await ClusterCommands.RunAsync(connection, "label", error,
            client => ClusterCommands.LabelAsync(client, name, change, output, error, ct)).ConfigureAwait(false);
    }

    internal static int Run(string kind, string name, string changeText, string? config, TextWriter output, TextWriter error)
    {
        if (Validate(kind, changeText, error) is not { } change) return ExitCodes.InvalidInput;
        config = MeshConfig.Locate(config, "label", out _, out var locateError);
        if (config is null)
        {
            error.WriteLine(locateError);
            return ExitCodes.InvalidInput;
        }
        var written = NamespaceLabelEditor.Apply(config, name, change, out var changed, out var editError, out var brokenFiles);
        if (written is null && editError is null)
        {
            // kubectl: Error from server (NotFound): namespaces "nosuch" not found
            error.WriteLine($"label: namespace \"{name}\" not found in {config}" + (brokenFiles == 0 ? ""
                : $" ({brokenFiles} file(s) there have errors and may hide it; `ambientctl local status` lists them)"));
            return ExitCodes.InvalidInput;
        }
        if (editError is not null)
        {
            error.WriteLine($"label: {editError}");
            return ExitCodes.Failed;
        }
        var what = change.Value is null ? $"{change.Key} removed from" : $"{change.Key}={change.Value} on";
        output.WriteLine(changed ? $"namespace/{name} labelled ({what} it) in {written}" : $"namespace/{name} unchanged ({what} it already)");
        return ExitCodes.Ok;
    }
}

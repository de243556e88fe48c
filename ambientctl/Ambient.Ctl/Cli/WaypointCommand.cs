using System.CommandLine;
using System.Diagnostics;
using Ambient.Core.Config;
using Ambient.Ctl.Inspect;
using Ambient.Ctl.Kube;
using Ambient.Ctl.Labels;
using Ambient.Ctl.Local;
using Ambient.Ctl.Waypoints;

namespace Ambient.Ctl.Cli;

/// <summary>
/// `ambientctl waypoint apply|list|status|delete`, as `istioctl waypoint`: in local mode a waypoint is a Gateway of
/// class istio-waypoint in the mesh folder (see <see cref="WaypointFiles"/>); istiod-lite and the supervisor pick it up
/// like any edit. In Kubernetes mode (<see cref="MeshTarget"/>) it is the same Gateway in the cluster, and a waypoint
/// serves once its Gateway is Programmed.
/// </summary>
internal static class WaypointCommand
{
    private static readonly TimeSpan PollInterval = TimeSpan.FromMilliseconds(250);

    public static Command Build()
    {
        var waypoint = new Command("waypoint", "Manage waypoints (per-namespace L7 proxies), as istioctl waypoint");
        waypoint.Subcommands.Add(BuildApply());
        waypoint.Subcommands.Add(BuildList());
        waypoint.Subcommands.Add(BuildStatus());
        waypoint.Subcommands.Add(BuildDelete());
        return waypoint;
    }

    private static Option<string?> Namespace() => new("--namespace", "-n") { Description = "the namespace (default: default)" };
    private static Option<string?> File() => new("--file", "-f") { Description = "the mesh config folder (default: the running local mesh's)" };

    private static Command BuildApply()
    {
        var ns = Namespace();
        var name = new Option<string>("--name") { Description = "the waypoint's name", DefaultValueFactory = _ => "waypoint" };
        var @for = new Option<string>("--for") { Description = "the traffic it takes: service, workload, all or none", DefaultValueFactory = _ => WaypointLabels.DefaultFor };
        @for.AcceptOnlyFromAmong(WaypointSpec.ForValues);
        var enroll = new Option<bool>("--enroll-namespace") { Description = $"also label the namespace {WaypointLabels.Use}=NAME" };
        var wait = new Option<bool>("--wait") { Description = "return once the waypoint is serving" };
        var timeout = new Option<TimeSpan>("--timeout")
        {
            Description = "how long --wait waits (like 90s or 2m)",
            DefaultValueFactory = _ => TimeSpan.FromSeconds(60),
            CustomParser = result =>
            {
                var text = result.Tokens.Count > 0 ? result.Tokens[0].Value : "";
                if (ParseTimeout(text) is { } value) return value;
                result.AddError($"--timeout '{text}' is not a duration (like 90s, 2m or 1h)");
                return default;
            },
        };
        var file = File();
        var apply = new Command("apply", "Write a waypoint Gateway into the mesh config or cluster") { ns, name, @for, enroll, wait, timeout, file };
        var kube = new KubeOptions();
        kube.AddTo(apply);
        apply.SetAction(async (parse, ct) =>
        {
            var connection = kube.Read(parse);
            if (MeshTarget.UseCluster(parse.GetValue(file), connection))
            {
                var clusterSpec = new WaypointSpec(parse.GetValue(ns) ?? "default", parse.GetValue(name)!, parse.GetValue(@for)!);
                return await ClusterCommands.RunAsync(connection, "waypoint apply", Console.Error, async client =>
                {
                    var applied = await ClusterCommands.WaypointApplyAsync(client, clusterSpec, parse.GetValue(enroll), Console.Out, Console.Error, ct).ConfigureAwait(false);
                    if (applied != ExitCodes.Ok || !parse.GetValue(wait)) return applied;
                    return await WaitAsync(new ClusterWaypointReadiness(client), clusterSpec, parse.GetValue(timeout), Console.Out, Console.Error, ct).ConfigureAwait(false);
                }).ConfigureAwait(false);
            }
            var config = MeshConfig.Locate(parse.GetValue(file), "waypoint apply", out var running, out var error);
            if (config is null)
            {
                Console.Error.WriteLine(error);
                return ExitCodes.InvalidInput;
            }
            var spec = new WaypointSpec(parse.GetValue(ns) ?? "default", parse.GetValue(name)!, parse.GetValue(@for)!);
            var code = Apply(config, spec, parse.GetValue(enroll), Console.Out, Console.Error);
            if (code != ExitCodes.Ok || !parse.GetValue(wait)) return code;
            if (running is null)
            {
                Console.Error.WriteLine("waypoint apply: --wait needs a running local mesh (`ambientctl local up`)");
                return ExitCodes.Failed;
            }
            return await WaitAsync(LocalStateWaypointReadiness.Default, spec, parse.GetValue(timeout), Console.Out, Console.Error, ct).ConfigureAwait(false);
        });
        return apply;
    }

    internal static int Apply(string config, WaypointSpec spec, bool enrollNamespace, TextWriter output, TextWriter error)
    {
        if (!Directory.Exists(config))
        {
            error.WriteLine($"waypoint apply: {config} is a file; a waypoint is written as a file of its own, so the config must be a folder");
            return ExitCodes.InvalidInput;
        }
        var snapshot = MeshConfig.Read(config);
        if (spec.Namespace != "default" && !snapshot.Resources.Any(r => r is NamespaceResource n && n.Metadata.Name == spec.Namespace))
        {
            error.WriteLine($"waypoint apply: namespace \"{spec.Namespace}\" not found in {config}");
            return ExitCodes.InvalidInput;
        }
        if (WaypointFiles.Write(config, snapshot.Resources.AddRange(snapshot.Ignored), spec, out var writeError) is null)
        {
            error.WriteLine($"waypoint apply: {writeError}");
            return ExitCodes.InvalidInput;
        }
        output.WriteLine($"waypoint {spec.Display} applied");
        if (!enrollNamespace) return ExitCodes.Ok;
        NamespaceLabelEditor.Apply(config, spec.Namespace, new LabelChange(WaypointLabels.Use, spec.Name), out _, out var labelError, out _);
        if (labelError is not null || !snapshot.Resources.Any(r => r is NamespaceResource n && n.Metadata.Name == spec.Namespace))
        {
            error.WriteLine($"waypoint apply: cannot label namespace {spec.Namespace}: {labelError ?? "it is not declared (add a Namespace document)"}");
            return ExitCodes.Failed;
        }
        output.WriteLine($"namespace {spec.Namespace} labeled with \"{WaypointLabels.Use}: {spec.Name}\"");
        return ExitCodes.Ok;
    }

    /// <summary>A whole number of seconds, minutes or hours (<c>90s</c>, <c>2m</c>, <c>1h</c>; a bare number is seconds).</summary>
    internal static TimeSpan? ParseTimeout(string text)
    {
        var unit = text.Length > 0 && char.IsAsciiLetter(text[^1]) ? text[^1] : 's';
        var number = text.Length > 0 && char.IsAsciiLetter(text[^1]) ? text[..^1] : text;
        if (!int.TryParse(number, System.Globalization.NumberStyles.None, System.Globalization.CultureInfo.InvariantCulture, out var n)) return null;
        return unit switch
        {
            's' => TimeSpan.FromSeconds(n),
            'm' => TimeSpan.FromMinutes(n),
            'h' => TimeSpan.FromHours(n),
            _ => null,
        };
    }

    internal static async Task<int> WaitAsync(IWaypointReadiness readiness, WaypointSpec spec, TimeSpan timeout, TextWriter output, TextWriter error, CancellationToken ct)
    {
        var clock = Stopwatch.StartNew();
        while (true)
        {
            var (serving, reason) = await readiness.CheckAsync(spec.Namespace, spec.Name, ct).ConfigureAwait(false);
            if (serving)
            {
                output.WriteLine($"waypoint {spec.Display} is serving ({reason})");
                return ExitCodes.Ok;
            }
            if (clock.Elapsed >= timeout)
            {
                error.WriteLine($"waypoint apply: waypoint {spec.Display} is not serving after {timeout.TotalSeconds:0}s: {reason}");
                return ExitCodes.Failed;
            }
            await Task.Delay(PollInterval, ct).ConfigureAwait(false);
        }
    }

    private static Command BuildList()
    {
        var ns = Namespace();
        var all = new Option<bool>("--all-namespaces", "-A") { Description = "every namespace" };
        var file = File();
        var list = new Command("list", "List the waypoints of a namespace") { ns, all, file };
        var kube = new KubeOptions();
        kube.AddTo(list);
        list.SetAction(async (parse, ct) =>
        {
            var connection = kube.Read(parse);
            if (MeshTarget.UseCluster(parse.GetValue(file), connection))
            {
                return await ClusterCommands.RunAsync(connection, "waypoint list", Console.Error, client =>
                    ClusterCommands.WaypointListAsync(client, parse.GetValue(all) ? null : parse.GetValue(ns) ?? "default", Console.Out, OutputStyle.Stdout, ct)).ConfigureAwait(false);
            }
            if (MeshConfig.Load(parse.GetValue(file), "waypoint list", Console.Error) is not { } config) return ExitCodes.InvalidInput;
            return List(config.AllResources, config.Runtime(), parse.GetValue(all) ? null : parse.GetValue(ns) ?? "default", Console.Out, OutputStyle.Stdout);
        });
        return list;
    }

    internal static int List(IReadOnlyList<Resource> resources, MeshRuntime mesh, string? @namespace, TextWriter output, OutputStyle style)
    {
        var waypoints = WaypointFiles.Waypoints(resources, @namespace);
        if (waypoints.Count == 0)
        {
            output.WriteLine("No waypoints found.");
            return ExitCodes.Ok;
        }
        var table = @namespace is null ? new TextTable("namespace", "name", "waypoint-for", "programmed") : new TextTable("name", "waypoint-for", "programmed");
        foreach (var w in waypoints)
        {
            var @for = w.Metadata.Label(WaypointLabels.For) ?? WaypointLabels.DefaultFor;
            var programmed = mesh.Condition(w, "Programmed");
            if (@namespace is null) table.AddRow(w.Metadata.Namespace, w.Metadata.Name, @for, programmed);
            else table.AddRow(w.Metadata.Name, @for, programmed);
        }
        output.Write(table.Render(style));
        return ExitCodes.Ok;
    }

    private static Command BuildStatus()
    {
        var ns = Namespace();
        var name = new Option<string?>("--name") { Description = "one waypoint (default: every waypoint of the namespace)" };
        var file = File();
        var status = new Command("status", "Show whether the waypoints of a namespace are serving") { ns, name, file };
        var kube = new KubeOptions();
        kube.AddTo(status);
        status.SetAction(async (parse, ct) =>
        {
            var connection = kube.Read(parse);
            if (MeshTarget.UseCluster(parse.GetValue(file), connection))
            {
                return await ClusterCommands.RunAsync(connection, "waypoint status", Console.Error, client =>
                    ClusterCommands.WaypointStatusAsync(client, parse.GetValue(ns) ?? "default", parse.GetValue(name), Console.Out, Console.Error, OutputStyle.Stdout, ct)).ConfigureAwait(false);
            }
            if (MeshConfig.Load(parse.GetValue(file), "waypoint status", Console.Error) is not { } config) return ExitCodes.InvalidInput;
            return await StatusAsync(config.AllResources, LocalStateWaypointReadiness.Default, parse.GetValue(ns) ?? "default",
                parse.GetValue(name), Console.Out, Console.Error, OutputStyle.Stdout, ct).ConfigureAwait(false);
        });
        return status;
    }

    internal static async Task<int> StatusAsync(IReadOnlyList<Resource> resources, IWaypointReadiness readiness, string @namespace, string? name,
        TextWriter output, TextWriter error, OutputStyle style, CancellationToken ct)
    {
        var waypoints = WaypointFiles.Waypoints(resources, @namespace).FindAll(w => name is null || w.Metadata.Name == name);
        if (waypoints.Count == 0)
        {
            error.WriteLine(name is null ? $"No waypoints found in namespace {@namespace}." : $"waypoint {@namespace}/{name} not found");
            return name is null ? ExitCodes.Ok : ExitCodes.Failed;
        }
        var table = new TextTable("namespace", "name", "status", "reason");
        var allServing = true;
        foreach (var w in waypoints)
        {
            var (serving, reason) = await readiness.CheckAsync(w.Metadata.Namespace, w.Metadata.Name, ct).ConfigureAwait(false);
            allServing &= serving;
            table.AddRow(w.Metadata.Namespace, w.Metadata.Name, serving ? new Cell("Serving", Tone.Good) : new Cell("NotServing", Tone.Bad), reason);
        }
        output.Write(table.Render(style));
        return allServing ? ExitCodes.Ok : ExitCodes.Failed;
    }

    private static Command BuildDelete()
    {
        var ns = Namespace();
        var names = new Argument<string[]>("name") { Description = "the waypoints to delete", Arity = ArgumentArity.ZeroOrMore };
        var all = new Option<bool>("--all") { Description = "every waypoint of the namespace" };
        var file = File();
        var delete = new Command("delete", "Remove waypoints written by `waypoint apply`") { ns, names, all, file };
        var kube = new KubeOptions();
        kube.AddTo(delete);
        delete.SetAction(async (parse, ct) =>
        {
            var connection = kube.Read(parse);
            if (MeshTarget.UseCluster(parse.GetValue(file), connection))
            {
                return await ClusterCommands.RunAsync(connection, "waypoint delete", Console.Error, client =>
                    ClusterCommands.WaypointDeleteAsync(client, parse.GetValue(ns) ?? "default", parse.GetValue(names) ?? [], parse.GetValue(all), Console.Out, Console.Error, ct)).ConfigureAwait(false);
            }
            var config = MeshConfig.Locate(parse.GetValue(file), "waypoint delete", out _, out var error);
            if (config is null)
            {
                Console.Error.WriteLine(error);
                return ExitCodes.InvalidInput;
            }
            return Delete(config, parse.GetValue(ns) ?? "default", parse.GetValue(names) ?? [], parse.GetValue(all), Console.Out, Console.Error);
        });
        return delete;
    }

    internal static int Delete(string config, string @namespace, string[] names, bool all, TextWriter output, TextWriter error)
    {
        if (names.Length > 0 == all)
        {
            error.WriteLine("waypoint delete: name the waypoints to delete, or --all");
            return ExitCodes.InvalidInput;
        }
        if (!Directory.Exists(config))
        {
            error.WriteLine($"waypoint delete: {config} is a file; waypoints are managed in a config folder");
            return ExitCodes.InvalidInput;
        }
        var snapshot = MeshConfig.Read(config);
        var resources = snapshot.Resources.AddRange(snapshot.Ignored);
        var targets = all ? WaypointFiles.Waypoints(resources, @namespace).ConvertAll(w => w.Metadata.Name) : [.. names];
        if (all && targets.Count == 0) output.WriteLine($"No waypoints found in namespace {@namespace}.");
        var code = ExitCodes.Ok;
        foreach (var name in targets)
        {
            if (WaypointFiles.Delete(resources, config, @namespace, name, out var deleteError) is null)
            {
                error.WriteLine($"waypoint delete: {deleteError}");
                code = ExitCodes.Failed;
                continue;
            }
            output.WriteLine($"waypoint {@namespace}/{name} deleted");
        }
        return code;
    }
}

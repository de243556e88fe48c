using System.Collections.Immutable;
using System.CommandLine;
using System.Diagnostics;
using System.Net;
using Ambient.Config.Yaml;
using Ambient.Core;
using Ambient.Core.Config;
using Ambient.Core.Model;
using Ambient.Ctl.Local;
using Ambient.Ctl.Local.Netns;
using Ambient.Ctl.Local.NodeAgent;

namespace Ambient.Ctl.Cli;

/// <summary>`ambientctl local up|status|down|rotate-root|restart`: the mesh on this machine.</summary>
internal static class LocalCommands
{
    private static readonly TimeSpan ReadyTimeout = TimeSpan.FromSeconds(60);

    public static Command Build()
    {
        var local = new Command("local", "Run a mesh on this machine from Kubernetes-style YAML (a file or a folder)");
        local.Subcommands.Add(BuildUp());
        local.Subcommands.Add(StatusCommand.Build());
        var down = new Command("down", "Stop the local mesh started with --detach (only the processes it started)");
        down.SetAction(async (_, _) => await DownAsync(Console.Out).ConfigureAwait(false));
        local.Subcommands.Add(down);
        local.Subcommands.Add(RotateRootCommand.Build());
        local.Subcommands.Add(RestartCommand.Build());
        return local;
    }

    private static Command BuildUp()
    {
        var file = new Option<string>("--file", "-f")
        {
            Description = "a YAML file or a folder of them (read recursively), as kubectl's -f: Namespace, ServiceAccount, Pod, Service",
            Required = true,
        };
        var state = new Option<DirectoryInfo?>("--state") { Description = "mesh root CA, node tokens and logs (default: .ambient-state beside the config folder, or beside the file's folder)" };
        var control = new Option<string?>("--control-address") { Description = "address istiod-lite listens on (netns mode: a node's bridge address, default the first node's; loopback mode: a loopback address, default 127.0.0.1)" };
        var networkOptions = new NetworkOptions();
        var dnsUpstream = new Option<string[]>("--dns-upstream")
        {
            Description = "IP[:PORT] of the resolver the ztunnels' DNS proxies forward names that are not the mesh's to (repeatable; default: this host's /etc/resolv.conf)",
            AllowMultipleArgumentsPerToken = false,
        };
        var detach = new Option<bool>("--detach", "-d") { Description = "run in the background; see `local status`, stop with `local down`" };
        var quiet = new Option<bool>("--quiet", "-q") { Description = "do not print the components' output (it is always in <state>/logs)" };
        var supervise = new Option<bool>("--supervise") { Description = "internal: the background supervisor of --detach", Hidden = true };
        var up = new Command("up", "Validate the config (a file or a folder), then start istiod-lite, one ztunnel per node and every pod")
        {
            file, state, control, dnsUpstream, detach, quiet, supervise,
        };
        foreach (var option in networkOptions.All) up.Options.Add(option);
        up.SetAction(async (parse, _) =>
        {
            var settings = new UpSettings(Path.GetFullPath(parse.GetValue(file)!), parse.GetValue(state)?.FullName, parse.GetValue(control),
                parse.GetValue(detach), parse.GetValue(quiet), parse.GetValue(supervise))
            {
                Network = NetworkOptions.Choose(parse.GetValue(networkOptions.Network), NetnsMissing(), "local up", Console.Error),
                PodCidr = parse.GetValue(networkOptions.PodCidr)!,
                ServiceCidr = parse.GetValue(networkOptions.ServiceCidr)!,
                NetworkId = parse.GetValue(networkOptions.NetworkId),
                DnsUpstreams = parse.GetValue(dnsUpstream) ?? [],
            };
            return await UpAsync(settings).ConfigureAwait(false);
        });
        return up;
    }

    /// <summary>What this host lacks for netns mode (null: nothing), so the default can fall back to loopback.</summary>
    internal static string? NetnsMissing()
    {
        HostNetworkTools.CheckUsable(out _, out var missing);
        return missing;
    }

    internal sealed record UpSettings(string Folder, string? StateFolder, string? ControlAddress, bool Detach, bool Quiet, bool Supervise)
    {
        public string Network { get; init; } = NetworkOptions.Loopback;
        public string PodCidr { get; init; } = AddressRanges.DefaultPodCidr.ToString();
        public string ServiceCidr { get; init; } = AddressRanges.DefaultServiceCidr.ToString();
        public string? NetworkId { get; init; }
        public string[] DnsUpstreams { get; init; } = [];
    }

    /// <summary>`--dns-upstream` values as the ztunnel takes them (IP or IP:PORT, port 53 when left out); null after an error.</summary>
    internal static ImmutableArray<IPEndPoint>? ParseDnsUpstreams(string[] values, TextWriter error)
    {
        var upstreams = ImmutableArray.CreateBuilder<IPEndPoint>(values.Length);
        foreach (var value in values)
        {
            if (!IPEndPoint.TryParse(value, out var upstream))
            {
                error.WriteLine($"--dns-upstream: '{value}' is not IP or IP:PORT");
                return null;
            }
            upstreams.Add(upstream.Port == 0 ? new IPEndPoint(upstream.Address, 53) : upstream);
        }
        return upstreams.MoveToImmutable();
    }

    /// <summary>Validation errors as `file:line: field: message`, one a line.</summary>
    internal static void PrintErrors(TextWriter error, ImmutableArray<ConfigError> errors)
    {
        error.WriteLine($"invalid mesh config: {errors.Length} problem(s)");
        foreach (var e in errors) error.WriteLine($"  {e}");
    }

    internal static MeshPlan? Validate(string folder, TextWriter error, AddressRanges? ranges = null)
    {
        var plan = MeshPlan.Load(folder, out var errors, ranges);
        if (plan is null) PrintErrors(error, errors);
        return plan;
    }

    internal static IPAddress? ParseControlAddress(string text, TextWriter error)
    {
        if (!IPAddress.TryParse(text, out var ip) || !IPAddress.IsLoopback(ip))
        {
            error.WriteLine($"--control-address: '{text}' is not a loopback address (127.x.y.z)");
            return null;
        }
        return ip;
    }

    /// <summary>Netns mode's address plan, refused with the reason when this host cannot run it (not root, no ip/iptables).</summary>
    internal static AddressRanges? NetnsRanges(UpSettings settings, TextWriter error, out int exitCode)
    {
        exitCode = ExitCodes.Ok;
        if (HostNetworkTools.CheckUsable(out var reason) is null)
        {
            error.WriteLine($"local up: {reason}");
            exitCode = ExitCodes.Failed;
            return null;
        }
        var ranges = AddressRanges.ParseNetns(settings.PodCidr, settings.ServiceCidr, out var rangeError);
        if (ranges is null)
        {
            error.WriteLine($"local up: {rangeError}");
            exitCode = ExitCodes.InvalidInput;
        }
        return ranges;
    }

    /// <summary>
    /// Netns mode's settings for the mesh whose state lives in <paramref name="stateFolder"/>: its network id (given, or
    /// made from the folder) and its node agents; null, said on <paramref name="error"/>, for a bad id.
    /// </summary>
    internal static NetnsSettings? NetnsSettingsFor(UpSettings settings, AddressRanges ranges, string stateFolder, string command, TextWriter error)
    {
        var id = settings.NetworkId ?? NetworkNames.DefaultId(stateFolder);
        if (NetworkNames.Validate(id) is { } idError)
        {
            error.WriteLine($"{command}: {idError}");
            return null;
        }
        // The node agents start with the mesh (one ZDS socket per node in the state folder): pods in the mesh are captured.
        return new NetnsSettings(ranges, id, new LocalNodeAgents(stateFolder));
    }

    private static async Task<int> UpAsync(UpSettings settings)
    {
        AddressRanges? ranges = null;
        if (settings.Network == NetworkOptions.Netns)
        {
            ranges = NetnsRanges(settings, Console.Error, out var refused);
            if (ranges is null) return refused;
        }
        var plan = Validate(settings.Folder, Console.Error, ranges);
        if (plan is null) return ExitCodes.InvalidInput;
        if (ParseDnsUpstreams(settings.DnsUpstreams, Console.Error) is not { } dnsUpstreams) return ExitCodes.InvalidInput;
        var stateFolder = settings.StateFolder ?? LocalMeshOptions.DefaultStateFolder(plan.ConfigFolder);
        NetnsSettings? netns = null;
        IPAddress? control;
        if (ranges is not null)
        {
            netns = NetnsSettingsFor(settings, ranges, stateFolder, "local up", Console.Error);
            if (netns is null) return ExitCodes.InvalidInput;
            // Pods reach istiod-lite (waypoints) only at an address of the host namespace they are routed to: a bridge's.
            control = settings.ControlAddress is null ? plan.Nodes.First().Value : IPAddress.TryParse(settings.ControlAddress, out var given) ? given : null;
            if (control is null)
            {
                Console.Error.WriteLine($"--control-address: '{settings.ControlAddress}' is not an IP address");
                return ExitCodes.InvalidInput;
            }
        }
        else
        {
            control = ParseControlAddress(settings.ControlAddress ?? "127.0.0.1", Console.Error);
            if (control is null) return ExitCodes.InvalidInput;
        }

        if (!settings.Supervise && RunningMesh(out var running) is not null)
        {
            Console.Error.WriteLine($"a local mesh is already running (config {running!.ConfigFolder}, supervisor pid {running.SupervisorPid}); stop it with `ambientctl local down`");
            return ExitCodes.Failed;
        }
        if (netns is not null && !settings.Supervise && LocalState.Read(out _) is { } stale && stale.StateFolder == stateFolder)
        {
            // The last run of this mesh crashed: its programs may still run in its namespaces. Stop them and clean up
            // exactly as `local down` would, before this run makes the same names again.
            await DownAsync(TextWriter.Null).ConfigureAwait(false);
        }
        if (settings.Detach && !settings.Supervise)
        {
            return await DetachAsync(settings, plan, control, stateFolder, netns, dnsUpstreams).ConfigureAwait(false);
        }

        StreamWriter? supervisorLog = null;
        if (settings.Supervise)
        {
            // Nobody reads our stdout in the background: write to a log file instead of a pipe that would fill up.
            supervisorLog = new StreamWriter(Ambient.Core.Files.OwnerOnlyFiles.OpenAppend(Path.Combine(stateFolder, "logs", "ambientctl.log"))) { AutoFlush = true };
            Console.SetOut(supervisorLog);
            Console.SetError(supervisorLog);
        }
        using var stopping = new Stopping();
        var echo = settings.Quiet || settings.Supervise ? null : Console.Out;
        var options = new LocalMeshOptions(stateFolder, control, echo, ReadyTimeout) { Netns = netns, DnsUpstreams = dnsUpstreams };
        LocalMesh mesh;
        try
        {
            mesh = await LocalMesh.StartAsync(plan, options, Report, stopping.Token).ConfigureAwait(false);
        }
        catch (LocalMeshException e)
        {
            Console.Error.WriteLine($"local up failed: {e.Message}");
            return ExitCodes.Failed;
        }
        catch (OperationCanceledException)
        {
            Console.Error.WriteLine("local up: interrupted; stopped everything");
            return ExitCodes.Failed;
        }
        await using (mesh.ConfigureAwait(false))
        {
            PrintSummary(mesh);
            if (!settings.Supervise) Console.WriteLine("the mesh is up; Ctrl-C stops everything");
            try
            {
                await Task.Delay(Timeout.Infinite, stopping.Token).ConfigureAwait(false);
            }
            catch (OperationCanceledException)
            {
            }
            Console.WriteLine("stopping the local mesh ...");
        }
        Console.WriteLine("stopped");
        supervisorLog?.Dispose();
        return ExitCodes.Ok;
    }

    private static void Report(string message) => Console.WriteLine($"ambientctl: {message}");

    /// <summary>Starts `local up --supervise` in its own session and waits until it reports ready or failed.</summary>
    private static async Task<int> DetachAsync(UpSettings settings, MeshPlan plan, IPAddress control, string stateFolder, NetnsSettings? netns,
        ImmutableArray<IPEndPoint> dnsUpstreams)
    {
        // Refuse early, in the foreground, so the user sees a clash at once rather than in a log file.
        try
        {
            // Netns mode's addresses are made by the mesh itself, so nothing can hold them yet.
            if (netns is null) LocalMesh.CheckPorts(plan, new LocalMeshOptions(stateFolder, control, null, ReadyTimeout));
        }
        catch (LocalMeshException e)
        {
            Console.Error.WriteLine($"local up failed: {e.Message}");
            return ExitCodes.Failed;
        }
        var self = Executables.Self();
        // setsid puts the supervisor in its own session: a later Ctrl-C in this terminal does not reach it.
        var setsid = OperatingSystem.IsWindows() ? null : HostPrograms.Resolve("setsid");
        var psi = new ProcessStartInfo(setsid ?? self.FileName)
        {
            UseShellExecute = false,
            RedirectStandardInput = true,
            RedirectStandardOutput = true,
            RedirectStandardError = true,
        };
        if (setsid is not null) psi.ArgumentList.Add(self.FileName);
        foreach (var a in self.PrefixArgs) psi.ArgumentList.Add(a);
        foreach (var a in new[] { "local", "up", "-f", plan.ConfigFolder, "--state", stateFolder, "--control-address", control.ToString(), "--supervise" })
        {
            psi.ArgumentList.Add(a);
        }
        foreach (var upstream in dnsUpstreams)
        {
            psi.ArgumentList.Add("--dns-upstream");
            psi.ArgumentList.Add(upstream.ToString());
        }
        // The supervisor gets the mode this run chose, never a default of its own.
        if (netns is null)
        {
            psi.ArgumentList.Add("--network");
            psi.ArgumentList.Add(NetworkOptions.Loopback);
        }
        else
        {
            foreach (var a in new[] { "--network", NetworkOptions.Netns, "--pod-cidr", netns.Ranges.PodCidr.ToString(), "--service-cidr", netns.Ranges.ServiceCidr.ToString(), "--network-id", netns.Id })
            {
                psi.ArgumentList.Add(a);
            }
        }
        LocalState.Delete();
        using var child = Process.Start(psi)!;
        child.StandardInput.Close();
        var sw = Stopwatch.StartNew();
        while (sw.Elapsed < ReadyTimeout + TimeSpan.FromSeconds(10))
        {
            var state = LocalState.Read(out _);
            if (state is { Phase: LocalState.PhaseReady })
            {
                PrintSummary(state, Console.Out, OutputStyle.Stdout);
                Console.WriteLine($"the mesh runs in the background (supervisor pid {state.SupervisorPid}, log {Path.Combine(stateFolder, "logs", "ambientctl.log")}); stop it with `ambientctl local down`");
                return ExitCodes.Ok;
            }
            if (state is { Phase: LocalState.PhaseFailed })
            {
                Console.Error.WriteLine($"local up failed: {state.Message}");
                await DownAsync(TextWriter.Null).ConfigureAwait(false);
                return ExitCodes.Failed;
            }
            if (child.HasExited && setsid is null || child.HasExited && sw.Elapsed > TimeSpan.FromSeconds(5) && state is null)
            {
                Console.Error.WriteLine($"local up failed: the background supervisor exited (code {child.ExitCode}); see {Path.Combine(stateFolder, "logs", "ambientctl.log")}");
                return ExitCodes.Failed;
            }
            await Task.Delay(200).ConfigureAwait(false);
        }
        Console.Error.WriteLine("local up failed: the background mesh did not become ready in time; stopping it");
        await DownAsync(TextWriter.Null).ConfigureAwait(false);
        return ExitCodes.Failed;
    }

    /// <summary>The recorded mesh if its supervisor is still alive; a stale record (supervisor gone) is reported as none.</summary>
    internal static Process? RunningMesh(out LocalState? state)
    {
        state = LocalState.Read(out _);
        if (state is null) return null;
        return Signals.Find(state.SupervisorPid, state.SupervisorStartTicks);
    }

    private static void PrintSummary(LocalMesh mesh)
    {
        var state = LocalState.Read(out _);
        if (state is not null) PrintSummary(state, Console.Out, OutputStyle.Stdout);
    }

    /// <summary>
    /// What runs and where to reach it, then the one thing loopback mode cannot do: tell pods apart by address.
    /// </summary>
    internal static void PrintSummary(LocalState state, TextWriter output, OutputStyle style)
    {
        // Every endpoint names its address, so there is no address column: the table fits 80 columns.
        var table = new TextTable("component", "pid", "endpoints");
        foreach (var c in state.Components)
        {
            var endpoints = c.Kind switch
            {
                "istiod" => $"grpc {c.Address}:{MeshPorts.IstiodGrpc} http://{c.Address}:{MeshPorts.IstiodMonitoring}/debug/workloads",
                "ztunnel" => $"http://{c.Address}:{MeshPorts.Admin}/config_dump http://{c.Address}:{MeshPorts.Metrics}/metrics",
                // Outside the mesh no ztunnel listens for the pod: it is reached directly, in plain text.
                _ when c.Pod is { InMesh: false } => $"{c.Address} direct (not in the mesh: no ztunnel port)",
                _ => $"socks5h://{c.Address}:{MeshPorts.Socks5}",
            };
            table.AddRow(c.Name, c.Pid.ToString(System.Globalization.CultureInfo.InvariantCulture), endpoints);
        }
        output.Write(table.Render(style));
        output.WriteLine($"logs: {Path.Combine(state.StateFolder, "logs")}/<component>.log");
        // In netns mode a pod is a network namespace of its own: the note is about loopback mode only.
        if (state.PodCidr is not null) return;
        foreach (var line in TextTable.Wrap(LoopbackNote, style.Width)) output.WriteLine(style.Paint(line, Tone.Warn));
    }

    internal const string LoopbackNote =
        "note: in loopback mode pods are processes of one user on one host and an address cannot tell them apart: any host " +
        "process can use a pod's SOCKS5 port, and so its identity. The isolation boundary is the network-namespace mode (coming later).";

    /// <summary>
    /// Netns mode: every process has stopped, so the namespaces, links and chains recorded in the state folder go too
    /// (the supervisor removes them itself when it stops normally; after a crash they are still there).
    /// </summary>
    private static bool CleanUpNetwork(string stateFolder, TextWriter output)
    {
        if (OwnedNetworkRecord.Read(stateFolder) is null) return true;
        if (HostNetworkTools.CheckUsable(out var reason) is not { } tools)
        {
            Console.Error.WriteLine($"cannot remove the network namespaces, links and iptables rules of {stateFolder}: {reason}");
            return false;
        }
        OwnedNetworkCleanup.CleanUpRecorded(stateFolder, tools, line => output.WriteLine(line));
        return true;
    }

    /// <summary>Stops the recorded mesh: its supervisor first (it stops its children), then any recorded process left.</summary>
    internal static async Task<int> DownAsync(TextWriter output)
    {
        var state = LocalState.Read(out var error);
        if (error is not null)
        {
            Console.Error.WriteLine($"cannot read the state file: {error}");
            return ExitCodes.Failed;
        }
        if (state is null)
        {
            output.WriteLine("no local mesh is running");
            return ExitCodes.Ok;
        }
        using (var supervisor = Signals.Find(state.SupervisorPid, state.SupervisorStartTicks))
        {
            if (supervisor is not null && supervisor.Id != Environment.ProcessId)
            {
                output.WriteLine($"stopping supervisor pid {supervisor.Id} ...");
                if (await Signals.StopAsync(supervisor, TimeSpan.FromSeconds(8)).ConfigureAwait(false))
                {
                    output.WriteLine($"supervisor pid {supervisor.Id} did not stop in time; killed");
                }
            }
        }
        var stops = new List<Task>();
        foreach (var c in state.Components)
        {
            var p = c.Pid == 0 ? null : Signals.Find(c.Pid, c.StartTicks);
            if (p is null) continue;
            output.WriteLine($"stopping {c.Name} (pid {c.Pid})");
            stops.Add(Signals.StopAsync(p, TimeSpan.FromSeconds(4)).ContinueWith(_ => p.Dispose(), TaskScheduler.Default));
        }
        await Task.WhenAll(stops).ConfigureAwait(false);
        var cleaned = CleanUpNetwork(state.StateFolder, output);
        LocalState.Delete();
        output.WriteLine("local mesh stopped");
        return cleaned ? ExitCodes.Ok : ExitCodes.Failed;
    }
}

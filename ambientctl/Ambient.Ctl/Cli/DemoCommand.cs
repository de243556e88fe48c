using System.CommandLine;
using System.Diagnostics;
using System.Globalization;
using System.Net;
using Ambient.Core;
using Ambient.Core.Model;
using Ambient.Ctl.Demo;
using Ambient.Ctl.Local;
using Ambient.Ctl.Local.Netns;
using Spectre.Console;

namespace Ambient.Ctl.Cli;

/// <summary>
/// `ambientctl demo [--keep]`: a two-node mesh from the demo folder (copied to a temp folder), traffic from the
/// client, and a table of what each end's ztunnel saw, then a waypoint with an HTTPRoute and what the waypoint saw.
/// Everything the demo adds goes into its temp copy and is removed again. Exits 1 if any check fails.
/// </summary>
internal static class DemoCommand
{
    public static Command Build()
    {
        var keep = new Option<bool>("--keep") { Description = "leave the mesh running (Ctrl-C stops it) and print its URLs" };
        var control = new Option<string?>("--control-address") { Description = "loopback mode: the loopback address istiod-lite listens on (default 127.0.0.1)" };
        var network = new NetworkOptions();
        var demo = new Command("demo", "Run the demo: mTLS between meshed pods, plain text outside, live switch by label, a waypoint with an HTTPRoute") { keep, control };
        foreach (var option in network.All) demo.Options.Add(option);
        demo.SetAction(async (parse, _) =>
        {
            var settings = new LocalCommands.UpSettings("", null, parse.GetValue(control), Detach: false, Quiet: true, Supervise: false)
            {
                Network = NetworkOptions.Choose(parse.GetValue(network.Network), NetnsMissing(), "demo", Console.Error),
                PodCidr = parse.GetValue(network.PodCidr)!,
                ServiceCidr = parse.GetValue(network.ServiceCidr)!,
                NetworkId = parse.GetValue(network.NetworkId),
            };
            return await RunAsync(parse.GetValue(keep), settings).ConfigureAwait(false);
        });
        return demo;
    }

    /// <summary>What netns mode's demo lacks here: what `local up` needs, and curl to run in the client pod.</summary>
    private static string? NetnsMissing() =>
        LocalCommands.NetnsMissing() ?? (HostPrograms.Resolve("curl") is null ? "curl on PATH (the demo runs it in the client pod)" : null);

    private static async Task<int> RunAsync(bool keep, LocalCommands.UpSettings settings)
    {
        AddressRanges? ranges = null;
        IPAddress? control = null;
        if (settings.Network == NetworkOptions.Netns)
        {
            if (NetnsMissing() is { } missing)
            {
                Console.Error.WriteLine($"demo: --network netns needs {missing}; use --network loopback");
                return ExitCodes.Failed;
            }
            ranges = LocalCommands.NetnsRanges(settings, Console.Error, out var refused);
            if (ranges is null) return refused;
            if (settings.ControlAddress is not null)
            {
                Console.Error.WriteLine("demo: --control-address is for loopback mode; in netns mode istiod-lite listens on the first node's bridge");
                return ExitCodes.InvalidInput;
            }
        }
        else
        {
            control = LocalCommands.ParseControlAddress(settings.ControlAddress ?? "127.0.0.1", Console.Error);
            if (control is null) return ExitCodes.InvalidInput;
        }
        if (LocalCommands.RunningMesh(out var running) is { } other)
        {
            other.Dispose();
            Console.Error.WriteLine($"a local mesh is already running (config {running!.ConfigFolder}); stop it with `ambientctl local down`");
            return ExitCodes.Failed;
        }
        if (!await EnsureBuiltAsync().ConfigureAwait(false)) return ExitCodes.Failed;
        var source = Path.Combine(AppContext.BaseDirectory, "demo");
        if (!Directory.Exists(source))
        {
            Console.Error.WriteLine($"demo: the demo folder {source} is missing; rebuild ambientctl");
            return ExitCodes.Failed;
        }
        var root = Path.Combine(Path.GetTempPath(), "ambient-demo-" + Guid.NewGuid().ToString("N")[..8]);
        var folder = Path.Combine(root, "mesh");
        Directory.CreateDirectory(folder);
        foreach (var f in Directory.GetFiles(source, "*.yaml")) File.Copy(f, Path.Combine(folder, Path.GetFileName(f)));
        try
        {
            var state = Path.Combine(root, "state");
            NetnsSettings? netns = null;
            if (ranges is not null)
            {
                netns = LocalCommands.NetnsSettingsFor(settings, ranges, state, "demo", Console.Error);
                if (netns is null) return ExitCodes.InvalidInput;
            }
            return await RunMeshAsync(folder, state, control, netns, keep).ConfigureAwait(false);
        }
        finally
        {
            try { Directory.Delete(root, recursive: true); } catch (IOException) { } catch (UnauthorizedAccessException) { }
        }
    }

    /// <param name="control">Loopback mode's istiod-lite address; null in netns mode (the first node's bridge).</param>
    private static async Task<int> RunMeshAsync(string folder, string state, IPAddress? control, NetnsSettings? netns, bool keep)
    {
        var plan = LocalCommands.Validate(folder, Console.Error, netns?.Ranges);
        if (plan is null) return ExitCodes.Failed;
        using var stopping = new Stopping();
        LocalMesh mesh;
        try
        {
            var options = new LocalMeshOptions(state, control ?? plan.Nodes.First().Value, null, TimeSpan.FromSeconds(60)) { Netns = netns };
            // The spinner only on a terminal that takes colour; a log or a pipe gets the progress lines alone.
            mesh = OutputStyle.Stdout.Color
                ? await AnsiConsole.Status().StartAsync("starting istiod-lite, 2 ztunnels and 4 pods ...", _ =>
                    LocalMesh.StartAsync(plan, options, Report, stopping.Token)).ConfigureAwait(false)
                : await LocalMesh.StartAsync(plan, options, Report, stopping.Token).ConfigureAwait(false);
        }
        catch (LocalMeshException e)
        {
            Console.Error.WriteLine($"demo: {e.Message}");
            return ExitCodes.Failed;
        }
        catch (OperationCanceledException)
        {
            return ExitCodes.Failed;
        }
        await using (mesh.ConfigureAwait(false))
        {
            List<DemoCheck> checks;
            var runner = new DemoRunner(mesh, Report);
            try
            {
                checks = await runner.RunAsync(stopping.Token).ConfigureAwait(false);
            }
            catch (LocalMeshException e)
            {
                Console.Error.WriteLine($"demo: {e.Message}");
                return ExitCodes.Failed;
            }
            catch (OperationCanceledException)
            {
                return ExitCodes.Failed;
            }
            Console.Write(Render(checks, runner.WaypointRequests, OutputStyle.Stdout));
            var failed = checks.FindAll(c => !c.Passed);
            foreach (var f in failed) Console.Error.WriteLine($"FAILED {f.Step}: {f.Problem}");
            if (keep)
            {
                PrintUrls(mesh);
                Console.WriteLine($"the mesh keeps running from {folder}; try `ambientctl exec client -n demo -- curl -s echo.demo.svc.cluster.local`, " +
                    "`ambientctl label namespace demo istio.io/dataplane-mode-`; Ctrl-C stops it");
                try { await Task.Delay(Timeout.Infinite, stopping.Token).ConfigureAwait(false); } catch (OperationCanceledException) { }
            }
            Console.WriteLine("stopping the demo mesh ...");
            return failed.Count == 0 ? ExitCodes.Ok : ExitCodes.Failed;
        }
    }

    private static void Report(string message) => Console.WriteLine(OutputStyle.Stdout.Paint(message, Tone.Dim));

    /// <summary>
    /// The table of checks (too wide for the output, each check becomes a block, identities never cut), then what the
    /// waypoint counted during its steps.
    /// </summary>
    internal static string Render(List<DemoCheck> checks, List<WaypointRequests> waypoint, OutputStyle style)
    {
        var table = new TextTable("step", "source -> destination", "path", "security", "source identity", "destination identity",
            "answered by", "bytes", "latency", "result");
        foreach (var c in checks)
        {
            table.AddRow(c.Step, c.Route, c.Via, new Cell(c.Security, c.Security == "mTLS" ? Tone.Good : Tone.Warn), c.SourceIdentity,
                c.DestinationIdentity, c.Answered, c.Bytes.ToString(CultureInfo.InvariantCulture),
                c.LatencyMs.ToString("0.0", CultureInfo.InvariantCulture) + " ms", c.Passed ? new Cell("ok", Tone.Good) : new Cell("FAILED", Tone.Bad));
        }
        var text = "Ambient demo: what the ztunnels saw\n" + table.Render(style);
        if (waypoint.Count == 0) return text;
        var l7 = new TextTable("source identity", "destination", "destination identity", "response code", "requests");
        foreach (var r in waypoint)
        {
            l7.AddRow(r.SourcePrincipal, r.Destination, r.DestinationPrincipal,
                new Cell(r.ResponseCode, r.ResponseCode.StartsWith('2') ? Tone.Good : Tone.Bad), r.Count.ToString(CultureInfo.InvariantCulture));
        }
        return text + "\nWhat the waypoint saw in steps 6-7 (istio_requests_total, reporter=\"waypoint\")\n" + l7.Render(style);
    }

    private static void PrintUrls(LocalMesh mesh)
    {
        var control = mesh.Options.ControlAddress;
        Console.WriteLine($"istiod-lite: https://{control}:{MeshPorts.IstiodGrpc} (CA + discovery), http://{control}:{MeshPorts.IstiodMonitoring}/debug/workloads");
        foreach (var (node, address) in mesh.Plan.Nodes)
        {
            Console.WriteLine($"ztunnel {node}: http://{address}:{MeshPorts.Admin}/config_dump  http://{address}:{MeshPorts.Metrics}/metrics  http://{address}:{MeshPorts.Readiness}/healthz/ready");
        }
    }

    /// <summary>When the mesh's programs are not next to us, builds the solution we were built from.</summary>
    private static async Task<bool> EnsureBuiltAsync()
    {
        if (Executables.Find(Executables.Istiod, out _) is not null && Executables.Find(Executables.Ztunnel, out _) is not null
            && Executables.Find(Executables.Samples, out _) is not null && Executables.Find(Executables.Waypoint, out _) is not null)
        {
            return true;
        }
        var solution = FindSolution(AppContext.BaseDirectory) ?? FindSolution(Environment.CurrentDirectory);
        if (solution is null)
        {
            Console.Error.WriteLine("demo: istiod-lite/ztunnel are not built and Ambient.sln was not found; run `dotnet build Ambient.sln`");
            return false;
        }
        Console.WriteLine($"building {solution} ...");
        var psi = new ProcessStartInfo(Executables.DotnetHost()) { UseShellExecute = false };
        psi.ArgumentList.Add("build");
        psi.ArgumentList.Add(solution);
        using var build = Process.Start(psi)!;
        await build.WaitForExitAsync().ConfigureAwait(false);
        if (build.ExitCode != 0 || Executables.Find(Executables.Istiod, out _) is null)
        {
            Console.Error.WriteLine($"demo: `dotnet build {solution}` failed (exit {build.ExitCode})");
            return false;
        }
        return true;
    }

    private static string? FindSolution(string start)
    {
        for (var dir = new DirectoryInfo(start); dir is not null; dir = dir.Parent)
        {
            var sln = Path.Combine(dir.FullName, "Ambient.sln");
            if (File.Exists(sln)) return sln;
        }
        return null;
    }
}

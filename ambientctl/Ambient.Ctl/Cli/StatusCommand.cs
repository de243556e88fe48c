using System.CommandLine;
using System.Globalization;
using System.Text.Json;
using System.Text.Json.Serialization;
using Ambient.Ctl.Local;

namespace Ambient.Ctl.Cli;

/// <summary>
/// `ambientctl local status [-o json]`: every process with its readiness (istiod-lite /ready, each ztunnel
/// /healthz/ready, each pod's process), the config's current errors and warnings, and a phase: ready, or degraded
/// with the reason. Exits 0 only when ready, so scripts can wait on it.
/// </summary>
internal static class StatusCommand
{
    private static readonly JsonSerializerOptions Json = new()
    {
        WriteIndented = true,
        PropertyNamingPolicy = JsonNamingPolicy.CamelCase,
        DefaultIgnoreCondition = JsonIgnoreCondition.WhenWritingNull,
    };

    public static Command Build()
    {
        var output = new Option<string>("--output", "-o") { Description = "table (default) or json", DefaultValueFactory = _ => "table" };
        output.AcceptOnlyFromAmong("table", "json");
        var status = new Command("status", "Show the running local mesh: processes, readiness, config errors and warnings; exit 1 unless ready") { output };
        status.SetAction(async (parse, _) => await RunAsync(parse.GetValue(output) == "json", Console.Out, OutputStyle.Stdout).ConfigureAwait(false));
        return status;
    }

    internal static async Task<int> RunAsync(bool json, TextWriter output, OutputStyle style)
    {
        var state = LocalState.Read(out var error);
        if (error is not null)
        {
            Console.Error.WriteLine($"cannot read the state file: {error}");
            return ExitCodes.Failed;
        }
        if (state is null)
        {
            if (json) output.WriteLine("{\n  \"phase\": \"stopped\"\n}");
            else output.WriteLine("no local mesh is running");
            return ExitCodes.Failed;
        }
        var status = await MeshHealth.CheckAsync(state, LiveHealthProbe.Instance).ConfigureAwait(false);
        if (json) output.WriteLine(ToJson(status));
        else Print(status, output, style);
        return status.Ready ? ExitCodes.Ok : ExitCodes.Failed;
    }

    internal static string ToJson(MeshStatus status) => JsonSerializer.Serialize(new
    {
        phase = status.Phase,
        reason = status.Reason,
        configPath = status.State.ConfigFolder,
        stateFolder = status.State.StateFolder,
        supervisor = new { pid = status.State.SupervisorPid, running = status.SupervisorRunning },
        components = status.Components,
        errors = status.Errors,
        warnings = status.Warnings,
    }, Json);

    internal static void Print(MeshStatus status, TextWriter output, OutputStyle style)
    {
        var s = status.State;
        output.WriteLine($"config {s.ConfigFolder}; state {s.StateFolder}");
        output.WriteLine(status.SupervisorRunning
            ? $"supervisor pid {s.SupervisorPid} running"
            : $"supervisor pid {s.SupervisorPid} is gone: the record is stale (`ambientctl local down` cleans up)");
        var phase = style.Paint("phase " + status.Phase, status.Ready ? Tone.Good : Tone.Bad);
        output.WriteLine(status.Reason is null ? phase : $"{phase}: {status.Reason}");
        var table = new TextTable("component", "pid", "state", "restarts", "address", "node", "mesh");
        foreach (var c in status.Components)
        {
            var state = !c.Running ? new Cell("not running", Tone.Bad) : !c.Ready ? new Cell("not ready", Tone.Bad) : new Cell("ready", Tone.Good);
            table.AddRow(c.Name, c.Pid.ToString(CultureInfo.InvariantCulture), state, c.Restarts.ToString(CultureInfo.InvariantCulture),
                c.Address ?? "-", c.Node ?? "-", c.InMesh switch { true => "ambient", false => new Cell("none", Tone.Warn), null => "-" });
        }
        output.Write(table.Render(style));
        if (status.Errors.Count > 0)
        {
            output.WriteLine(style.Paint($"config errors ({status.Errors.Count}); the mesh keeps running the last good state of each file:", Tone.Bad));
            foreach (var e in status.Errors) output.WriteLine("  " + e);
        }
        if (status.Warnings.Count > 0)
        {
            output.WriteLine(style.Paint($"config warnings ({status.Warnings.Count}):", Tone.Warn));
            foreach (var w in status.Warnings) output.WriteLine("  " + w);
        }
    }
}

using Ambient.Core;

namespace Ambient.Ctl.Local;

/// <summary>How `status` looks at the mesh: a process by pid and start time, a component by its readiness URL.</summary>
internal interface IHealthProbe
{
    bool IsRunning(int pid, long startTicks);

    Task<bool> HttpOkAsync(string url);
}

/// <summary>The real thing: the process table and HTTP on loopback.</summary>
internal sealed class LiveHealthProbe : IHealthProbe
{
    public static LiveHealthProbe Instance { get; } = new();

    public bool IsRunning(int pid, long startTicks)
    {
        if (pid == 0) return false;
        using var p = Signals.Find(pid, startTicks);
        return p is not null;
    }

    public Task<bool> HttpOkAsync(string url) => LocalMesh.HttpOkAsync(url);
}

/// <summary>One component as `status` found it.</summary>
internal sealed record ComponentHealth(
    string Name, string Kind, int Pid, int Restarts, string? Address, string? Node, bool? InMesh, bool Running, bool Ready, string? Problem);

/// <summary>The whole mesh as `status` found it: ready only when every process runs and answers and the config is clean.</summary>
internal sealed record MeshStatus(
    string Phase,
    string? Reason,
    bool SupervisorRunning,
    LocalState State,
    IReadOnlyList<ComponentHealth> Components,
    IReadOnlyList<string> Errors,
    IReadOnlyList<string> Warnings)
{
    public const string PhaseDegraded = "degraded";

    public bool Ready => Phase == LocalState.PhaseReady;
}

internal static class MeshHealth
{
    public static async Task<MeshStatus> CheckAsync(LocalState state, IHealthProbe probe)
    {
        var supervisorRunning = probe.IsRunning(state.SupervisorPid, state.SupervisorStartTicks);
        var checks = new Task<ComponentHealth>[state.Components.Count];
        for (var i = 0; i < checks.Length; i++) checks[i] = CheckAsync(state.Components[i], probe);
        var components = await Task.WhenAll(checks).ConfigureAwait(false);
        var errors = state.ConfigErrors ?? [];
        var warnings = state.ConfigWarnings ?? [];

        var reasons = new List<string>();
        if (!supervisorRunning) reasons.Add($"supervisor pid {state.SupervisorPid} is gone");
        var notReady = Array.FindAll(components, c => !c.Ready);
        if (notReady.Length > 0) reasons.Add($"not ready: {string.Join(", ", Array.ConvertAll(notReady, c => c.Name))}");
        if (errors.Count > 0) reasons.Add($"{errors.Count} config error(s)");
        string phase;
        if (state.Phase != LocalState.PhaseReady) phase = state.Phase; // starting or failed: say so rather than "degraded"
        else phase = reasons.Count == 0 ? LocalState.PhaseReady : MeshStatus.PhaseDegraded;
        if (phase != LocalState.PhaseReady && state.Message is { } message) reasons.Insert(0, message);
        return new MeshStatus(phase, reasons.Count == 0 ? null : string.Join("; ", reasons), supervisorRunning, state, components, errors, warnings);
    }

    private static async Task<ComponentHealth> CheckAsync(ComponentRecord c, IHealthProbe probe)
    {
        var running = probe.IsRunning(c.Pid, c.StartTicks);
        var url = c.Kind switch
        {
            "istiod" => $"http://{c.Address}:{MeshPorts.IstiodMonitoring}/ready",
            "ztunnel" => $"http://{c.Address}:{MeshPorts.Readiness}/healthz/ready",
            _ => null, // a pod is ready when its process runs (our pods declare no probes)
        };
        var ready = running && (url is null || await probe.HttpOkAsync(url).ConfigureAwait(false));
        var problem = !running ? "process not running" : !ready ? $"{url} does not answer 200" : null;
        return new ComponentHealth(c.Name, c.Kind, c.Pid, c.Restarts, c.Address, c.Node, c.Pod?.InMesh, running, ready, problem);
    }
}

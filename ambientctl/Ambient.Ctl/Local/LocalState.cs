using System.Text.Json;
using System.Text.Json.Serialization;

namespace Ambient.Ctl.Local;

/// <summary>One running process of the local mesh, as recorded for `local status` and `local down`.</summary>
internal sealed record ComponentRecord(string Name, string Kind, int Pid, long StartTicks, string? Address, string? Node, string Log, int Restarts,
    PodRecord? Pod = null);

/// <summary>
/// What `exec` and `status` need of a running pod, as the supervisor runs it (its last good config): names,
/// enrolment right now, and the environment its process was given.
/// </summary>
internal sealed record PodRecord(string Namespace, string Name, string ServiceAccount, bool InMesh, IReadOnlyDictionary<string, string> Env)
{
    /// <summary>Netns mode: the pod's network namespace (`ip netns exec NAME ...` runs a command as the pod); null on loopback.</summary>
    public string? Netns { get; init; }
}

/// <summary>
/// The small state file of a running local mesh (AMBIENT_HOME/local.json, default ~/.ambient/local.json): who
/// supervises it, where its config and state live, and every process with its pid and start time, so `local
/// down` kills exactly those processes and nothing else; and the problems of the config as the supervisor last read
/// it, so every command shows them while the mesh keeps running its last good state.
/// </summary>
internal sealed record LocalState(
    int SupervisorPid,
    long SupervisorStartTicks,
    string ConfigFolder,
    string StateFolder,
    string ControlAddress,
    string Phase,
    string? Message,
    IReadOnlyList<ComponentRecord> Components,
    IReadOnlyList<string>? ConfigErrors = null,
    IReadOnlyList<string>? ConfigWarnings = null)
{
    /// <summary>Netns mode's pod and service CIDRs (null in loopback mode): `get` shows the addresses of this plan.</summary>
    public string? PodCidr { get; init; }

    public string? ServiceCidr { get; init; }

    /// <summary>The address plan the mesh runs with.</summary>
    public Ambient.Core.Model.AddressRanges Addresses() =>
        PodCidr is { } pods && ServiceCidr is { } services && Ambient.Core.Model.AddressRanges.ParseNetns(pods, services, out _) is { } netns
            ? netns
            : Ambient.Core.Model.AddressRanges.Loopback;

    public const string PhaseStarting = "starting";
    public const string PhaseReady = "ready";
    public const string PhaseFailed = "failed";
    public const string PhaseStopped = "stopped";

    private static readonly JsonSerializerOptions Json = new()
    {
        WriteIndented = true,
        PropertyNamingPolicy = JsonNamingPolicy.CamelCase,
        DefaultIgnoreCondition = JsonIgnoreCondition.WhenWritingNull,
    };

    public static string Home => Environment.GetEnvironmentVariable("AMBIENT_HOME") is { Length: > 0 } home
        ? Path.GetFullPath(home)
        : Path.Combine(Environment.GetFolderPath(Environment.SpecialFolder.UserProfile), ".ambient");

    public static string FilePath => Path.Combine(Home, "local.json");

    public static LocalState? Read(out string? error)
    {
        error = null;
        if (!File.Exists(FilePath)) return null;
        try
        {
            return JsonSerializer.Deserialize<LocalState>(File.ReadAllText(FilePath), Json);
        }
        catch (Exception e) when (e is IOException or JsonException or UnauthorizedAccessException)
        {
            error = $"{FilePath}: {e.Message}";
            return null;
        }
    }

    public void Write()
    {
        Directory.CreateDirectory(Home);
        // Write-then-rename so a reader never sees half a file.
        var temp = FilePath + "." + Environment.ProcessId + ".tmp";
        File.WriteAllText(temp, JsonSerializer.Serialize(this, Json));
        File.Move(temp, FilePath, overwrite: true);
    }

    public static void Delete()
    {
        try { File.Delete(FilePath); } catch (IOException) { }
    }
}

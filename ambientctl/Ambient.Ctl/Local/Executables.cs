namespace Ambient.Ctl.Local;

/// <summary>How to start one of the mesh's programs: a file name and the arguments that come before ours.</summary>
internal sealed record Launcher(string FileName, IReadOnlyList<string> PrefixArgs, string Describe);

/// <summary>
/// Finds istiod-lite, ztunnel and the sample images. They are built next to ambientctl (Ambient.Ctl references
/// their projects), so the first place to look is this assembly's folder; AMBIENT_BIN overrides it.
/// Each is run through its apphost when there is one, else as `dotnet NAME.dll` with the dotnet running us.
/// AMBIENT_ZTUNNEL and AMBIENT_WAYPOINT name a ztunnel or waypoint executable to run instead, e.g. the native one
/// `dotnet publish -r linux-x64` makes (what runs in production; the tests run the end-to-end suite against both).
/// </summary>
internal static class Executables
{
    public const string Istiod = "istiod-lite";
    public const string Ztunnel = "ztunnel";
    public const string Samples = "ambient-samples";
    public const string Waypoint = "waypoint";

    public static string BinFolder => Environment.GetEnvironmentVariable("AMBIENT_BIN") is { Length: > 0 } bin
        ? Path.GetFullPath(bin)
        : AppContext.BaseDirectory;

    public static Launcher? Find(string name, out string? error)
    {
        if (OverrideVariable(name) is { } variable && Environment.GetEnvironmentVariable(variable) is { Length: > 0 } executable)
        {
            var path = Path.GetFullPath(executable);
            error = File.Exists(path) ? null : $"cannot find {name}: {variable} is {path}, which does not exist";
            return error is null ? new Launcher(path, [], path) : null;
        }
        var folder = BinFolder;
        var dll = Path.Combine(folder, name + ".dll");
        if (!File.Exists(dll))
        {
            error = $"cannot find {name} ({dll} does not exist); build the solution first: dotnet build Ambient.sln";
            return null;
        }
        error = null;
        var apphost = Path.Combine(folder, OperatingSystem.IsWindows() ? name + ".exe" : name);
        if (File.Exists(apphost))
        {
            return new Launcher(apphost, [], apphost);
        }
        var dotnet = DotnetHost();
        return new Launcher(dotnet, [dll], $"{dotnet} {dll}");
    }

    /// <summary>The environment variable that names another executable for a proxy (the native AOT publish).</summary>
    internal static string? OverrideVariable(string name) => name switch
    {
        Ztunnel => "AMBIENT_ZTUNNEL",
        Waypoint => "AMBIENT_WAYPOINT",
        _ => null,
    };

    /// <summary>The dotnet host: the one running us if we run under it, else DOTNET_HOST_PATH, else PATH.</summary>
    public static string DotnetHost()
    {
        var self = Environment.ProcessPath;
        if (self is not null && Path.GetFileNameWithoutExtension(self) == "dotnet") return self;
        if (Environment.GetEnvironmentVariable("DOTNET_HOST_PATH") is { Length: > 0 } host && File.Exists(host)) return host;
        return HostPrograms.Resolve("dotnet") ?? "dotnet";
    }

    /// <summary>How to run ambientctl itself again (for --detach).</summary>
    public static Launcher Self()
    {
        var self = Environment.ProcessPath ?? DotnetHost();
        if (Path.GetFileNameWithoutExtension(self) == "dotnet")
        {
            var dll = Path.Combine(AppContext.BaseDirectory, "ambientctl.dll");
            return new Launcher(self, [dll], $"{self} {dll}");
        }
        return new Launcher(self, [], self);
    }
}

using Ambient.Config.Yaml;
using Ambient.Core.Config;
using Ambient.Ctl.Cli;
using Ambient.Ctl.Local;
using Microsoft.Extensions.Logging.Abstractions;

namespace Ambient.Ctl.Inspect;

/// <summary>
/// The config a command reads or edits: -f PATH, else the running local mesh's folder. Read through the same
/// <see cref="FolderConfigSource"/> istiod-lite watches, so a command sees exactly the resources the mesh acts on (the
/// last good state of each file) and the same errors.
/// </summary>
internal static class MeshConfig
{
    /// <summary>The folder or file to use, or null with the message to print (prefixed with <paramref name="verb"/>).</summary>
    public static string? Locate(string? file, string verb, out LocalState? running, out string? error)
    {
        running = null;
        error = null;
        if (LocalCommands.RunningMesh(out var state) is { } supervisor && state is not null)
        {
            supervisor.Dispose();
            running = state;
        }
        var config = file is not null ? Path.GetFullPath(file) : running?.ConfigFolder;
        if (config is null)
        {
            error = $"{verb}: no local mesh is running; name the config with -f PATH";
            return null;
        }
        if (!Directory.Exists(config) && !File.Exists(config))
        {
            error = $"{verb}: '{config}' is neither a file nor a folder";
            return null;
        }
        return config;
    }

    /// <summary>Locates and reads the config in one go; null after printing why it cannot be read.</summary>
    public static LoadedConfig? Load(string? file, string verb, TextWriter error)
    {
        var config = Locate(file, verb, out var running, out var message);
        if (config is null)
        {
            error.WriteLine(message);
            return null;
        }
        return new LoadedConfig(config, Read(config), running);
    }

    /// <summary>One read of the folder (or file), as istiod-lite's first scan would see it.</summary>
    public static ConfigSnapshot Read(string config)
    {
        using var source = new FolderConfigSource(config, NullLogger<FolderConfigSource>.Instance) { UseFileSystemWatcher = false };
        source.Start();
        return source.Current;
    }
}

/// <summary>A config as read for one command, and the local mesh running it (if any).</summary>
internal sealed record LoadedConfig(string Path, ConfigSnapshot Snapshot, LocalState? Running)
{
    /// <summary>Every resource, the kinds the parser does not type yet included (listed by name).</summary>
    public IReadOnlyList<Resource> AllResources => Snapshot.Resources.AddRange(Snapshot.Ignored);

    /// <summary>Pods from the state file; Gateway and HTTPRoute status from the running mesh's istiod-lite.</summary>
    public MeshRuntime Runtime() => new(Snapshot.Resources, Running, Running is null ? null : IstiodResourceStatus.FromMesh(Running));
}

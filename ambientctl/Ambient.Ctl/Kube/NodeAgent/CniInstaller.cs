using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;
using Ambient.Cni;
using Microsoft.Extensions.Logging;

namespace Ambient.Ctl.Kube.NodeAgent;

/// <summary>Where the plugin goes and what its entry says.</summary>
/// <param name="BinDir">The node's CNI bin folder as the agent sees it (/host/opt/cni/bin).</param>
/// <param name="ConfDir">The node's CNI config folder as the agent sees it (/host/etc/cni/net.d).</param>
/// <param name="HostConfDir">The same folder as the runtime on the host sees it: what paths in the entry name.</param>
/// <param name="AgentSocket">The agent's plugin socket (the same path on the host and in the agent's container).</param>
/// <param name="PluginSource">The plugin executable to copy (ambient-cni next to ambientctl).</param>
internal sealed record CniInstallOptions(string BinDir, string ConfDir, string HostConfDir, string AgentSocket, string PluginSource);

/// <summary>The API server and credentials the plugin uses when the agent is down (a kubeconfig in JSON).</summary>
internal sealed record CniKubeconfig(string Server, string? CaPem, string? Token)
{
    public string ToJson()
    {
        var cluster = new JsonObject { ["server"] = Server };
        if (CaPem is not null) cluster["certificate-authority-data"] = Convert.ToBase64String(Encoding.ASCII.GetBytes(CaPem));
        var user = new JsonObject();
        if (Token is not null) user["token"] = Token;
        return new JsonObject
        {
            ["apiVersion"] = "v1",
            ["kind"] = "Config",
            ["clusters"] = new JsonArray(new JsonObject { ["name"] = "local", ["cluster"] = cluster }),
            ["users"] = new JsonArray(new JsonObject { ["name"] = CniNames.PluginType, ["user"] = user }),
            ["contexts"] = new JsonArray(new JsonObject { ["name"] = CniNames.PluginType, ["context"] = new JsonObject { ["cluster"] = "local", ["user"] = CniNames.PluginType } }),
            ["current-context"] = CniNames.PluginType,
        }.ToJsonString(new JsonSerializerOptions { WriteIndented = true }) + "\n";
    }
}

/// <summary>
/// istio-cni's install step: the plugin executable copied into the node's CNI bin folder, a kubeconfig for it next to
/// the CNI configs, and our entry appended to the primary network config. The folder is watched: when the node's CNI
/// rewrites its config (an upgrade, a restart) the entry is put back. On dispose the entry and the kubeconfig are
/// removed, so a node without an agent creates pods as if we had never been there; the executable stays (a runtime may
/// be running it right now, and the next agent overwrites it).
/// </summary>
internal sealed partial class CniInstaller : IDisposable
{
    private readonly CniInstallOptions _options;
    private readonly ILogger _logger;
    private readonly Lock _lock = new();
    private readonly Func<CniKubeconfig?> _kubeconfig;
    private FileSystemWatcher? _watcher;
    private Timer? _timer;
    private string? _configured;
    private bool _disposed;

    public CniInstaller(CniInstallOptions options, Func<CniKubeconfig?> kubeconfig, ILogger logger)
    {
        _options = options;
        _kubeconfig = kubeconfig;
        _logger = logger;
    }

    public string KubeconfigPath => Path.Combine(_options.ConfDir, CniNames.KubeconfigFile);

    /// <summary>The config file our entry is in now; null while the node has no network config.</summary>
    public string? ConfiguredFile
    {
        get { lock (_lock) return _configured; }
    }

    /// <summary>Our plugin's entry in the chain.</summary>
    public JsonObject Entry()
    {
        var entry = new JsonObject { ["type"] = CniNames.PluginType, ["agent_socket"] = _options.AgentSocket };
        if (_kubeconfig() is not null) entry["kubeconfig"] = Path.Combine(_options.HostConfDir, CniNames.KubeconfigFile);
        return entry;
    }

    /// <summary>Copies the plugin, writes its kubeconfig and entry, and starts watching the config folder.</summary>
    public void Start()
    {
        CopyPlugin();
        Directory.CreateDirectory(_options.ConfDir);
        Reconcile();
        _watcher = new FileSystemWatcher(_options.ConfDir) { NotifyFilter = NotifyFilters.FileName | NotifyFilters.LastWrite | NotifyFilters.Size };
        _watcher.Changed += OnFolderChanged;
        _watcher.Created += OnFolderChanged;
        _watcher.Deleted += OnFolderChanged;
        _watcher.Renamed += OnFolderChanged;
        _watcher.EnableRaisingEvents = true;
        // Also now and then: a missed inotify event (an overflowing queue) and the token rotating in the kubeconfig.
        _timer = new Timer(_ => Reconcile(), null, TimeSpan.FromSeconds(30), TimeSpan.FromSeconds(30));
    }

    private void OnFolderChanged(object sender, FileSystemEventArgs e)
    {
        // Our own temp files and writes come back here too; Reconcile is a no-op when all is in place.
        if (e.Name is { } name && name.StartsWith('.')) return;
        Reconcile();
    }

    /// <summary>Puts the kubeconfig and the entry in place when they are not (idempotent; errors are logged and retried on the next change).</summary>
    public void Reconcile()
    {
        lock (_lock)
        {
            if (_disposed) return;
            try
            {
                if (_kubeconfig() is { } kubeconfig) WriteIfChanged(KubeconfigPath, kubeconfig.ToJson());
                var primary = CniConflist.FindPrimary(_options.ConfDir);
                if (primary is null)
                {
                    if (_configured is not null || _timer is null) LogNoNetwork(_logger, _options.ConfDir);
                    _configured = null;
                    return;
                }
                var text = File.ReadAllText(primary);
                var entry = Entry();
                if (CniConflist.HasLast(text, entry) && primary.EndsWith(".conflist", StringComparison.Ordinal))
                {
                    _configured = primary;
                    return;
                }
                var target = primary.EndsWith(".conf", StringComparison.Ordinal) ? primary + "list" : primary;
                WriteAtomically(target, CniConflist.Insert(text, entry));
                // A .conf became a .conflist (istio-cni renames it the same way): the old file must not win the ordering.
                if (target != primary) File.Delete(primary);
                _configured = target;
                LogInserted(_logger, target);
            }
            catch (Exception e) when (e is IOException or UnauthorizedAccessException or CniConfigException)
            {
                LogFailed(_logger, _options.ConfDir, e.Message);
            }
        }
    }

    private void CopyPlugin()
    {
        Directory.CreateDirectory(_options.BinDir);
        // The shipped plugin is one native file. A development build is an apphost that needs its assembly and runtime
        // config beside it (and a .NET runtime on the host): those go along when the runtime config says it is one.
        var source = Path.GetDirectoryName(Path.GetFullPath(_options.PluginSource))!;
        if (File.Exists(Path.Combine(source, CniNames.PluginType + ".runtimeconfig.json")))
        {
            foreach (var companion in (string[])[".dll", ".runtimeconfig.json", ".deps.json"])
            {
                var file = Path.Combine(source, CniNames.PluginType + companion);
                if (File.Exists(file)) CopyAtomically(file, Path.Combine(_options.BinDir, CniNames.PluginType + companion));
            }
        }
        var target = Path.Combine(_options.BinDir, CniNames.PluginType);
        CopyAtomically(_options.PluginSource, target);
        LogCopied(_logger, target);
    }

    private static void CopyAtomically(string from, string to)
    {
        var temp = Path.Combine(Path.GetDirectoryName(to)!, "." + Path.GetFileName(to) + ".tmp");
        File.Copy(from, temp, overwrite: true);
        if (!OperatingSystem.IsWindows())
        {
            File.SetUnixFileMode(temp, UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.UserExecute
                | UnixFileMode.GroupRead | UnixFileMode.GroupExecute | UnixFileMode.OtherRead | UnixFileMode.OtherExecute);
        }
        // A rename: a runtime executing the old file keeps it, the next exec gets the new one (no "text file busy").
        File.Move(temp, to, overwrite: true);
    }

    private static void WriteIfChanged(string path, string text)
    {
        if (File.Exists(path) && File.ReadAllText(path) == text) return;
        WriteAtomically(path, text, UnixFileMode.UserRead | UnixFileMode.UserWrite);
    }

    // The runtime reads these files at any moment: it must see the old or the new, never half.
    private static void WriteAtomically(string path, string text, UnixFileMode mode = UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.GroupRead | UnixFileMode.OtherRead)
    {
        var temp = Path.Combine(Path.GetDirectoryName(path)!, "." + Path.GetFileName(path) + ".tmp");
        File.WriteAllText(temp, text);
        if (!OperatingSystem.IsWindows()) File.SetUnixFileMode(temp, mode);
        File.Move(temp, path, overwrite: true);
    }

    /// <summary>Stops watching and takes our entry and kubeconfig out (istio-cni's cleanup on shutdown).</summary>
    public void Dispose()
    {
        lock (_lock)
        {
            if (_disposed) return;
            _disposed = true;
        }
        _watcher?.Dispose();
        _timer?.Dispose();
        lock (_lock)
        {
            try
            {
                if ((_configured ?? CniConflist.FindPrimary(_options.ConfDir)) is { } file && File.Exists(file)
                    && CniConflist.Remove(File.ReadAllText(file), CniNames.PluginType) is { } without)
                {
                    WriteAtomically(file, without);
                    LogRemoved(_logger, file);
                }
                File.Delete(KubeconfigPath);
            }
            catch (Exception e) when (e is IOException or UnauthorizedAccessException or CniConfigException)
            {
                LogFailed(_logger, _options.ConfDir, e.Message);
            }
        }
    }

    [LoggerMessage(Level = LogLevel.Information, Message = "CNI plugin copied to {Path}")]
    private static partial void LogCopied(ILogger logger, string path);

    [LoggerMessage(Level = LogLevel.Information, Message = "CNI plugin added to the chain in {Path}")]
    private static partial void LogInserted(ILogger logger, string path);

    [LoggerMessage(Level = LogLevel.Information, Message = "CNI plugin removed from the chain in {Path}")]
    private static partial void LogRemoved(ILogger logger, string path);

    [LoggerMessage(Level = LogLevel.Warning, Message = "no CNI network config in {Folder} yet (*.conf, *.conflist); waiting for the node's CNI to write one")]
    private static partial void LogNoNetwork(ILogger logger, string folder);

    [LoggerMessage(Level = LogLevel.Warning, Message = "editing the CNI config in {Folder} failed (retried on the next change): {Reason}")]
    private static partial void LogFailed(ILogger logger, string folder, string reason);
}

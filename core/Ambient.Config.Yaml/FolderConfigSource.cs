using Ambient.Hbone.Telemetry;
using System.Collections.Concurrent;
using System.Collections.Immutable;
using Ambient.Core.Files;
using Microsoft.Extensions.Logging;
using Ambient.Core.Telemetry;
using Ambient.Core.Config;

namespace Ambient.Config.Yaml;

/// <summary>
/// Watches a folder of Kubernetes-style YAML (recursively, *.yaml and *.yml), or one file (as kubectl's -f takes
/// either), and keeps the merged config current. A file that turns bad keeps contributing what it produced on its last clean parse, so a typo
/// saved mid-edit does not tear down running workloads; its errors are reported until it is fixed.
/// Changes are picked up from FileSystemWatcher events (debounced) and, because watchers can miss
/// events (overflow, network/overlay filesystems, atomic symlink swaps), from a periodic mtime+size rescan.
/// </summary>
internal sealed partial class FolderConfigSource : IConfigSource
{
    private static readonly TimeSpan DefaultDebounce = TimeSpan.FromMilliseconds(150);
    private static readonly TimeSpan RescanInterval = TimeSpan.FromMilliseconds(500);

    // A config file this large is a mistake (a log or a binary with a .yaml name); do not read it into memory.
    private const long MaxFileBytes = 16 * 1024 * 1024;

    private readonly string _folder;
    // Set when the source is one file: only that file is read and watched, whatever its name.
    private readonly string? _singleFile;
    // The folder with every symbolic link resolved: files whose real path is not under it are not read.
    private string _realFolder;
    private readonly ILogger<FolderConfigSource> _logger;
    private readonly TimeSpan _debounce;

    // Serialises scans and publishing: Changed is never raised concurrently and _files is only touched here.
    private readonly Lock _scanLock = new();
    private readonly Dictionary<string, FileState> _files = new(StringComparer.Ordinal);
    private readonly HashSet<string> _reportedIgnored = new(StringComparer.Ordinal);
    private ConfigError? _folderError;

    // Paths named by watcher events: re-parsed even if mtime+size look unchanged (coarse timestamps).
    private readonly ConcurrentDictionary<string, byte> _dirty = new(StringComparer.Ordinal);
    private volatile bool _reparseAll;
    private readonly SemaphoreSlim _signal = new(0, int.MaxValue);
    private readonly TimeProvider _time;
    private long _lastEventTimestamp;

    private readonly SnapshotPublication _published = new(nameof(FolderConfigSource));

    private readonly CancellationTokenSource _stop = new();
    private FileSystemWatcher? _watcher;
    private Task? _loop;
    private int _started;
    private int _disposed;
    private int _publishingThread = -1;

    /// <param name="folder">The folder to watch.</param>
    /// <param name="logger">Where config errors and generations are reported.</param>
    /// <param name="debounce">How long watcher events must be quiet before a scan (default 150 ms).</param>
    /// <param name="time">Clock of the debounce and the periodic rescan (tests drive their own).</param>
    public FolderConfigSource(string folder, ILogger<FolderConfigSource> logger, TimeSpan? debounce = null, TimeProvider? time = null)
    {
        ArgumentException.ThrowIfNullOrEmpty(folder);
        ArgumentNullException.ThrowIfNull(logger);
        var full = Path.TrimEndingDirectorySeparator(Path.GetFullPath(folder));
        if (File.Exists(full))
        {
            _singleFile = full;
            _folder = Path.GetDirectoryName(full)!;
        }
        else
        {
            _folder = full;
        }
        _realFolder = _folder;
        _logger = logger;
        _debounce = debounce ?? DefaultDebounce;
        _time = time ?? TimeProvider.System;
        if (_debounce < TimeSpan.Zero) throw new ArgumentOutOfRangeException(nameof(debounce), "debounce must not be negative");
    }

    /// <summary>
    /// False leaves change detection to the periodic rescan alone. For tests proving the fallback, and for
    /// filesystems where watchers are known not to work (some network and container mounts).
    /// </summary>
    public bool UseFileSystemWatcher { get; init; } = true;

    /// <summary>How often the folder is rescanned when no watcher event arrives.</summary>
    public static TimeSpan RescanPeriod => RescanInterval;

    /// <summary>What is being watched (full path): the folder, or the one file.</summary>
    public string Folder => _singleFile ?? _folder;

    public ConfigSnapshot Current => _published.Current;

    /// <summary>Raised after each effective change, on the watcher's thread, never concurrently.</summary>
    public event Action<ConfigSnapshot>? Changed;

    /// <summary>Loads the folder synchronously (generation 1), then watches it for changes.</summary>
    public void Start()
    {
        ObjectDisposedException.ThrowIf(Volatile.Read(ref _disposed) != 0, this);
        if (Interlocked.Exchange(ref _started, 1) != 0) throw new InvalidOperationException("FolderConfigSource was already started");
        if (_singleFile is null && !Directory.Exists(_folder)) throw new DirectoryNotFoundException($"config folder '{_folder}' does not exist");
        _realFolder = RealPath.Resolve(_folder) ?? _folder;

        // Watch before the first scan so nothing written during the scan is missed.
        if (UseFileSystemWatcher) StartWatcher();
        Scan();
        _loop = Task.Run(() => RunAsync(_stop.Token));
    }

    /// <summary>
    /// <see cref="Start"/> for callers that know only <see cref="IConfigSource"/>: the first scan is synchronous
    /// (a local folder reads in milliseconds), so this completes with it.
    /// </summary>
    public Task StartAsync(CancellationToken cancellationToken)
    {
        cancellationToken.ThrowIfCancellationRequested();
        Start();
        return Task.CompletedTask;
    }

    /// <summary>Completes when <see cref="Current"/> reaches <paramref name="generation"/> (at once if it has).</summary>
    public Task<ConfigSnapshot> WaitForGenerationAsync(long generation, CancellationToken ct) => _published.WaitAsync(generation, ct);

    public void Dispose()
    {
        if (Interlocked.Exchange(ref _disposed, 1) != 0) return;
        _stop.Cancel();
        _watcher?.Dispose();
        // A Changed handler may dispose us from the loop itself; waiting for the loop there would deadlock.
        if (_loop is not null && Environment.CurrentManagedThreadId != Volatile.Read(ref _publishingThread))
        {
            try { _loop.Wait(TimeSpan.FromSeconds(5)); }
            catch (AggregateException) { }
        }
        _published.Close();
    }

    private void StartWatcher()
    {
        try
        {
            var w = new FileSystemWatcher(_folder)
            {
                IncludeSubdirectories = _singleFile is null,
                Filter = _singleFile is null ? "*" : Path.GetFileName(_singleFile),
                NotifyFilter = NotifyFilters.FileName | NotifyFilters.DirectoryName | NotifyFilters.LastWrite | NotifyFilters.Size,
                InternalBufferSize = 64 * 1024,
            };
            w.Changed += OnFileEvent;
            w.Created += OnFileEvent;
            w.Deleted += OnFileEvent;
            w.Renamed += OnFileEvent;
            w.Error += OnWatcherError;
            w.EnableRaisingEvents = true;
            _watcher = w;
        }
        catch (Exception ex) when (ex is IOException or PlatformNotSupportedException or UnauthorizedAccessException or ArgumentException)
        {
            // e.g. the inotify watch limit is reached: the periodic rescan still sees every change, only later.
            Log.WatcherUnavailable(_logger, _folder, ex);
        }
    }

    private void OnFileEvent(object sender, FileSystemEventArgs e)
    {
        if (IsConfigFile(e.FullPath)) _dirty[e.FullPath] = 0;
        if (e is RenamedEventArgs r && IsConfigFile(r.OldFullPath)) _dirty[r.OldFullPath] = 0;
        Volatile.Write(ref _lastEventTimestamp, _time.GetTimestamp());
        Wake();
    }

    private void OnWatcherError(object sender, ErrorEventArgs e)
    {
        // Events were lost (buffer overflow): re-read everything on the next scan.
        Log.WatcherError(_logger, _folder, e.GetException());
        _reparseAll = true;
        Wake();
    }

    private void Wake()
    {
        try { _signal.Release(); }
        catch (SemaphoreFullException) { }
    }

    private bool IsConfigFile(string path) =>
        _singleFile is not null
            ? string.Equals(path, _singleFile, StringComparison.Ordinal)
            : path.EndsWith(".yaml", StringComparison.OrdinalIgnoreCase) || path.EndsWith(".yml", StringComparison.OrdinalIgnoreCase);

    private async Task RunAsync(CancellationToken ct)
    {
        while (!ct.IsCancellationRequested)
        {
            try
            {
                var woken = await WaitForEventOrRescanAsync(ct).ConfigureAwait(false);
                if (woken)
                {
                    await DebounceAsync(ct).ConfigureAwait(false);
                    while (_signal.Wait(0)) { }
                }
                Scan();
            }
            catch (OperationCanceledException) when (ct.IsCancellationRequested)
            {
                break;
            }
            catch (Exception ex)
            {
                // Keep watching: the next scan may well succeed (a transient IO error, a file mid-rename).
                Log.ScanFailed(_logger, _folder, ex);
            }
        }
    }

    /// <summary>True when a watcher event woke us, false when the rescan period passed first.</summary>
    private async Task<bool> WaitForEventOrRescanAsync(CancellationToken ct)
    {
        using var race = CancellationTokenSource.CreateLinkedTokenSource(ct);
        var woken = _signal.WaitAsync(race.Token);
        var rescan = Task.Delay(RescanInterval, _time, race.Token);
        await Task.WhenAny(woken, rescan).ConfigureAwait(false);
        await race.CancelAsync().ConfigureAwait(false);
        // The losing wait is cancelled without taking a signal; on a tie the signal was taken and counts as woken.
        await ((Task)woken).ConfigureAwait(ConfigureAwaitOptions.SuppressThrowing);
        ct.ThrowIfCancellationRequested();
        return woken.IsCompletedSuccessfully;
    }

    // Editors save in several steps (truncate, write, rename); wait until events have been quiet for the
    // debounce period, but no longer than 4x it so a busy writer cannot postpone the update forever.
    private async Task DebounceAsync(CancellationToken ct)
    {
        var started = _time.GetTimestamp();
        var longest = 4 * _debounce;
        while (true)
        {
            var now = _time.GetTimestamp();
            var quietFor = _time.GetElapsedTime(Volatile.Read(ref _lastEventTimestamp), now);
            var waited = _time.GetElapsedTime(started, now);
            if (quietFor >= _debounce || waited >= longest) return;
            var rest = _debounce - quietFor;
            await Task.Delay(rest < longest - waited ? rest : longest - waited, _time, ct).ConfigureAwait(false);
        }
    }

    private void Scan()
    {
        lock (_scanLock)
        {
            if (Volatile.Read(ref _disposed) != 0) return;
            var reparseAll = _reparseAll;
            _reparseAll = false;
            var dirty = new HashSet<string>(StringComparer.Ordinal);
            foreach (var path in _dirty.Keys)
            {
                if (_dirty.TryRemove(path, out _)) dirty.Add(path);
            }

            List<string> present;
            ConfigError? folderError = null;
            try
            {
                present = EnumerateConfigFiles();
            }
            catch (Exception ex) when (ex is IOException or UnauthorizedAccessException)
            {
                // The folder vanished or is unreadable: keep the config we have rather than dropping everything.
                present = [.. _files.Keys];
                folderError = new ConfigError(new SourceLocation(_folder, 1), "", "cannot list the config folder: " + ex.Message);
            }

            var changed = folderError != _folderError;
            _folderError = folderError;
            var seen = new HashSet<string>(StringComparer.Ordinal);
            foreach (var path in present)
            {
                if (folderError is not null)
                {
                    seen.Add(path);
                    continue;
                }
                var info = new FileInfo(path);
                if (!info.Exists) continue;
                seen.Add(path);
                _files.TryGetValue(path, out var previous);
                if (previous is not null && !reparseAll && !previous.ReadFailed && !dirty.Contains(path)
                    && previous.Length == info.Length && previous.WriteTimeUtc == info.LastWriteTimeUtc)
                {
                    continue;
                }
                var next = Load(path, info, previous, _realFolder);
                if (next is null)
                {
                    seen.Remove(path);
                    continue;
                }
                _files[path] = next;
                changed = true;
            }
            foreach (var path in _files.Keys.ToList())
            {
                if (!seen.Contains(path))
                {
                    _files.Remove(path);
                    changed = true;
                }
            }
            if (changed || _published.Current.Generation == 0) Publish();
        }
    }

    private List<string> EnumerateConfigFiles()
    {
        if (_singleFile is not null)
        {
            // Gone (mid-rename by an editor, or deleted): an empty list, so its resources go as a folder's would.
            return File.Exists(_singleFile) ? [_singleFile] : [];
        }
        // Default options skip hidden entries, which is what we want: editor swap files, and the "..data"
        // directories of a mounted Kubernetes ConfigMap (whose visible *.yaml symlinks we do read).
        var options = new EnumerationOptions { RecurseSubdirectories = true, IgnoreInaccessible = true, MatchType = MatchType.Simple };
        var list = new List<string>();
        foreach (var path in Directory.EnumerateFiles(_folder, "*", options))
        {
            if (IsConfigFile(path)) list.Add(path);
        }
        list.Sort(StringComparer.Ordinal);
        return list;
    }

    /// <summary>
    /// Reads and parses one file; null if it disappeared meanwhile. A file whose real path leaves
    /// <paramref name="realFolder"/> (a symbolic link, or a file under a linked folder) is refused unread: a link
    /// to the CA key or a node token would otherwise be parsed and its content end up in errors and logs.
    /// </summary>
    private static FileState? Load(string path, FileInfo info, FileState? previous, string realFolder)
    {
        long length;
        DateTime writeTime;
        string text;
        try
        {
            length = info.Length;
            writeTime = info.LastWriteTimeUtc;
            if (length > MaxFileBytes)
            {
                return Rejected(previous, length, writeTime, readFailed: false,
                    new ConfigError(new SourceLocation(path, 1), "", $"file is {length} bytes; config files are limited to {MaxFileBytes} bytes"));
            }
            using var stream = new FileStream(path, FileMode.Open, FileAccess.Read, FileShare.ReadWrite | FileShare.Delete);
            var real = RealPath.OfOpenFile(stream.SafeFileHandle, path);
            if (real is null || !RealPath.IsInside(real, realFolder))
            {
                return Rejected(previous, length, writeTime, readFailed: false, new ConfigError(new SourceLocation(path, 1), "",
                    $"is a symbolic link (or under a linked folder) to '{LogText.Clip(real ?? "?")}', outside the config folder; " +
                    "links that leave the folder are not followed, so keys and tokens cannot be read through them: copy the file into the folder instead"));
            }
            using var reader = new StreamReader(stream);
            text = reader.ReadToEnd();
        }
        catch (Exception ex) when (ex is FileNotFoundException or DirectoryNotFoundException)
        {
            return null;
        }
        catch (Exception ex) when (ex is IOException or UnauthorizedAccessException)
        {
            return Rejected(previous, 0, default, readFailed: true,
                new ConfigError(new SourceLocation(path, 1), "", "cannot read file: " + ex.Message));
        }

        var result = ManifestParser.Parse(path, text);
        if (result.IsClean) return new FileState(length, writeTime, result.Resources, [], HasGood: true, ReadFailed: false);
        if (previous is { HasGood: true }) return previous with { Length = length, WriteTimeUtc = writeTime, Errors = result.Errors, ReadFailed = false };
        // Never parsed cleanly: the documents that are fine are the best we have (like kubectl apply).
        return new FileState(length, writeTime, result.Resources, result.Errors, HasGood: false, ReadFailed: false);
    }

    private static FileState Rejected(FileState? previous, long length, DateTime writeTime, bool readFailed, ConfigError error) =>
        previous is null
            ? new FileState(length, writeTime, [], [error], HasGood: false, readFailed)
            : previous with { Length = length, WriteTimeUtc = writeTime, Errors = [error], ReadFailed = readFailed };

    private void Publish()
    {
        var contributions = new List<FileContribution>(_files.Count);
        foreach (var (path, state) in _files) contributions.Add(new FileContribution(path, state.Effective, state.Errors));
        var merged = ConfigMerge.Merge(0, contributions);
        if (_folderError is { } folderError) merged = merged with { Errors = merged.Errors.Insert(0, folderError) };

        var previous = _published.Current;
        if (previous.Generation > 0 && merged.SameContent(previous)) return;
        var next = merged with { Generation = previous.Generation + 1 };
        Report(previous, next);
        _published.Publish(next);
        RaiseChanged(next);
    }

    private void Report(ConfigSnapshot previous, ConfigSnapshot next)
    {
        var before = new HashSet<ConfigError>(previous.Errors);
        var after = new HashSet<ConfigError>(next.Errors);
        foreach (var e in next.Errors)
        {
            if (!before.Contains(e)) Log.ConfigErrorFound(_logger, e);
        }
        foreach (var e in previous.Errors)
        {
            if (!after.Contains(e)) Log.ConfigErrorResolved(_logger, e);
        }
        foreach (var u in next.Ignored)
        {
            if (_reportedIgnored.Add(u.Key)) Log.KindIgnored(_logger, LogText.Clip(u.Kind), LogText.Clip(u.Key), u.Source.ToString());
        }
        Log.Generation(_logger, next.Generation, next.Resources.Length, next.Errors.Length, next.Ignored.Length);
    }

    private void RaiseChanged(ConfigSnapshot snapshot)
    {
        var handlers = Changed;
        if (handlers is null) return;
        Volatile.Write(ref _publishingThread, Environment.CurrentManagedThreadId);
        try
        {
            SnapshotPublication.Raise(handlers, snapshot, (s, ex) => Log.HandlerFailed(_logger, s.Generation, ex));
        }
        finally
        {
            Volatile.Write(ref _publishingThread, -1);
        }
    }

    /// <summary>What one file contributes: Effective is the last good parse (or best effort if none yet).</summary>
    private sealed record FileState(
        long Length,
        DateTime WriteTimeUtc,
        ImmutableArray<Resource> Effective,
        ImmutableArray<ConfigError> Errors,
        bool HasGood,
        bool ReadFailed);

    private static partial class Log
    {
        // The error as ConfigError writes it ("file:line: field: message", no empty field for a whole-file problem).
        [LoggerMessage(1, LogLevel.Warning, "Config error at {Error}")]
        public static partial void ConfigErrorFound(ILogger logger, ConfigError error);

        [LoggerMessage(2, LogLevel.Information, "Config error resolved at {Error}")]
        public static partial void ConfigErrorResolved(ILogger logger, ConfigError error);

        [LoggerMessage(3, LogLevel.Information, "Ignoring {Kind} {Key} from {Location}: kind not supported yet")]
        public static partial void KindIgnored(ILogger logger, string kind, string key, string location);

        [LoggerMessage(4, LogLevel.Information, "Config generation {Generation}: {Resources} resources, {Errors} errors, {Ignored} ignored")]
        public static partial void Generation(ILogger logger, long generation, int resources, int errors, int ignored);

        [LoggerMessage(5, LogLevel.Error, "Config change handler failed for generation {Generation}")]
        public static partial void HandlerFailed(ILogger logger, long generation, Exception exception);

        [LoggerMessage(6, LogLevel.Error, "Scanning config folder {Folder} failed; retrying")]
        public static partial void ScanFailed(ILogger logger, string folder, Exception exception);

        [LoggerMessage(7, LogLevel.Warning, "File watcher on {Folder} lost events; rescanning all files")]
        public static partial void WatcherError(ILogger logger, string folder, Exception exception);

        [LoggerMessage(8, LogLevel.Warning, "Cannot watch {Folder} for changes; relying on the periodic rescan")]
        public static partial void WatcherUnavailable(ILogger logger, string folder, Exception exception);
    }
}

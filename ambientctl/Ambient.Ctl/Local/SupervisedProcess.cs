using System.Diagnostics;

namespace Ambient.Ctl.Local;

/// <summary>What to run for one component of the local mesh.</summary>
internal sealed record ComponentSpec(
    string Name,
    string Kind,
    Launcher Launcher,
    IReadOnlyList<string> Args,
    IReadOnlyDictionary<string, string> Env,
    string? Address,
    string? Node,
    string LogPath);

/// <summary>
/// Runs one component and, like a kubelet, starts it again when it exits on its own: back-off 1 s doubling to 30 s,
/// reset once it has stayed up for a minute. Output goes to its log file and, when asked, to our console with its
/// name in front. <see cref="ReplaceAsync"/> upgrades it in place: the new process first, the old one stopped only
/// once the new one is confirmed.
/// </summary>
internal sealed class SupervisedProcess : IAsyncDisposable
{
    private static readonly TimeSpan FirstBackoff = TimeSpan.FromSeconds(1);
    private static readonly TimeSpan MaxBackoff = TimeSpan.FromSeconds(30);
    private static readonly TimeSpan StableAfter = TimeSpan.FromMinutes(1);

    private readonly ComponentSpec _spec;
    private readonly Action<string> _report;
    private readonly TextWriter? _echo;
    private readonly CancellationTokenSource _stop;
    private readonly Lock _lock = new();
    private StreamWriter? _log;
    private Process? _process;
    private Task? _loop;
    private int _stopped;

    /// <param name="meshStopping">Cancelled when the whole mesh stops: an exit after that is expected, not a crash
    /// (on Ctrl-C the terminal signals the children at the same moment as us).</param>
    public SupervisedProcess(ComponentSpec spec, Action<string> report, TextWriter? echo, CancellationToken meshStopping)
    {
        _spec = spec;
        _report = report;
        _echo = echo;
        _stop = CancellationTokenSource.CreateLinkedTokenSource(meshStopping);
    }

    public ComponentSpec Spec => _spec;
    public int Restarts { get; private set; }
    public int? LastExitCode { get; private set; }

    /// <summary>Raised after each (re)start, so the state file can record the new pid.</summary>
    public event Action? Started;

    public Process? Current
    {
        get { lock (_lock) return _process; }
    }

    /// <summary>Starts the first instance; throws with a clear message if the program cannot be started at all.</summary>
    public void Start()
    {
        // Owner-only (0600 in a 0700 folder): a component's log may quote config and secrets.
        _log = new StreamWriter(Ambient.Core.Files.OwnerOnlyFiles.OpenAppend(_spec.LogPath)) { AutoFlush = true };
        var first = Launch();
        _loop = Task.Run(() => SuperviseAsync(first));
    }

    private Process Launch()
    {
        var psi = new ProcessStartInfo(_spec.Launcher.FileName)
        {
            UseShellExecute = false,
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            RedirectStandardInput = true,
        };
        foreach (var a in _spec.Launcher.PrefixArgs) psi.ArgumentList.Add(a);
        foreach (var a in _spec.Args) psi.ArgumentList.Add(a);
        foreach (var (k, v) in _spec.Env) psi.Environment[k] = v;
        Process process;
        try
        {
            process = Process.Start(psi) ?? throw new InvalidOperationException("no process was started");
        }
        catch (System.ComponentModel.Win32Exception e)
        {
            throw new InvalidOperationException($"{_spec.Name}: cannot start {_spec.Launcher.FileName}: {e.Message}", e);
        }
        process.OutputDataReceived += (_, e) => Line(e.Data);
        process.ErrorDataReceived += (_, e) => Line(e.Data);
        process.BeginOutputReadLine();
        process.BeginErrorReadLine();
        // Nothing reads the pods' stdin; closing it gives them EOF rather than a pipe that never answers.
        process.StandardInput.Close();
        lock (_lock) _process = process;
        Started?.Invoke();
        return process;
    }

    private void Line(string? line)
    {
        if (line is null) return;
        try { _log?.WriteLine(line); } catch (ObjectDisposedException) { }
        _echo?.WriteLine($"[{_spec.Name}] {line}");
    }

    private async Task SuperviseAsync(Process process)
    {
        var backoff = FirstBackoff;
        var startedAt = Stopwatch.GetTimestamp();
        while (true)
        {
            try
            {
                await process.WaitForExitAsync(_stop.Token).ConfigureAwait(false);
            }
            catch (OperationCanceledException)
            {
                return;
            }
            // Give a simultaneous mesh-wide stop a moment to be seen before calling this a crash.
            try
            {
                await Task.Delay(200, _stop.Token).ConfigureAwait(false);
            }
            catch (OperationCanceledException)
            {
                return;
            }
            lock (_lock)
            {
                if (_process != process && _process is { } replacement)
                {
                    // Replaced (an upgrade): the old process drained and left; watch the new one.
                    process.Dispose();
                    process = replacement;
                    continue;
                }
            }
            LastExitCode = process.ExitCode;
            process.Dispose();
            if (Stopwatch.GetElapsedTime(startedAt) > StableAfter) backoff = FirstBackoff;
            Restarts++;
            _report($"{_spec.Name} exited with code {LastExitCode}; restarting in {backoff.TotalSeconds:0}s (restart {Restarts}, log: {_spec.LogPath})");
            try
            {
                await Task.Delay(backoff, _stop.Token).ConfigureAwait(false);
            }
            catch (OperationCanceledException)
            {
                return;
            }
            backoff = TimeSpan.FromTicks(Math.Min(backoff.Ticks * 2, MaxBackoff.Ticks));
            try
            {
                process = Launch();
                startedAt = Stopwatch.GetTimestamp();
            }
            catch (InvalidOperationException e)
            {
                _report(e.Message);
                return;
            }
        }
    }

    /// <summary>
    /// An upgrade without a gap: starts a second process with the same spec, waits for <paramref name="confirmed"/>
    /// (e.g. its node agent has given it every pod), and only then asks the old one to stop, giving it
    /// <paramref name="drainGrace"/> to drain before SIGKILL; returns once it was asked (the drain goes on meanwhile,
    /// and a mesh stop ends it too). When the new one is not confirmed it is stopped and the old one keeps running.
    /// Returns (old pid, new pid).
    /// </summary>
    public async Task<(int OldPid, int NewPid)> ReplaceAsync(Func<Process, CancellationToken, Task> confirmed, TimeSpan drainGrace, CancellationToken cancellationToken)
    {
        var old = Current ?? throw new InvalidOperationException($"{_spec.Name} is not running");
        var oldPid = old.Id;
        var fresh = Launch();
        var freshPid = fresh.Id;
        try
        {
            await confirmed(fresh, cancellationToken).ConfigureAwait(false);
        }
        catch
        {
            lock (_lock) _process = old;
            Started?.Invoke();
            await Signals.StopAsync(fresh, TimeSpan.FromSeconds(3)).ConfigureAwait(false);
            fresh.Dispose();
            throw;
        }
        _report($"{_spec.Name}: pid {freshPid} serves; pid {oldPid} drains (up to {drainGrace.TotalSeconds:0}s)");
        // The supervising loop notices the old one's exit, sees it replaced, and follows the new one.
        var drain = DrainAsync(old, oldPid, drainGrace);
        lock (_lock)
        {
            _draining.Add(drain);
            _drainingProcesses.Add(old);
        }
        return (oldPid, freshPid);
    }

    private async Task DrainAsync(Process old, int pid, TimeSpan grace)
    {
        // Yield first: the caller records this task before it can complete.
        await Task.Yield();
        if (await Signals.StopAsync(old, grace).ConfigureAwait(false))
        {
            _report($"{_spec.Name}: pid {pid} did not drain within {grace.TotalSeconds:0}s; killed");
        }
    }

    /// <summary>Old processes of upgrades still draining: a mesh stop ends them as it ends the current one.</summary>
    private readonly List<Task> _draining = [];
    private readonly List<Process> _drainingProcesses = [];

    private Task[] Draining()
    {
        lock (_lock) return [.. _draining];
    }

    /// <summary>Stops supervising, then SIGTERM and SIGKILL after <paramref name="grace"/>.</summary>
    public async Task StopAsync(TimeSpan grace)
    {
        if (Interlocked.Exchange(ref _stopped, 1) != 0) return;
        await _stop.CancelAsync().ConfigureAwait(false);
        if (_loop is not null) await _loop.ConfigureAwait(false);
        var p = Current;
        if (p is not null)
        {
            if (await Signals.StopAsync(p, grace).ConfigureAwait(false))
            {
                _report($"{_spec.Name} did not stop within {grace.TotalSeconds:0}s; killed (pid {p.Id})");
            }
        }
        // An old process still draining after an upgrade: it had its stop signal; it gets the same grace, then SIGKILL.
        var draining = Draining();
        if (draining.Length > 0)
        {
            await Task.WhenAny(Task.WhenAll(draining), Task.Delay(grace)).ConfigureAwait(false);
            lock (_lock)
            {
                foreach (var old in _drainingProcesses)
                {
                    try { if (!old.HasExited) old.Kill(entireProcessTree: true); } catch (InvalidOperationException) { }
                }
            }
        }
    }

    public async ValueTask DisposeAsync()
    {
        await StopAsync(TimeSpan.FromSeconds(3)).ConfigureAwait(false);
        Current?.Dispose();
        if (_log is not null) await _log.DisposeAsync().ConfigureAwait(false);
        _stop.Dispose();
    }
}

using System.Diagnostics;
using System.Text;
using System.Text.RegularExpressions;

namespace Ambient.E2E.Tests;

/// <summary>
/// The mesh's programs (istiod-lite, ztunnel, waypoint, ambient-samples) started directly from the test's output
/// folder, without ambientctl: each one's output kept in memory for failure messages, and every one killed (with its
/// children) on dispose, whatever the test's outcome.
/// </summary>
internal sealed partial class ChildProcesses : IAsyncDisposable
{
    private readonly List<Process> _processes = [];
    private readonly Dictionary<Process, StringBuilder> _logs = [];
    private readonly Lock _lock = new();

    /// <summary>Starts a built program (its apphost, else <c>dotnet program.dll</c>) with output captured.</summary>
    public Process Start(string program, IReadOnlyList<string> args, params (string Name, string Value)[] environment)
    {
        var bin = AppContext.BaseDirectory;
        var apphost = Path.Combine(bin, program);
        var start = File.Exists(apphost) ? new ProcessStartInfo(apphost) : new ProcessStartInfo(MeshRun.DotnetHost()) { ArgumentList = { Path.Combine(bin, program + ".dll") } };
        foreach (var a in args)
        {
            start.ArgumentList.Add(a);
        }
        foreach (var (name, value) in environment)
        {
            start.Environment[name] = value;
        }
        start.RedirectStandardOutput = true;
        start.RedirectStandardError = true;
        var process = new Process { StartInfo = start };
        var log = new StringBuilder();
        process.OutputDataReceived += (_, e) => { if (e.Data is not null) lock (log) log.AppendLine(e.Data); };
        process.ErrorDataReceived += (_, e) => { if (e.Data is not null) lock (log) log.AppendLine(e.Data); };
        process.Start();
        process.BeginOutputReadLine();
        process.BeginErrorReadLine();
        lock (_lock)
        {
            _processes.Add(process);
            _logs[process] = log;
        }
        return process;
    }

    /// <summary>What the process printed so far.</summary>
    public string Log(Process p)
    {
        StringBuilder log;
        lock (_lock) log = _logs[p];
        lock (log)
        {
            return log.ToString();
        }
    }

    /// <summary>Every process's output, each under its name, for a failure message.</summary>
    public string Logs(params (string Name, Process Process)[] processes)
    {
        var text = new StringBuilder();
        foreach (var (name, p) in processes) text.Append(name).Append(":\n").Append(Log(p)).Append('\n');
        return text.ToString();
    }

    /// <summary>The port istiod-lite's gRPC listener got (started with <c>--listen 127.0.0.1:0</c>), from its log.</summary>
    public async Task<int> IstiodPortAsync(Process istiod, CancellationToken ct)
    {
        var deadline = DateTime.UtcNow + TimeSpan.FromSeconds(60);
        while (DateTime.UtcNow < deadline)
        {
            if (ListeningLine().Match(Log(istiod)) is { Success: true } m)
            {
                return int.Parse(m.Groups[1].Value, System.Globalization.CultureInfo.InvariantCulture);
            }
            Assert.False(istiod.HasExited, "istiod-lite exited:\n" + Log(istiod));
            await Task.Delay(50, ct);
        }
        throw new TimeoutException("istiod-lite did not start:\n" + Log(istiod));
    }

    [GeneratedRegex(@"CA \+ workload discovery on https://127\.0\.0\.1:(\d+)")]
    private static partial Regex ListeningLine();

    public async ValueTask DisposeAsync()
    {
        List<Process> all;
        lock (_lock) all = [.. _processes];
        foreach (var p in all)
        {
            try
            {
                p.Kill(entireProcessTree: true);
                await p.WaitForExitAsync();
            }
            catch (InvalidOperationException)
            {
                // already exited
            }
            p.Dispose();
        }
    }
}

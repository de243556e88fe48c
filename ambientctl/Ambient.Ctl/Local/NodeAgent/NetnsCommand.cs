using System.Diagnostics;
using System.Runtime.CompilerServices;

namespace Ambient.Ctl.Local.NodeAgent;

/// <summary>A command that failed inside a pod's network namespace: what ran, its exit code and what it said.</summary>
internal sealed class NetnsCommandException(string message) : Exception(message);

/// <summary>
/// Runs `ip` and `iptables-*` inside a network namespace through `nsenter --net=PATH`, so the namespace can be any
/// nsfs file (/run/netns/NAME, /proc/PID/ns/net, or /proc/self/fd/N for one we hold open) and our own threads never
/// change namespace.
/// </summary>
internal static class NetnsCommand
{
    private static readonly TimeSpan Timeout = TimeSpan.FromSeconds(30);

    public sealed record Result(int ExitCode, string Output, string Error);

    /// <summary>
    /// Counts the commands started in this async flow and the flows it starts (tests: how many processes a step costs,
    /// which is what a label switch waits for on a loaded host). Null, the default, counts nothing.
    /// </summary>
    internal static readonly AsyncLocal<StrongBox<int>?> Started = new();

    /// <summary>Runs the program and returns what it printed; throws <see cref="NetnsCommandException"/> unless it exits 0.</summary>
    public static async Task<string> RunCheckedAsync(string netnsPath, string program, IReadOnlyList<string> args, string? input, CancellationToken cancellationToken)
    {
        var result = await RunAsync(netnsPath, program, args, input, cancellationToken).ConfigureAwait(false);
        if (result.ExitCode != 0)
        {
            throw new NetnsCommandException(
                $"{program} {string.Join(' ', args)} in {netnsPath} exited {result.ExitCode}: {result.Error.Trim()}"
                + (input is null ? "" : "\ninput:\n" + input));
        }
        return result.Output;
    }

    public static async Task<Result> RunAsync(string netnsPath, string program, IReadOnlyList<string> args, string? input, CancellationToken cancellationToken)
    {
        if (Started.Value is { } started) Interlocked.Increment(ref started.Value);
        var start = new ProcessStartInfo(HostPrograms.Resolve("nsenter") ?? throw new NetnsCommandException("nsenter is not installed (util-linux)"))
        {
            RedirectStandardInput = true,
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            UseShellExecute = false,
        };
        start.ArgumentList.Add("--net=" + netnsPath);
        start.ArgumentList.Add("--");
        start.ArgumentList.Add(HostPrograms.Resolve(program) ?? throw new NetnsCommandException(program + " is not installed"));
        foreach (var arg in args)
        {
            start.ArgumentList.Add(arg);
        }
        using var process = Process.Start(start) ?? throw new NetnsCommandException("cannot start nsenter");
        using var timeout = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
        timeout.CancelAfter(Timeout);
        try
        {
            var output = process.StandardOutput.ReadToEndAsync(timeout.Token);
            var error = process.StandardError.ReadToEndAsync(timeout.Token);
            if (input is not null)
            {
                await process.StandardInput.WriteAsync(input.AsMemory(), timeout.Token).ConfigureAwait(false);
            }
            process.StandardInput.Close();
            await process.WaitForExitAsync(timeout.Token).ConfigureAwait(false);
            return new Result(process.ExitCode, await output.ConfigureAwait(false), await error.ConfigureAwait(false));
        }
        catch (OperationCanceledException)
        {
            try { process.Kill(entireProcessTree: true); } catch (InvalidOperationException) { }
            if (cancellationToken.IsCancellationRequested) throw;
            throw new NetnsCommandException($"{program} {string.Join(' ', args)} in {netnsPath} did not finish within {Timeout.TotalSeconds:0} s");
        }
    }
}

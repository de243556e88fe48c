using System.Diagnostics;
using System.Runtime.InteropServices;

namespace Ambient.Ctl.Local;

/// <summary>Stopping processes by pid only: a polite SIGTERM first, SIGKILL when the grace period is over.</summary>
internal static partial class Signals
{
    private const int SigTerm = 15;
    private const int SigInt = 2;

    /// <summary>
    /// SIGINT rather than SIGTERM: it is what Ctrl-C delivers, and the .NET hosts we run stop promptly on it, while on
    /// SIGTERM the generic host waits for open streams (xDS) up to its shutdown timeout.
    /// AMBIENT_STOP_SIGNAL=TERM switches back for programs that only honour SIGTERM.
    /// </summary>
    private static int StopSignal => Environment.GetEnvironmentVariable("AMBIENT_STOP_SIGNAL") == "TERM" ? SigTerm : SigInt;

    [LibraryImport("libc", EntryPoint = "kill", SetLastError = true)]
    private static partial int SysKill(int pid, int signal);

    /// <summary>Sends <paramref name="signal"/> (on Windows: kills at once). False when the process is gone.</summary>
    private static bool Send(Process process, int signal)
    {
        try
        {
            if (process.HasExited) return false;
            if (OperatingSystem.IsWindows())
            {
                process.Kill(entireProcessTree: true);
                return true;
            }
            return SysKill(process.Id, signal) == 0;
        }
        catch (InvalidOperationException)
        {
            return false;
        }
    }

    /// <summary>
    /// The stop signal, then after half the grace period SIGTERM (a process started with SIGINT ignored, e.g. from
    /// a non-interactive shell's background job, never sees the first), then SIGKILL. True if it had to kill.
    /// </summary>
    public static async Task<bool> StopAsync(Process process, TimeSpan grace)
    {
        if (!Send(process, StopSignal)) return false;
        if (await ExitedWithinAsync(process, grace / 2).ConfigureAwait(false)) return false;
        Send(process, SigTerm);
        if (await ExitedWithinAsync(process, grace / 2).ConfigureAwait(false)) return false;
        try { process.Kill(entireProcessTree: true); } catch (InvalidOperationException) { }
        await ExitedWithinAsync(process, TimeSpan.FromSeconds(1)).ConfigureAwait(false);
        return true;
    }

    private static async Task<bool> ExitedWithinAsync(Process process, TimeSpan time)
    {
        using var timeout = new CancellationTokenSource(time);
        try
        {
            await process.WaitForExitAsync(timeout.Token).ConfigureAwait(false);
            return true;
        }
        catch (OperationCanceledException)
        {
            return false;
        }
        catch (InvalidOperationException)
        {
            return true;
        }
    }

    // Start times are derived from boot time + clock ticks and differ by milliseconds between readers; a pid
    // reused within this window by a different program is not a realistic case.
    private static readonly TimeSpan StartTimeTolerance = TimeSpan.FromSeconds(2);

    public static Process? Find(int pid, long startTimeTicks)
    {
        try
        {
            var p = Process.GetProcessById(pid);
            if (p.HasExited || Math.Abs(p.StartTime.ToUniversalTime().Ticks - startTimeTicks) > StartTimeTolerance.Ticks)
            {
                p.Dispose();
                return null;
            }
            return p;
        }
        catch (Exception e) when (e is ArgumentException or InvalidOperationException or System.ComponentModel.Win32Exception)
        {
            return null;
        }
    }

    public static long StartTicks(Process p)
    {
        try { return p.StartTime.ToUniversalTime().Ticks; }
        catch (Exception e) when (e is InvalidOperationException or System.ComponentModel.Win32Exception) { return 0; }
    }
}

using System.Diagnostics;

namespace Ambient.TestCommon;

/// <summary>Runs the system openssl as an independent verifier. Missing openssl fails the test, never skips it.</summary>
public static class OpenSsl
{
    public const string Binary = "/usr/bin/openssl";

    /// <summary>Returns the exit code and everything openssl printed (stdout, then stderr).</summary>
    public static (int ExitCode, string Output) Run(params string[] args)
    {
        if (!File.Exists(Binary))
        {
            throw new InvalidOperationException($"{Binary} is required for the X.509 interop tests; install the Debian 'openssl' package");
        }
        var (code, stdout, stderr) = ChildProcess.Run(Binary, TimeSpan.FromSeconds(60), args);
        return (code, stdout + stderr);
    }
}

/// <summary>A short-lived command run to completion, its output captured.</summary>
public static class ChildProcess
{
    /// <summary>Runs <paramref name="file"/>; a run past <paramref name="deadline"/> is killed and throws.</summary>
    public static (int ExitCode, string Stdout, string Stderr) Run(string file, TimeSpan deadline, params string[] args)
    {
        var start = new ProcessStartInfo(file) { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
        foreach (var arg in args)
        {
            start.ArgumentList.Add(arg);
        }
        using var process = Process.Start(start)!;
        var stdout = process.StandardOutput.ReadToEndAsync();
        var stderr = process.StandardError.ReadToEndAsync();
        if (!process.WaitForExit(deadline))
        {
            process.Kill(entireProcessTree: true);
            throw new TimeoutException($"{Path.GetFileName(file)} {string.Join(' ', args)} did not finish within {deadline.TotalSeconds:F0} s");
        }
        return (process.ExitCode, stdout.Result, stderr.Result);
    }
}

using System.Diagnostics;

namespace Ambient.TestCommon.Kube;

/// <summary>The result of one kubectl run.</summary>
public sealed record KubectlResult(int ExitCode, string StandardOutput, string StandardError)
{
    public override string ToString() => $"exit {ExitCode}\n--- stdout\n{StandardOutput}\n--- stderr\n{StandardError}";
}

/// <summary>
/// Runs the machine's kubectl against a <see cref="FakeKubeApiServer"/>: its own kubeconfig and discovery cache in a
/// scratch folder, so nothing of the user's ~/.kube is read or written.
/// </summary>
public sealed class Kubectl : IDisposable
{
    private readonly TempDir _home = new();

    public Kubectl(FakeKubeApiServer server)
    {
        Kubeconfig = server.WriteKubeconfig(Path.Combine(_home.Path, "kubeconfig"));
    }

    public static string? Executable { get; } = FindOnPath("kubectl");

    public string Kubeconfig { get; }

    public static bool IsAvailable => Executable is not null;

    public Task<KubectlResult> RunAsync(params string[] args) => RunAsync(args, stdin: null, CancellationToken.None);

    public async Task<KubectlResult> RunAsync(IReadOnlyList<string> args, string? stdin, CancellationToken cancellationToken)
    {
        using var process = Start(args, stdin is not null);
        if (stdin is not null)
        {
            await process.StandardInput.WriteAsync(stdin).ConfigureAwait(false);
            process.StandardInput.Close();
        }
        var stdout = process.StandardOutput.ReadToEndAsync(cancellationToken);
        var stderr = process.StandardError.ReadToEndAsync(cancellationToken);
        using var timeout = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
        timeout.CancelAfter(TimeSpan.FromSeconds(60));
        try
        {
            await process.WaitForExitAsync(timeout.Token).ConfigureAwait(false);
        }
        catch (OperationCanceledException)
        {
            process.Kill(entireProcessTree: true);
            throw;
        }
        return new KubectlResult(process.ExitCode, await stdout.ConfigureAwait(false), await stderr.ConfigureAwait(false));
    }

    /// <summary>Starts kubectl with redirected output for a caller that reads it as it comes (get --watch); the caller kills it.</summary>
    public Process Start(IReadOnlyList<string> args, bool redirectStdin = false)
    {
        var start = new ProcessStartInfo(Executable ?? throw new InvalidOperationException("kubectl is not installed"))
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            RedirectStandardInput = redirectStdin,
            UseShellExecute = false,
        };
        start.ArgumentList.Add("--kubeconfig=" + Kubeconfig);
        start.ArgumentList.Add("--cache-dir=" + Path.Combine(_home.Path, "cache"));
        foreach (var arg in args)
        {
            start.ArgumentList.Add(arg);
        }
        start.Environment["HOME"] = _home.Path;
        start.Environment.Remove("KUBECONFIG");
        return Process.Start(start)!;
    }

    public void Dispose() => _home.Dispose();

    private static string? FindOnPath(string name)
    {
        foreach (var folder in (Environment.GetEnvironmentVariable("PATH") ?? "").Split(Path.PathSeparator, StringSplitOptions.RemoveEmptyEntries))
        {
            var candidate = Path.Combine(folder, name);
            if (File.Exists(candidate))
            {
                return candidate;
            }
        }
        return null;
    }
}

using System.CommandLine;
using System.Diagnostics;
using Ambient.Core.Files;
using Ambient.Core.Identity;
using Ambient.Ctl.Local;

namespace Ambient.Ctl.Cli;

/// <summary>
/// `ambientctl local rotate-root`: makes a new self-signed root and drops it into the running mesh's
/// <c>&lt;state&gt;/rotate-root/</c>, where istiod-lite picks it up and rotates every proxy to it without dropping
/// traffic; with --wait (the default) it follows until istiod-lite made it the state folder's root, or refused it.
/// </summary>
internal static class RotateRootCommand
{
    private static readonly TimeSpan PollInterval = TimeSpan.FromMilliseconds(250);

    public static Command Build()
    {
        var noWait = new Option<bool>("--no-wait") { Description = "return once the new root is handed to istiod-lite" };
        var timeout = new Option<int>("--timeout") { Description = "seconds to wait for the rotation", DefaultValueFactory = _ => 180 };
        var command = new Command("rotate-root", "Rotate the local mesh's self-signed root CA without traffic loss (old + new roots, re-issue every certificate, drop the old root)")
        {
            noWait, timeout,
        };
        command.SetAction(async (parse, ct) => await RunAsync(Console.Out, Console.Error, !parse.GetValue(noWait), TimeSpan.FromSeconds(parse.GetValue(timeout)), ct).ConfigureAwait(false));
        return command;
    }

    internal static async Task<int> RunAsync(TextWriter output, TextWriter error, bool wait, TimeSpan timeout, CancellationToken ct)
    {
        var state = LocalState.Read(out var readError);
        if (readError is not null || state is null)
        {
            error.WriteLine(readError is null ? "no local mesh is running (start one with `ambientctl local up --detach`)" : $"cannot read the state file: {readError}");
            return ExitCodes.Failed;
        }
        var drop = Path.Combine(state.StateFolder, SelfSignedRoot.RotationFolder);
        if (File.Exists(Path.Combine(drop, SelfSignedRoot.CertificateFile)) || File.Exists(Path.Combine(drop, SelfSignedRoot.KeyFile)))
        {
            error.WriteLine($"a rotation is pending already ({drop}); wait for it, or remove that folder's files if istiod-lite refused them");
            return ExitCodes.Failed;
        }
        var istiodLog = state.Components.FirstOrDefault(c => c.Kind == "istiod")?.Log;
        var logStart = istiodLog is not null && File.Exists(istiodLog) ? new FileInfo(istiodLog).Length : 0;

        var (root, certPem, keyPem) = SelfSignedRoot.Create(SpiffeId.DefaultTrustDomain);
        using (root)
        {
            PrivateFile.EnsureDirectory(drop);
            // Key first: istiod-lite acts only once both files are there, each complete (written by rename).
            PrivateFile.Write(Path.Combine(drop, SelfSignedRoot.KeyFile), keyPem);
            PrivateFile.Write(Path.Combine(drop, SelfSignedRoot.CertificateFile), certPem);
            output.WriteLine($"new root '{root.Subject}' (sha256 {root.GetCertHashString(System.Security.Cryptography.HashAlgorithmName.SHA256)[..16]}) handed to istiod-lite in {drop}");
        }
        if (!wait)
        {
            return ExitCodes.Ok;
        }
        var stateRoot = Path.Combine(state.StateFolder, SelfSignedRoot.CertificateFile);
        var clock = Stopwatch.StartNew();
        while (clock.Elapsed < timeout)
        {
            if (File.Exists(stateRoot) && string.Equals(File.ReadAllText(stateRoot), certPem, StringComparison.Ordinal))
            {
                output.WriteLine($"rotated in {clock.Elapsed.TotalSeconds:F1} s: every proxy trusts the new root only and holds certificates issued under it");
                return ExitCodes.Ok;
            }
            if (RefusalSince(istiodLog, logStart) is { } refusal)
            {
                error.WriteLine(refusal.Trim());
                return ExitCodes.Failed;
            }
            await Task.Delay(PollInterval, ct).ConfigureAwait(false);
        }
        error.WriteLine($"the rotation did not finish within {timeout.TotalSeconds:F0} s; see {istiodLog ?? "istiod-lite's log"}");
        return ExitCodes.Failed;
    }

    // istiod-lite logs one "root rotation refused" line per refused pair.
    private static string? RefusalSince(string? log, long start)
    {
        if (log is null || !File.Exists(log))
        {
            return null;
        }
        using var stream = new FileStream(log, FileMode.Open, FileAccess.Read, FileShare.ReadWrite | FileShare.Delete);
        stream.Seek(Math.Min(start, stream.Length), SeekOrigin.Begin);
        using var reader = new StreamReader(stream);
        while (reader.ReadLine() is { } line)
        {
            if (line.Contains("root rotation refused", StringComparison.Ordinal))
            {
                return line;
            }
        }
        return null;
    }
}

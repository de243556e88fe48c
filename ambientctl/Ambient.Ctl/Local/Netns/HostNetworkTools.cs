using System.Diagnostics;

namespace Ambient.Ctl.Local.Netns;

/// <summary>The outcome of one `ip` / `iptables` run.</summary>
internal readonly record struct ToolResult(int ExitCode, string Output, string Error)
{
    public bool Ok => ExitCode == 0;
}

/// <summary>
/// Runs iproute2 and iptables as a user would type them (argument lists, never a shell). The netns mode changes the
/// host's network, so it needs root and these tools; <see cref="CheckUsable"/> says which is missing before anything
/// is touched.
/// </summary>
internal sealed class HostNetworkTools
{
    private HostNetworkTools(string ip, string iptables, string iptablesRestore)
    {
        Ip = ip;
        Iptables = iptables;
        IptablesRestore = iptablesRestore;
    }

    public string Ip { get; }
    public string Iptables { get; }
    public string IptablesRestore { get; }

    /// <summary>The tools, or null with the reason netns mode cannot run here (not root, not Linux, a tool missing).</summary>
    public static HostNetworkTools? CheckUsable(out string? reason) => CheckUsable(out reason, out _);

    /// <summary>
    /// As <see cref="CheckUsable(out string?)"/>; <paramref name="missing"/> is what this host lacks in a few words
    /// ("root", "ip (iproute2)"), for the line that says why the default fell back to loopback.
    /// </summary>
    public static HostNetworkTools? CheckUsable(out string? reason, out string? missing)
    {
        if (!OperatingSystem.IsLinux())
        {
            missing = "Linux";
            reason = "--network netns needs Linux network namespaces; use --network loopback";
            return null;
        }
        if (!Environment.IsPrivilegedProcess)
        {
            missing = "root";
            reason = "--network netns needs root (it creates network namespaces, a bridge per node and iptables rules); run as root or use --network loopback";
            return null;
        }
        var tools = new List<string>();
        var ip = HostPrograms.Resolve("ip");
        if (ip is null) tools.Add("ip (iproute2)");
        var iptables = HostPrograms.Resolve("iptables");
        var restore = HostPrograms.Resolve("iptables-restore");
        if (iptables is null || restore is null || HostPrograms.Resolve("iptables-save") is null) tools.Add("iptables, iptables-save and iptables-restore (iptables)");
        if (tools.Count > 0)
        {
            missing = string.Join(" and ", tools) + " on PATH";
            reason = $"--network netns needs {missing}; install them (Debian: apt-get install iproute2 iptables) or use --network loopback";
            return null;
        }
        reason = null;
        missing = null;
        return new HostNetworkTools(ip!, iptables!, restore!);
    }

    /// <summary>Runs `ip ARGS`; throws <see cref="LocalMeshException"/> naming the command when it fails.</summary>
    public string IpOrThrow(params string[] args) => OrThrow(Run(Ip, args), "ip", args);

    public ToolResult IpTry(params string[] args) => Run(Ip, args);

    public ToolResult IptablesTry(params string[] args) => Run(Iptables, ["-w", .. args]);

    public string IptablesOrThrow(params string[] args) => OrThrow(Run(Iptables, ["-w", .. args]), "iptables", args);

    /// <summary>`iptables-save -t TABLE`, or null when it cannot run.</summary>
    public string? IptablesSaveTry(string table)
    {
        var save = HostPrograms.Resolve("iptables-save");
        if (save is null) return null;
        var result = Run(save, ["-t", table]);
        return result.Ok ? result.Output : null;
    }

    /// <summary>`iptables-restore --noflush`: every chain declared in <paramref name="rules"/> is replaced in one transaction.</summary>
    public void RestoreOrThrow(string rules) => OrThrow(Run(IptablesRestore, ["-w", "--noflush"], rules), "iptables-restore", ["--noflush"]);

    private static string OrThrow(ToolResult result, string tool, string[] args)
    {
        if (result.Ok) return result.Output;
        throw new LocalMeshException($"`{tool} {string.Join(' ', args)}` failed (exit {result.ExitCode}): {result.Error.Trim()}");
    }

    private static ToolResult Run(string file, IReadOnlyList<string> args, string? input = null)
    {
        var psi = new ProcessStartInfo(file)
        {
            UseShellExecute = false,
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            RedirectStandardInput = true,
        };
        foreach (var a in args) psi.ArgumentList.Add(a);
        using var process = Process.Start(psi) ?? throw new LocalMeshException($"cannot start {file}");
        var stderr = process.StandardError.ReadToEndAsync();
        if (input is not null) process.StandardInput.Write(input);
        process.StandardInput.Close();
        var stdout = process.StandardOutput.ReadToEnd();
        process.WaitForExit();
        return new ToolResult(process.ExitCode, stdout, stderr.GetAwaiter().GetResult());
    }

    /// <summary>Lines of `ip -o link show` / `ip netns list` style output, first word of each (interface or namespace names).</summary>
    public static List<string> FirstWords(string output, bool linkList)
    {
        var names = new List<string>();
        foreach (var raw in output.Split('\n', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries))
        {
            var line = raw;
            if (linkList)
            {
                // "12: amb-x-b0@if3: <...>" -> "amb-x-b0"
                var colon = line.IndexOf(": ", StringComparison.Ordinal);
                if (colon < 0) continue;
                line = line[(colon + 2)..];
                var end = line.IndexOfAny([':', '@']);
                names.Add(end < 0 ? line : line[..end]);
                continue;
            }
            var space = line.IndexOf(' ', StringComparison.Ordinal);
            names.Add(space < 0 ? line : line[..space]);
        }
        return names;
    }
}

using System.Diagnostics;
using System.Net.Sockets;
using System.Runtime.InteropServices;

namespace Ambient.TestCommon;

/// <summary>
/// A throwaway pod network namespace for root-only capture tests: a namespace and a veth pair whose names carry the
/// test's tag and process id (so parallel runs and other users' namespaces are never touched), the pod end addressed
/// and default-routed through the host end, and Istio's in-pod nat rules when asked. Everything is removed on
/// dispose, also after a failed step.
/// </summary>
public sealed partial class PodNetns : IDisposable
{
    /// <summary>
    /// Istio's in-pod nat rules (1.21+, as ../shared PROTOCOL.md lists them), minimal: inbound TCP that is not HBONE
    /// goes to 15006, outbound TCP not to 127.0.0.1 and not via lo goes to 15001, and the ztunnel's own sockets (mark
    /// 0x539/0xfff) pass untouched both ways. The production installer (the node agent) adds DNS and the mangle rules.
    /// </summary>
    public const string InPodNatRules =
        """
        *nat
        :PREROUTING ACCEPT [0:0]
        :OUTPUT ACCEPT [0:0]
        :ISTIO_PRERT - [0:0]
        :ISTIO_OUTPUT - [0:0]
        -A PREROUTING -j ISTIO_PRERT
        -A OUTPUT -j ISTIO_OUTPUT
        -A ISTIO_PRERT -m mark --mark 0x539/0xfff -j ACCEPT
        -A ISTIO_PRERT ! -d 127.0.0.1/32 -p tcp ! --dport 15008 -m mark ! --mark 0x539/0xfff -j REDIRECT --to-ports 15006
        -A ISTIO_OUTPUT -m mark --mark 0x539/0xfff -j ACCEPT
        -A ISTIO_OUTPUT ! -d 127.0.0.1/32 -o lo -j ACCEPT
        -A ISTIO_OUTPUT ! -d 127.0.0.1/32 -p tcp -m mark ! --mark 0x539/0xfff -j REDIRECT --to-ports 15001
        COMMIT

        """;

    private readonly List<string[]> _cleanup = [];

    private PodNetns(string name, string? hostLink)
    {
        Name = name;
        HostLink = hostLink;
    }

    /// <summary>The namespace's name (<c>ip netns</c>); its fd is at <see cref="Path"/>.</summary>
    public string Name { get; }

    public string Path => "/var/run/netns/" + Name;

    /// <summary>The veth end left in the host namespace; null for an isolated namespace.</summary>
    public string? HostLink { get; }

    /// <summary>Why root-only netns tests cannot run here; null when they can.</summary>
    public static string? Unavailable()
    {
        if (!OperatingSystem.IsLinux())
        {
            return "network namespaces are Linux only";
        }
        if (Environment.UserName != "root")
        {
            return "needs root (network namespaces, veths, iptables)";
        }
        foreach (var tool in new[] { "ip", "iptables-restore" })
        {
            if (!ToolExists(tool))
            {
                return $"needs `{tool}` (iproute2 / iptables)";
            }
        }
        return null;
    }

    /// <summary>
    /// Creates namespace <c>amb{tag}{pid}{index}</c> and a veth to it: <paramref name="hostAddress"/> (CIDR) on the host
    /// end, <paramref name="podAddress"/> (CIDR) on the pod end, default route via the host end, lo up.
    /// </summary>
    public static PodNetns Create(string tag, int index, string hostAddress, string podAddress, bool inPodRules)
    {
        var id = $"{tag}{Environment.ProcessId}{index}";
        var hostLink = "vh" + id;
        var netns = new PodNetns("amb" + id, hostLink);
        var podLink = "vp" + id;
        try
        {
            Run("ip", "netns", "add", netns.Name);
            netns._cleanup.Add(["ip", "netns", "del", netns.Name]);
            Run("ip", "link", "add", hostLink, "type", "veth", "peer", "name", podLink);
            netns._cleanup.Insert(0, ["ip", "link", "del", hostLink]);
            Run("ip", "link", "set", podLink, "netns", netns.Name);
            Run("ip", "addr", "add", hostAddress, "dev", hostLink);
            Run("ip", "link", "set", hostLink, "up");
            netns.Exec("ip", "addr", "add", podAddress, "dev", podLink);
            netns.Exec("ip", "link", "set", podLink, "up");
            netns.Exec("ip", "link", "set", "lo", "up");
            netns.Exec("ip", "route", "add", "default", "via", hostAddress.Split('/')[0]);
            if (inPodRules)
            {
                netns.ExecWithInput(InPodNatRules, "iptables-restore");
            }
            return netns;
        }
        catch
        {
            netns.Dispose();
            throw;
        }
    }

    /// <summary>
    /// Creates namespace <c>amb-{tag}-{pid}-{index}</c> with only its loopback up and no link to the host: for tests
    /// that install rules in it or talk into it from sockets made inside (<see cref="CreateSocket"/>).
    /// </summary>
    public static PodNetns CreateIsolated(string tag, int index)
    {
        var netns = new PodNetns($"amb-{tag}-{Environment.ProcessId}-{index}", null);
        try
        {
            Run("ip", "netns", "add", netns.Name);
            netns._cleanup.Add(["ip", "netns", "del", netns.Name]);
            netns.Exec("ip", "link", "set", "lo", "up");
            return netns;
        }
        catch
        {
            netns.Dispose();
            throw;
        }
    }

    /// <summary>Creates a socket inside the namespace, on a thread of its own that enters it, so no other thread moves.</summary>
    public Socket CreateSocket(AddressFamily family, SocketType type, ProtocolType protocol) => CreateSocketIn(Path, family, type, protocol);

    /// <summary>Creates a socket inside the namespace at <paramref name="netnsPath"/> (e.g. /var/run/netns/NAME, one a mesh made).</summary>
    public static Socket CreateSocketIn(string netnsPath, AddressFamily family, SocketType type, ProtocolType protocol)
    {
        Socket? socket = null;
        Exception? error = null;
        var thread = new Thread(() =>
        {
            try
            {
                using var self = File.OpenHandle("/proc/thread-self/ns/net");
                using var target = File.OpenHandle(netnsPath);
                Enter(target);
                try
                {
                    socket = new Socket(family, type, protocol);
                }
                finally
                {
                    Enter(self);
                }
            }
            catch (Exception e)
            {
                error = e;
            }
        });
        thread.Start();
        thread.Join();
        if (error is not null) throw error;
        return socket!;
    }

    private static void Enter(Microsoft.Win32.SafeHandles.SafeFileHandle netns)
    {
        const int CloneNewNet = 0x40000000;
        if (SetNs((int)netns.DangerousGetHandle(), CloneNewNet) != 0)
        {
            throw new InvalidOperationException("setns failed: errno " + Marshal.GetLastPInvokeError());
        }
    }

    [LibraryImport("libc", EntryPoint = "setns", SetLastError = true)]
    private static partial int SetNs(int fd, int nstype);

    /// <summary>Adds another address (CIDR) to the host end, e.g. for a pod simulated in the host namespace.</summary>
    public void AddHostAddress(string cidr) => Run("ip", "addr", "add", cidr, "dev", HostLink ?? throw new InvalidOperationException("an isolated namespace has no host link"));

    /// <summary>Runs a command inside the namespace (<c>ip netns exec</c>); throws with its output when it fails.</summary>
    public string Exec(params string[] command) => ExecWithInput(null, command);

    private string ExecWithInput(string? stdin, params string[] command) => RunWithInput(stdin, ["ip", "netns", "exec", Name, .. command]);

    /// <summary>Runs a host command; throws with its output when it fails.</summary>
    public static string Run(params string[] command) => RunWithInput(null, command);

    private static string RunWithInput(string? stdin, string[] command)
    {
        var start = new ProcessStartInfo(command[0]) { RedirectStandardOutput = true, RedirectStandardError = true, RedirectStandardInput = stdin is not null };
        foreach (var arg in command.AsSpan(1))
        {
            start.ArgumentList.Add(arg);
        }
        using var process = Process.Start(start)!;
        if (stdin is not null)
        {
            process.StandardInput.Write(stdin);
            process.StandardInput.Close();
        }
        var stdout = process.StandardOutput.ReadToEndAsync();
        var stderr = process.StandardError.ReadToEnd();
        process.WaitForExit();
        if (process.ExitCode != 0)
        {
            throw new InvalidOperationException($"`{string.Join(' ', command)}` failed ({process.ExitCode}): {stderr}");
        }
        return stdout.Result;
    }

    private static bool ToolExists(string tool)
    {
        foreach (var dir in (Environment.GetEnvironmentVariable("PATH") ?? "").Split(':').Concat(["/usr/sbin", "/sbin"]))
        {
            if (dir.Length > 0 && File.Exists(System.IO.Path.Combine(dir, tool)))
            {
                return true;
            }
        }
        return false;
    }

    public void Dispose()
    {
        foreach (var command in _cleanup)
        {
            try
            {
                RunWithInput(null, command);
            }
            catch (InvalidOperationException)
            {
                // Already gone (the veth goes with its namespace).
            }
        }
        _cleanup.Clear();
    }
}

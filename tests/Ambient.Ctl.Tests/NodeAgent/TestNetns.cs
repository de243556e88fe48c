using System.Diagnostics;
using System.Net.Sockets;
using System.Runtime.InteropServices;

namespace Ambient.Ctl.Tests.NodeAgent;

/// <summary>
/// A network namespace of the test's own, named for this test suite and the test process, removed on Dispose pass or
/// fail. Tests that need one skip when not root or when `ip` is missing.
/// </summary>
internal sealed partial class TestNetns : IDisposable
{
    private static int s_counter;

    private TestNetns(string name)
    {
        Name = name;
    }

    public string Name { get; }

    public string Path => "/run/netns/" + Name;

    public static TestNetns Create()
    {
        Assert.SkipUnless(OperatingSystem.IsLinux() && Environment.IsPrivilegedProcess, "needs root on Linux (network namespaces, iptables)");
        foreach (var tool in new[] { "ip", "iptables-save", "iptables-restore", "nsenter" })
        {
            Assert.SkipWhen(Ambient.Ctl.Local.HostPrograms.Resolve(tool) is null, tool + " is not installed (apt-get install iproute2 iptables util-linux)");
        }
        var name = $"amb-d2-{Environment.ProcessId}-{Interlocked.Increment(ref s_counter)}";
        Run("ip", "netns", "add", name);
        var netns = new TestNetns(name);
        try
        {
            netns.Exec("ip", "link", "set", "lo", "up");
        }
        catch
        {
            netns.Dispose();
            throw;
        }
        return netns;
    }

    /// <summary>Runs a program inside the namespace and returns its output; fails the test unless it exits 0.</summary>
    public string Exec(params string[] args) => Run(["ip", "netns", "exec", Name, .. args]);

    /// <summary>Creates a socket inside the namespace: on a thread of its own that enters it, so no other thread moves.</summary>
    public Socket CreateSocket(AddressFamily family, SocketType type, ProtocolType protocol)
    {
        Socket? socket = null;
        Exception? error = null;
        var thread = new Thread(() =>
        {
            try
            {
                using var self = File.OpenHandle("/proc/thread-self/ns/net");
                using var target = File.OpenHandle(Path);
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

    public void Dispose()
    {
        try { Run("ip", "netns", "del", Name); } catch (InvalidOperationException) { }
    }

    public static string Run(params string[] args)
    {
        var start = new ProcessStartInfo(args[0]) { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
        foreach (var arg in args[1..]) start.ArgumentList.Add(arg);
        using var process = Process.Start(start)!;
        var output = process.StandardOutput.ReadToEndAsync();
        var error = process.StandardError.ReadToEnd();
        process.WaitForExit();
        if (process.ExitCode != 0)
        {
            throw new InvalidOperationException($"{string.Join(' ', args)} exited {process.ExitCode}: {error}");
        }
        return output.Result;
    }
}

namespace Ambient.Ctl.Kube.NodeAgent;

/// <summary>
/// Finds a running pod's network namespace from the host's /proc, as istio-cni's node agent does for pods that were
/// created before it started (no CNI ADD reached it): a process whose cgroup path names the pod's uid
/// (<c>.../pod&lt;uid&gt;/...</c> with the cgroupfs driver, <c>...-pod&lt;uid with _&gt;.slice</c> with systemd's) is one of
/// the pod's, and its <c>ns/net</c> is the pod's namespace; a process in the host's namespace (a host-network pod) is
/// not.
/// </summary>
internal sealed class HostProcNetns(string procRoot)
{
    private readonly string? _hostNetns = LinkOf(Path.Combine(procRoot, "self", "ns", "net")) ?? LinkOf("/proc/self/ns/net");

    public string ProcRoot => procRoot;

    /// <summary>The path of the pod's namespace (<c>PROC/PID/ns/net</c>), or null when no process of it runs.</summary>
    public string? Find(string podUid)
    {
        if (string.IsNullOrEmpty(podUid) || !Directory.Exists(procRoot)) return null;
        var cgroupfs = "pod" + podUid;
        var systemd = "pod" + podUid.Replace('-', '_');
        foreach (var dir in Directory.EnumerateDirectories(procRoot))
        {
            var name = Path.GetFileName(dir);
            if (name.Length == 0 || !IsDigits(name)) continue;
            string cgroup;
            try
            {
                cgroup = File.ReadAllText(Path.Combine(dir, "cgroup"));
            }
            catch (Exception e) when (e is IOException or UnauthorizedAccessException)
            {
                continue; // exited meanwhile, or a kernel thread
            }
            if (!Names(cgroup, cgroupfs) && !Names(cgroup, systemd)) continue;
            var netns = Path.Combine(dir, "ns", "net");
            var link = LinkOf(netns);
            if (link is null || link == _hostNetns) continue;
            return netns;
        }
        return null;
    }

    // The uid as a whole path element or slice suffix, so one uid never matches another that starts with it.
    private static bool Names(string cgroup, string token)
    {
        var at = 0;
        while ((at = cgroup.IndexOf(token, at, StringComparison.Ordinal)) >= 0)
        {
            var end = at + token.Length;
            var before = at == 0 ? '/' : cgroup[at - 1];
            var after = end == cgroup.Length ? '\n' : cgroup[end];
            if (before is '/' or '-' && after is '/' or '.' or '\n') return true;
            at = end;
        }
        return false;
    }

    private static bool IsDigits(string text)
    {
        foreach (var c in text)
        {
            if (c is < '0' or > '9') return false;
        }
        return true;
    }

    /// <summary>What the nsfs link says (<c>net:[4026531993]</c>): two processes share a namespace when it is equal.</summary>
    private static string? LinkOf(string path)
    {
        try
        {
            return new FileInfo(path).LinkTarget;
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            return null;
        }
    }
}

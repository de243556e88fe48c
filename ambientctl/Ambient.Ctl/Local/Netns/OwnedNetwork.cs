using System.Text.Json;

namespace Ambient.Ctl.Local.Netns;

/// <summary>
/// What a netns-mode mesh has created on this host, written to <c>&lt;state&gt;/network.json</c> before each object is
/// made (so a crash at any moment leaves a record naming it): the id (whose prefix marks every object) and the objects.
/// `local down` and the next `local up` read it to remove this mesh's leftovers, and only those.
/// </summary>
internal sealed record OwnedNetworkRecord(string Id, string PodCidr, string ServiceCidr, List<string> Bridges, List<string> Namespaces)
{
    public const string FileName = "network.json";

    private static readonly JsonSerializerOptions Json = new() { WriteIndented = true, PropertyNamingPolicy = JsonNamingPolicy.CamelCase };

    public static string PathIn(string stateFolder) => System.IO.Path.Combine(stateFolder, FileName);

    public static OwnedNetworkRecord? Read(string stateFolder)
    {
        var path = PathIn(stateFolder);
        if (!File.Exists(path)) return null;
        try
        {
            return JsonSerializer.Deserialize<OwnedNetworkRecord>(File.ReadAllText(path), Json);
        }
        catch (Exception e) when (e is IOException or JsonException or UnauthorizedAccessException)
        {
            return null;
        }
    }

    public void Write(string stateFolder)
    {
        Directory.CreateDirectory(stateFolder);
        var path = PathIn(stateFolder);
        var temp = path + "." + Environment.ProcessId + ".tmp";
        File.WriteAllText(temp, JsonSerializer.Serialize(this, Json));
        File.Move(temp, path, overwrite: true);
    }

    public static void Delete(string stateFolder)
    {
        try { File.Delete(PathIn(stateFolder)); } catch (IOException) { }
    }
}

/// <summary>
/// Removes every host object of one mesh id: the iptables rules that jump to its chains and the chains, its network
/// namespaces (with their /etc/netns files), its links (veths, then bridges). Found both from the record and by the
/// owned prefix, so an object made just before a crash is found too; an object of another mesh never matches.
/// </summary>
internal static class OwnedNetworkCleanup
{
    /// <summary>The etc folder `ip netns exec` bind-mounts files from (resolv.conf).</summary>
    internal const string EtcNetns = "/etc/netns";

    /// <summary>Cleans the leftovers recorded in <paramref name="stateFolder"/>; true when there were any to look at.</summary>
    public static bool CleanUpRecorded(string stateFolder, HostNetworkTools tools, Action<string> report)
    {
        var record = OwnedNetworkRecord.Read(stateFolder);
        if (record is null || NetworkNames.Validate(record.Id) is not null) return false;
        CleanUp(new NetworkNames(record.Id), record, tools, report);
        OwnedNetworkRecord.Delete(stateFolder);
        return true;
    }

    public static void CleanUp(NetworkNames names, OwnedNetworkRecord? record, HostNetworkTools tools, Action<string> report)
    {
        RemoveChains(names, tools, report);
        var namespaces = new SortedSet<string>(StringComparer.Ordinal);
        if (record is not null) namespaces.UnionWith(record.Namespaces);
        var listed = tools.IpTry("netns", "list");
        if (listed.Ok)
        {
            foreach (var n in HostNetworkTools.FirstWords(listed.Output, linkList: false))
            {
                if (n.StartsWith(names.Prefix, StringComparison.Ordinal)) namespaces.Add(n);
            }
        }
        foreach (var n in namespaces)
        {
            if (!n.StartsWith(names.Prefix, StringComparison.Ordinal)) continue; // a record is data: never act beyond the prefix
            if (tools.IpTry("netns", "del", n).Ok) report($"removed network namespace {n}");
        }
        RemoveEtcNetns(names);
        // Veths first (deleting the host end removes the pod end, even in a namespace a leftover process keeps alive), then bridges.
        var links = tools.IpTry("-o", "link", "show");
        if (links.Ok)
        {
            var owned = HostNetworkTools.FirstWords(links.Output, linkList: true).FindAll(l => l.StartsWith(names.Prefix, StringComparison.Ordinal));
            owned.Sort((a, b) => IsBridge(names, a).CompareTo(IsBridge(names, b)));
            foreach (var link in owned)
            {
                if (tools.IpTry("link", "del", link).Ok) report($"removed link {link}");
            }
        }
    }

    private static bool IsBridge(NetworkNames names, string link) => link.Length > names.Prefix.Length && link[names.Prefix.Length] == 'b';

    private static void RemoveEtcNetns(NetworkNames names)
    {
        if (!Directory.Exists(EtcNetns)) return;
        foreach (var dir in Directory.EnumerateDirectories(EtcNetns))
        {
            if (!System.IO.Path.GetFileName(dir).StartsWith(names.Prefix, StringComparison.Ordinal)) continue;
            try { Directory.Delete(dir, recursive: true); } catch (IOException) { } catch (UnauthorizedAccessException) { }
        }
    }

    /// <summary>Deletes every rule that jumps to one of the owned chains (in any table), then the chains.</summary>
    private static void RemoveChains(NetworkNames names, HostNetworkTools tools, Action<string> report)
    {
        foreach (var table in (string[])["nat", "filter"])
        {
            var save = tools.IptablesSaveTry(table);
            if (save is null) continue;
            var chains = new List<string>();
            var jumps = new List<string[]>();
            foreach (var line in save.Split('\n', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries))
            {
                if (line.StartsWith(':' + names.ChainPrefix, StringComparison.Ordinal))
                {
                    chains.Add(line[1..line.IndexOf(' ', StringComparison.Ordinal)]);
                }
                else if (line.StartsWith("-A ", StringComparison.Ordinal) && line.Contains(" -j " + names.ChainPrefix, StringComparison.Ordinal)
                    && !line.StartsWith("-A " + names.ChainPrefix, StringComparison.Ordinal))
                {
                    jumps.Add(line.Split(' ', StringSplitOptions.RemoveEmptyEntries));
                }
            }
            foreach (var jump in jumps)
            {
                jump[0] = "-D";
                tools.IptablesTry(["-t", table, .. jump]);
            }
            foreach (var chain in chains)
            {
                tools.IptablesTry("-t", table, "-F", chain);
            }
            foreach (var chain in chains)
            {
                if (tools.IptablesTry("-t", table, "-X", chain).Ok) report($"removed iptables chain {table}/{chain}");
            }
        }
    }
}

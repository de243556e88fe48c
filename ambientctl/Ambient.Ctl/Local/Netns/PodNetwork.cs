using System.Collections.Immutable;
using System.Globalization;
using System.Net;
using System.Text;
using Ambient.Core;
using Ambient.Core.Config;
using Ambient.Core.Model;

namespace Ambient.Ctl.Local.Netns;

/// <summary>The settings of `local up --network netns`.</summary>
internal sealed record NetnsSettings(AddressRanges Ranges, string Id, IPodNetworkHooks Hooks)
{
    public NetworkNames Names { get; } = new(Id);
}

/// <summary>
/// The host side of netns mode, as a small kubelet + CNI + kube-proxy would make it on one machine:
/// <list type="bullet">
/// <item>a bridge per node in the host namespace, holding the node's address (the .1 of its /24: its ztunnel listens
/// there) and forwarding enabled on the bridge alone (the host's ip_forward is left as it is); nodes reach each other
/// because all bridges live in the host namespace, each with its connected route;</item>
/// <item>per pod a network namespace with <c>eth0</c> (a veth whose host end is in its node's bridge), the pod address, a
/// default route via the bridge, and /etc/netns/NAME/resolv.conf naming the cluster DNS VIP;</item>
/// <item>in owned iptables chains: DNAT of the DNS VIP's port 53 to the pod's node ztunnel DNS proxy (15053), DNAT of
/// each Service VIP:port to a ready endpoint (random among several, as kube-proxy), rebuilt in one iptables-restore
/// whenever Services or running pods change; masquerade for a pod reaching itself or a neighbour through a VIP; and
/// FORWARD accept between the mesh's pods.</item>
/// </list>
/// Everything is recorded (<see cref="OwnedNetworkRecord"/>) before it is made and carries the mesh's owned prefix.
/// </summary>
internal sealed class PodNetwork : IDisposable
{
    private readonly HostNetworkTools _tools;
    private readonly NetnsSettings _settings;
    private readonly NetworkNames _names;
    private readonly string _stateFolder;
    private readonly Action<string> _report;
    private readonly OwnedNetworkRecord _record;
    private readonly Dictionary<string, int> _nodeIndex = new(StringComparer.Ordinal);
    private readonly Dictionary<string, (PodSandbox Sandbox, int Veth)> _pods = new(StringComparer.Ordinal);
    private readonly Lock _lock = new();
    private ImmutableArray<Resource> _resources = [];
    private string? _appliedServiceRules;
    private bool _disposed;

    private PodNetwork(HostNetworkTools tools, NetnsSettings settings, string stateFolder, Action<string> report)
    {
        _tools = tools;
        _settings = settings;
        _names = settings.Names;
        _stateFolder = stateFolder;
        _report = report;
        _record = new OwnedNetworkRecord(settings.Id, settings.Ranges.PodCidr.ToString(), settings.Ranges.ServiceCidr.ToString(), [], []);
    }

    public NetnsSettings Settings => _settings;

    public HostNetworkTools Tools => _tools;

    /// <summary>
    /// Removes what an earlier run of this mesh left (crash), checks the CIDRs are free on this host, then makes the
    /// bridges and chains. On failure everything made so far is removed again.
    /// </summary>
    public static PodNetwork Create(MeshPlan plan, NetnsSettings settings, string stateFolder, HostNetworkTools tools, Action<string> report)
    {
        OwnedNetworkCleanup.CleanUpRecorded(stateFolder, tools, report);
        OwnedNetworkCleanup.CleanUp(settings.Names, null, tools, report);
        CheckRangesAreFree(settings, tools);
        var network = new PodNetwork(tools, settings, stateFolder, report);
        try
        {
            network.CreateNodes(plan);
            network.CreateChains(plan);
            return network;
        }
        catch
        {
            network.Dispose();
            throw;
        }
    }

    /// <summary>Refuses a pod or service CIDR that overlaps an address or route already on this host (not ours).</summary>
    private static void CheckRangesAreFree(NetnsSettings settings, HostNetworkTools tools)
    {
        var routes = tools.IpOrThrow("-o", "-4", "route", "show", "table", "all");
        foreach (var line in routes.Split('\n', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries))
        {
            var words = line.Split(' ', StringSplitOptions.RemoveEmptyEntries);
            var i = 0;
            if (words.Length > 1 && words[0] is "local" or "broadcast" or "unicast" or "blackhole" or "unreachable" or "prohibit") i = 1;
            if (words[i] == "default") continue;
            var text = words[i].Contains('/') ? words[i] : words[i] + "/32";
            if (!IPNetwork.TryParse(text, out var route) || route.PrefixLength == 0) continue;
            var dev = Array.IndexOf(words, "dev") is var d and >= 0 && d + 1 < words.Length ? words[d + 1] : "";
            foreach (var (flag, cidr) in new[] { ("--pod-cidr", settings.Ranges.PodCidr), ("--service-cidr", settings.Ranges.ServiceCidr) })
            {
                if (cidr.Contains(route.BaseAddress) || route.Contains(cidr.BaseAddress))
                {
                    throw new LocalMeshException($"{flag} {cidr} overlaps {route} (dev {dev}) on this host; choose another range with {flag}");
                }
            }
        }
    }

    private void Record() => _record.Write(_stateFolder);

    private void CreateNodes(MeshPlan plan)
    {
        var index = 0;
        foreach (var (node, gateway) in plan.Nodes)
        {
            var bridge = _names.Bridge(index);
            _nodeIndex[node] = index;
            _record.Bridges.Add(bridge);
            Record();
            _tools.IpOrThrow("link", "add", bridge, "type", "bridge");
            _tools.IpOrThrow("addr", "add", gateway + "/24", "dev", bridge);
            _tools.IpOrThrow("link", "set", bridge, "up");
            // Forwarding on our bridges only: packets from pods are routed to other bridges (other nodes) and back,
            // while the host's own ip_forward (all interfaces) is left alone. The setting goes away with the bridge.
            File.WriteAllText($"/proc/sys/net/ipv4/conf/{bridge}/forwarding", "1");
            _report($"node {node}: bridge {bridge} {gateway}/24");
            index++;
        }
    }

    private void CreateChains(MeshPlan plan)
    {
        var ranges = _settings.Ranges;
        var rules = new StringBuilder();
        rules.Append("*nat\n");
        rules.Append(':').Append(_names.ServicesChain).Append(" - [0:0]\n");
        rules.Append(':').Append(_names.HairpinChain).Append(" - [0:0]\n");
        foreach (var (node, index) in _nodeIndex)
        {
            var block = ranges.NodePodCidr(index);
            // Pods of a node reach each other over the bridge without the host: through a VIP the reply would bypass the
            // DNAT, so such a connection is masqueraded to the bridge address (kube-proxy's hairpin masquerade).
            rules.Append(CultureInfo.InvariantCulture, $"-A {_names.HairpinChain} -s {block} -d {block} -m conntrack --ctstate DNAT -j MASQUERADE\n");
        }
        rules.Append("COMMIT\n*filter\n");
        rules.Append(':').Append(_names.ForwardChain).Append(" - [0:0]\n");
        rules.Append(CultureInfo.InvariantCulture, $"-A {_names.ForwardChain} -s {ranges.PodCidr} -d {ranges.PodCidr} -j ACCEPT\n");
        rules.Append("COMMIT\n");
        _tools.RestoreOrThrow(rules.ToString());
        _tools.IptablesOrThrow("-t", "nat", "-I", "PREROUTING", "-j", _names.ServicesChain);
        _tools.IptablesOrThrow("-t", "nat", "-I", "OUTPUT", "-j", _names.ServicesChain);
        _tools.IptablesOrThrow("-t", "nat", "-I", "POSTROUTING", "-j", _names.HairpinChain);
        _tools.IptablesOrThrow("-t", "filter", "-I", "FORWARD", "-j", _names.ForwardChain);
        UpdateServices(plan.Resources);
    }

    /// <summary>The sandbox of a running pod, if it has one.</summary>
    public PodSandbox? Find(string @namespace, string pod)
    {
        lock (_lock) return _pods.TryGetValue(@namespace + "/" + pod, out var p) ? p.Sandbox : null;
    }

    /// <summary>Makes the pod's namespace (once per pod: its containers share it); false when it existed already.</summary>
    public bool EnsurePod(ContainerPlan c, out PodSandbox sandbox)
    {
        var key = c.Namespace + "/" + c.Pod;
        int veth;
        lock (_lock)
        {
            ObjectDisposedException.ThrowIf(_disposed, this);
            if (_pods.TryGetValue(key, out var existing))
            {
                sandbox = existing.Sandbox;
                return false;
            }
            veth = FreeVethIndex();
            var name = _names.Netns(c.Namespace, c.Pod);
            sandbox = new PodSandbox(c.Namespace, c.Pod, c.Node, c.Address, c.ServiceAccount, name, "/run/netns/" + name, c.InMesh);
            _pods[key] = (sandbox, veth);
            _record.Namespaces.Add(name);
            Record();
        }
        try
        {
            CreateSandbox(sandbox, veth);
        }
        catch
        {
            RemovePod(c.Namespace, c.Pod);
            throw;
        }
        return true;
    }

    private int FreeVethIndex()
    {
        var taken = new HashSet<int>();
        foreach (var (_, p) in _pods) taken.Add(p.Veth);
        for (var i = 0; i <= NetworkNames.MaxVethIndex; i++)
        {
            if (!taken.Contains(i)) return i;
        }
        throw new LocalMeshException($"more than {NetworkNames.MaxVethIndex + 1} pods in one netns-mode mesh");
    }

    private void CreateSandbox(PodSandbox pod, int vethIndex)
    {
        if (!_nodeIndex.TryGetValue(pod.Node, out var node)) throw new LocalMeshException($"pod {pod.Namespace}/{pod.Pod}: node '{pod.Node}' has no bridge");
        var ns = pod.NetnsName;
        var veth = _names.Veth(vethIndex);
        WriteResolvConf(pod);
        _tools.IpOrThrow("netns", "add", ns);
        _tools.IpOrThrow("link", "add", veth, "type", "veth", "peer", "name", "eth0", "netns", ns);
        _tools.IpOrThrow("link", "set", veth, "master", _names.Bridge(node), "up");
        _tools.IpOrThrow("-n", ns, "addr", "add", pod.Address + "/24", "dev", "eth0");
        _tools.IpOrThrow("-n", ns, "link", "set", "lo", "up");
        _tools.IpOrThrow("-n", ns, "link", "set", "eth0", "up");
        _tools.IpOrThrow("-n", ns, "route", "add", "default", "via", _settings.Ranges.NodeGateway(node).ToString());
    }

    /// <summary>
    /// The pod's resolver is the cluster DNS VIP (as kube-dns' 10.96.0.10), with Kubernetes' search list and ndots. A pod
    /// outside the mesh reaches it through the host's DNAT to its node ztunnel's DNS proxy on 15053; an enrolled pod's
    /// capture rules redirect the same queries to the ztunnel's proxy inside the pod (127.0.0.1:15053). Either way mesh
    /// names resolve to VIPs and other names are forwarded by the proxy to the host's resolver.
    /// </summary>
    private void WriteResolvConf(PodSandbox pod)
    {
        var folder = Path.Combine(OwnedNetworkCleanup.EtcNetns, pod.NetnsName);
        Directory.CreateDirectory(folder);
        File.WriteAllText(Path.Combine(folder, "resolv.conf"),
            $"# written by ambientctl local up --network netns: the ztunnel's DNS proxy, through the cluster DNS VIP\n" +
            $"nameserver {_settings.Ranges.DnsVip}\nsearch {pod.Namespace}.svc.cluster.local svc.cluster.local cluster.local\noptions ndots:5\n");
    }

    /// <summary>Deletes the pod's namespace, veth and resolv.conf (its programs must have stopped).</summary>
    public void RemovePod(string @namespace, string pod)
    {
        (PodSandbox Sandbox, int Veth) entry;
        lock (_lock)
        {
            if (!_pods.Remove(@namespace + "/" + pod, out entry)) return;
        }
        _tools.IpTry("link", "del", _names.Veth(entry.Veth));
        _tools.IpTry("netns", "del", entry.Sandbox.NetnsName);
        try { Directory.Delete(Path.Combine(OwnedNetworkCleanup.EtcNetns, entry.Sandbox.NetnsName), recursive: true); }
        catch (IOException) { }
        lock (_lock)
        {
            _record.Namespaces.Remove(entry.Sandbox.NetnsName);
            if (!_disposed) Record();
        }
    }

    /// <summary>Records a pod's new enrolment; the sandbox as the hooks should now see it, or null without one.</summary>
    public PodSandbox? SetInMesh(string @namespace, string pod, bool inMesh)
    {
        lock (_lock)
        {
            var key = @namespace + "/" + pod;
            if (!_pods.TryGetValue(key, out var entry) || entry.Sandbox.InMesh == inMesh) return null;
            var updated = entry.Sandbox with { InMesh = inMesh };
            _pods[key] = (updated, entry.Veth);
            return updated;
        }
    }

    /// <summary>Services changed (a config change): rebuild the DNAT rules from the new config.</summary>
    public void UpdateServices(ImmutableArray<Resource> resources)
    {
        lock (_lock) _resources = resources;
        RefreshServices();
    }

    /// <summary>
    /// Rebuilds the services chain from the config and the pods that run now (an endpoint is ready while its pod
    /// runs), replacing it in one iptables-restore transaction; does nothing when the rules are unchanged.
    /// </summary>
    public void RefreshServices()
    {
        string rules;
        lock (_lock)
        {
            if (_disposed) return;
            var ready = new HashSet<IPAddress>();
            foreach (var (_, p) in _pods) ready.Add(p.Sandbox.Address);
            rules = ServiceRules.Build(_names, _settings.Ranges, _nodeIndex, _resources, ready);
            if (rules == _appliedServiceRules) return;
            _appliedServiceRules = rules;
        }
        _tools.RestoreOrThrow(rules);
    }

    /// <summary>Removes everything this mesh made on the host (every pod's programs must have stopped).</summary>
    public void Dispose()
    {
        lock (_lock)
        {
            if (_disposed) return;
            _disposed = true;
            _pods.Clear();
        }
        // Quietly: removing what this run made is the normal end, not news (leftovers of a crash are reported).
        OwnedNetworkCleanup.CleanUp(_names, _record, _tools, static _ => { });
        OwnedNetworkRecord.Delete(_stateFolder);
    }
}

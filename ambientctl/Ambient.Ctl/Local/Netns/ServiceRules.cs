using System.Collections.Immutable;
using System.Globalization;
using System.Net;
using System.Text;
using Ambient.Core;
using Ambient.Core.Config;
using Ambient.Core.Model;

namespace Ambient.Ctl.Local.Netns;

/// <summary>
/// The nat rules kube-proxy (iptables mode) would write for a config, as one iptables-restore input that replaces the
/// services chain: per node, the DNS VIP's port 53 (UDP and TCP) to that node's ztunnel DNS proxy; per Service VIP and
/// port, DNAT to one ready endpoint, the n-th of n chosen with probability 1/(n-i) so each is equally likely. Endpoints
/// come from the same builder istiod-lite uses (label selectors, named target ports), so both agree on them.
/// </summary>
internal static class ServiceRules
{
    public static string Build(NetworkNames names, AddressRanges ranges, IReadOnlyDictionary<string, int> nodeIndex,
        ImmutableArray<Resource> resources, IReadOnlySet<IPAddress> ready)
    {
        var chain = names.ServicesChain;
        var rules = new StringBuilder();
        rules.Append("*nat\n:").Append(chain).Append(" - [0:0]\n");
        var nodes = new List<int>(nodeIndex.Values);
        nodes.Sort();
        foreach (var index in nodes)
        {
            foreach (var protocol in (string[])["udp", "tcp"])
            {
                rules.Append(CultureInfo.InvariantCulture,
                    $"-A {chain} -s {ranges.NodePodCidr(index)} -d {ranges.DnsVip}/32 -p {protocol} -m {protocol} --dport 53 -j DNAT --to-destination {ranges.NodeGateway(index)}:{MeshPorts.Dns}\n");
            }
        }
        if (!resources.IsDefaultOrEmpty)
        {
            AppendServices(rules, chain, MeshBuilder.Build(resources, new MeshOptions { Addresses = ranges }), ready);
        }
        rules.Append("COMMIT\n");
        return rules.ToString();
    }

    private static void AppendServices(StringBuilder rules, string chain, MeshSnapshot snapshot, IReadOnlySet<IPAddress> ready)
    {
        var services = new List<ServiceInfo>(snapshot.Services);
        services.Sort(static (a, b) => string.CompareOrdinal(a.Key, b.Key));
        var endpoints = new List<IPEndPoint>();
        foreach (var service in services)
        {
            foreach (var vip in service.Vips)
            {
                foreach (var port in service.Ports)
                {
                    endpoints.Clear();
                    foreach (var w in snapshot.Workloads)
                    {
                        if (w.Addresses.IsEmpty || !ready.Contains(w.Addresses[0])) continue;
                        foreach (var s in w.Services)
                        {
                            if (s.ServiceKey == service.Key && s.TryGetTargetPort(port.Port, out var target) && target != 0)
                            {
                                endpoints.Add(new IPEndPoint(w.Addresses[0], target));
                            }
                        }
                    }
                    endpoints.Sort(static (a, b) => string.CompareOrdinal(a.ToString(), b.ToString()));
                    AppendPort(rules, chain, vip, port.Port, endpoints);
                }
            }
        }
    }

    private static void AppendPort(StringBuilder rules, string chain, IPAddress vip, int port, List<IPEndPoint> endpoints)
    {
        // No ready endpoint: no rule, so the connection goes nowhere (kube-proxy rejects it in the filter table).
        for (var i = 0; i < endpoints.Count; i++)
        {
            rules.Append(CultureInfo.InvariantCulture, $"-A {chain} -d {vip}/32 -p tcp -m tcp --dport {port}");
            var left = endpoints.Count - i;
            if (left > 1)
            {
                rules.Append(CultureInfo.InvariantCulture, $" -m statistic --mode random --probability {1.0 / left:0.00000000000}");
            }
            rules.Append(CultureInfo.InvariantCulture, $" -j DNAT --to-destination {endpoints[i]}\n");
        }
    }
}

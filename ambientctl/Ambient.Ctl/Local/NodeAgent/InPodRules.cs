using System.Text;

namespace Ambient.Ctl.Local.NodeAgent;

/// <summary>What varies between pods' capture rules.</summary>
/// <param name="RedirectDns">Send the pod's DNS (UDP and TCP port 53) to the ztunnel's DNS proxy on 15053.</param>
/// <param name="HostProbeSnatAddress">
/// The address the node SNATs its own health probes to before they enter a pod (Istio: 169.254.7.127); traffic from
/// and back to it is not captured, so a probe does not need the mesh. Null leaves the exception out.
/// </param>
internal sealed record InPodRuleOptions(bool RedirectDns, string? HostProbeSnatAddress = InPodRules.DefaultHostProbeSnatAddress);

/// <summary>
/// The iptables rules and policy routing Istio's in-pod mode (istio-cni, cni/pkg/iptables/iptables.go) installs inside
/// an enrolled pod's network namespace, with the same chain names, marks and ports, so `iptables-save` in a pod looks
/// as it does under Istio and its tooling and docs apply. Pure: it turns options and the namespace's current
/// `iptables-save` text into `iptables-restore --noflush` input. The text replaces whatever of ours is there in one
/// transaction (the pod is never half-captured, re-installing is idempotent) and never touches a rule of anyone else.
/// </summary>
internal static class InPodRules
{
    public const string PreroutingChain = "ISTIO_PRERT";
    public const string OutputChain = "ISTIO_OUTPUT";

    /// <summary>The ztunnel's sockets carry this SO_MARK (1337) so their traffic is not captured again.</summary>
    public const string ZtunnelMark = "0x539/0xfff";

    /// <summary>Connections the ztunnel accepted are connmarked with it; replies route back to it through table 100.</summary>
    public const string ConnectionMark = "0x111/0xfff";

    public const int ReturnRouteTable = 100;

    /// <summary>The priority Istio gives its `fwmark 0x111/0xfff lookup 100` rule.</summary>
    public const int ReturnRulePriority = 32764;

    public const int OutboundPort = 15001;
    public const int InboundPlaintextPort = 15006;
    public const int HboneInboundPort = 15008;
    public const int DnsPort = 15053;
    public const string DefaultHostProbeSnatAddress = "169.254.7.127";

    private const string RestoreMask = "0xffffffff";

    /// <summary>
    /// `iptables-restore --noflush` input that leaves exactly our rules for <paramref name="options"/>: chains of
    /// ours are declared (which flushes them), jumps to them that already exist are deleted before being appended
    /// again, and chains of ours in a table the new rules no longer use (raw, when DNS capture was turned off) go.
    /// </summary>
    public static string BuildInstall(InPodRuleOptions options, IptablesState current)
    {
        var wanted = Rules(options);
        var text = new StringBuilder();
        foreach (var table in TableOrder)
        {
            var add = wanted.GetValueOrDefault(table);
            var existing = current.Owned(table);
            if (add is null && existing.IsEmpty) continue;
            text.Append('*').Append(table).Append('\n');
            if (add is not null)
            {
                foreach (var chain in add.Chains)
                {
                    text.Append(':').Append(chain).Append(" - [0:0]\n");
                }
            }
            foreach (var jump in existing.Jumps)
            {
                text.Append("-D ").Append(jump).Append('\n');
            }
            foreach (var chain in existing.Chains)
            {
                if (add is not null && add.Chains.Contains(chain)) continue;
                text.Append("-F ").Append(chain).Append('\n').Append("-X ").Append(chain).Append('\n');
            }
            if (add is not null)
            {
                foreach (var rule in add.Rules)
                {
                    text.Append("-A ").Append(rule).Append('\n');
                }
            }
            text.Append("COMMIT\n");
        }
        return text.ToString();
    }

    /// <summary>
    /// The tables whose rules capture: what goes first when a pod leaves (new connections and DNS leave directly). The
    /// mangle table's rules (connmark to fwmark, for the return route) go last, after the ztunnel let go of the pod.
    /// </summary>
    public static readonly string[] CaptureTables = ["nat", "raw"];

    /// <summary>
    /// `iptables-restore --noflush` input that removes every rule and chain of ours (in <paramref name="tables"/>, or
    /// in all) and nothing else; null when there is nothing of ours (iptables-restore would fail deleting what is not there).
    /// </summary>
    public static string? BuildRemove(IptablesState current, IReadOnlyCollection<string>? tables = null)
    {
        StringBuilder? text = null;
        foreach (var table in TableOrder)
        {
            if (tables is not null && !tables.Contains(table)) continue;
            var existing = current.Owned(table);
            if (existing.IsEmpty) continue;
            text ??= new StringBuilder();
            text.Append('*').Append(table).Append('\n');
            foreach (var jump in existing.Jumps)
            {
                text.Append("-D ").Append(jump).Append('\n');
            }
            foreach (var chain in existing.Chains)
            {
                text.Append("-F ").Append(chain).Append('\n');
            }
            foreach (var chain in existing.Chains)
            {
                text.Append("-X ").Append(chain).Append('\n');
            }
            text.Append("COMMIT\n");
        }
        return text?.ToString();
    }

    private static readonly string ReturnTable = ReturnRouteTable.ToString(System.Globalization.CultureInfo.InvariantCulture);

    // What the return routing is, as `ip route` / `ip rule` take it after the verb and as `ip rule show` prints it.
    private static readonly string ReturnRoute = "local 0.0.0.0/0 dev lo table " + ReturnTable;
    private static readonly string ReturnRuleSelector = $"fwmark {ConnectionMark} lookup {ReturnTable}";
    private static readonly string ReturnRule = $"{ReturnRuleSelector} priority {ReturnRulePriority.ToString(System.Globalization.CultureInfo.InvariantCulture)}";

    /// <summary>`ip -4 -batch -` input that shows the return routing there is (<see cref="ReturnRouting.Parse"/> reads it): one process.</summary>
    public static readonly string ReturnRoutingShow =
        $"rule show priority {ReturnRulePriority.ToString(System.Globalization.CultureInfo.InvariantCulture)}\nroute show table {ReturnTable}\n";

    /// <summary>
    /// `ip -4 -batch -` input that makes replies to connections the ztunnel accepted go back to it (local delivery): the
    /// route replaced (idempotent), the fwmark rule added unless <paramref name="current"/> has it (a rule can be there twice).
    /// </summary>
    public static string ReturnRoutingInstall(ReturnRouting current) =>
        "route replace " + ReturnRoute + "\n" + (current.Rules > 0 ? "" : "rule add " + ReturnRule + "\n");

    /// <summary>
    /// `ip -4 -batch -` input that deletes the return routing <paramref name="current"/> shows, rules first (nothing
    /// routes into table 100 after); null when none of it is there (a delete of what is not there fails the batch).
    /// </summary>
    public static string? ReturnRoutingRemove(ReturnRouting current)
    {
        if (current.Rules == 0 && !current.Route) return null;
        var text = new StringBuilder();
        for (var i = 0; i < current.Rules; i++) text.Append("rule del ").Append(ReturnRule).Append('\n');
        if (current.Route) text.Append("route del ").Append(ReturnRoute).Append('\n');
        return text.ToString();
    }

    /// <summary>The return routing of ours in a namespace: how many fwmark rules at our priority, and whether our route is in table 100.</summary>
    internal readonly record struct ReturnRouting(int Rules, bool Route)
    {
        /// <summary>Reads what `ip -4 -batch -` printed for <see cref="ReturnRoutingShow"/>.</summary>
        public static ReturnRouting Parse(string shown)
        {
            var rules = 0;
            var route = false;
            foreach (var raw in shown.Split('\n'))
            {
                var line = raw.Trim();
                // `ip rule show`: "32764:\tfrom all fwmark 0x111/0xfff lookup 100"; `ip route show table 100`: "local default dev lo scope host".
                if (line.EndsWith(ReturnRuleSelector, StringComparison.Ordinal) || line.Contains(ReturnRuleSelector + " ", StringComparison.Ordinal)) rules++;
                else if (line.StartsWith("local default dev lo ", StringComparison.Ordinal) || line == "local default dev lo") route = true;
            }
            return new ReturnRouting(rules, route);
        }
    }

    // Istio's order (its golden files list mangle, nat, raw).
    private static readonly string[] TableOrder = ["mangle", "nat", "raw"];

    internal static bool IsOwnedChain(string chain) => chain is PreroutingChain or OutputChain;

    private sealed record TableRules(List<string> Chains, List<string> Rules);

    /// <summary>The rules per table, in Istio's order (AppendInpodRules), without the leading "-A ".</summary>
    private static Dictionary<string, TableRules> Rules(InPodRuleOptions options)
    {
        var mangle = new TableRules([PreroutingChain, OutputChain], []);
        var nat = new TableRules([PreroutingChain, OutputChain], []);
        var tables = new Dictionary<string, TableRules>(StringComparer.Ordinal) { ["mangle"] = mangle, ["nat"] = nat };

        mangle.Rules.Add("PREROUTING -j " + PreroutingChain);
        mangle.Rules.Add("OUTPUT -j " + OutputChain);
        nat.Rules.Add("OUTPUT -j " + OutputChain);
        TableRules? raw = null;
        if (options.RedirectDns)
        {
            raw = new TableRules([PreroutingChain, OutputChain], ["PREROUTING -j " + PreroutingChain, "OUTPUT -j " + OutputChain]);
            tables["raw"] = raw;
        }
        nat.Rules.Add("PREROUTING -j " + PreroutingChain);

        // What the ztunnel sends into the pod (its sockets carry the mark) is connmarked, so the replies are
        // restored the mark in OUTPUT and routed back to the ztunnel by the fwmark rule.
        mangle.Rules.Add($"{PreroutingChain} -m mark --mark {ZtunnelMark} -j CONNMARK --set-xmark {ConnectionMark}");
        if (options.HostProbeSnatAddress is { } probe)
        {
            nat.Rules.Add($"{PreroutingChain} -s {probe}/32 -p tcp -m tcp -j ACCEPT");
            nat.Rules.Add($"{OutputChain} -d {probe}/32 -p tcp -m tcp -j ACCEPT");
        }
        // Inbound: everything not for localhost and not already HBONE goes to the plaintext inbound listener.
        nat.Rules.Add($"{PreroutingChain} ! -d 127.0.0.1/32 -p tcp -m tcp ! --dport {HboneInboundPort} -m mark ! --mark {ZtunnelMark} -j REDIRECT --to-ports {InboundPlaintextPort}");
        mangle.Rules.Add($"{OutputChain} -m connmark --mark {ConnectionMark} -j CONNMARK --restore-mark --nfmask {RestoreMask} --ctmask {RestoreMask}");
        if (options.RedirectDns)
        {
            nat.Rules.Add($"{OutputChain} ! -o lo -p udp -m mark ! --mark {ZtunnelMark} -m udp --dport 53 -j REDIRECT --to-ports {DnsPort}");
            nat.Rules.Add($"{OutputChain} ! -d 127.0.0.1/32 -p tcp -m tcp --dport 53 -m mark ! --mark {ZtunnelMark} -j REDIRECT --to-ports {DnsPort}");
            // The proxy's queries upstream and their answers get their own conntrack zone, so they cannot collide
            // with the pod's own (istio#33469).
            raw!.Rules.Add($"{OutputChain} -p udp -m mark --mark {ZtunnelMark} -m udp --dport 53 -j CT --zone 1");
            raw.Rules.Add($"{PreroutingChain} -p udp -m mark ! --mark {ZtunnelMark} -m udp --sport 53 -j CT --zone 1");
        }
        nat.Rules.Add($"{OutputChain} -p tcp -m mark --mark {ConnectionMark} -j ACCEPT");
        // A pod calling itself by its own address stays on lo: not captured.
        nat.Rules.Add($"{OutputChain} ! -d 127.0.0.1/32 -o lo -j ACCEPT");
        nat.Rules.Add($"{OutputChain} ! -d 127.0.0.1/32 -p tcp -m mark ! --mark {ZtunnelMark} -j REDIRECT --to-ports {OutboundPort}");
        return tables;
    }
}

/// <summary>What of ours a namespace's `iptables-save` output shows, per table.</summary>
internal sealed class IptablesState
{
    public static readonly IptablesState Empty = new();

    private readonly Dictionary<string, OwnedInTable> _tables = new(StringComparer.Ordinal);

    internal sealed class OwnedInTable
    {
        public static readonly OwnedInTable None = new();

        /// <summary>Rules outside our chains that jump into one, as iptables-save prints them minus "-A ".</summary>
        public List<string> Jumps { get; } = [];

        public List<string> Chains { get; } = [];

        public bool IsEmpty => Jumps.Count == 0 && Chains.Count == 0;
    }

    public OwnedInTable Owned(string table) => _tables.GetValueOrDefault(table) ?? OwnedInTable.None;

    public bool HasAny
    {
        get
        {
            foreach (var table in _tables.Values)
            {
                if (!table.IsEmpty) return true;
            }
            return false;
        }
    }

    public static IptablesState Parse(string save)
    {
        var state = new IptablesState();
        OwnedInTable? table = null;
        foreach (var raw in save.Split('\n'))
        {
            var line = raw.TrimEnd('\r');
            if (line.StartsWith('*'))
            {
                table = new OwnedInTable();
                state._tables[line[1..].Trim()] = table;
            }
            else if (table is null)
            {
                continue;
            }
            else if (line.StartsWith(':'))
            {
                var name = line[1..].Split(' ', 2)[0];
                if (InPodRules.IsOwnedChain(name)) table.Chains.Add(name);
            }
            else if (line.StartsWith("-A ", StringComparison.Ordinal))
            {
                var rule = line[3..];
                var chain = rule.Split(' ', 2)[0];
                if (!InPodRules.IsOwnedChain(chain) && JumpTarget(rule) is { } target && InPodRules.IsOwnedChain(target))
                {
                    table.Jumps.Add(rule);
                }
            }
        }
        return state;
    }

    private static string? JumpTarget(string rule)
    {
        var parts = rule.Split(' ', StringSplitOptions.RemoveEmptyEntries);
        for (var i = 0; i + 1 < parts.Length; i++)
        {
            if (parts[i] is "-j" or "-g") return parts[i + 1];
        }
        return null;
    }
}

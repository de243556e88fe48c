using Ambient.Core.Protos.Security;
using Action = Ambient.Core.Protos.Security.Action;

namespace Ambient.Core.Authz;

/// <summary>
/// One istio.security.Authorization compiled for evaluation (istio/ztunnel <c>rbac::Authorization</c>): rules of
/// clauses of matches, with CIDR masks computed and string matchers typed, so a decision allocates nothing.
/// </summary>
internal sealed class L4Policy
{
    private readonly L4Rule[] _rules;

    private L4Policy(Authorization source, string name, string @namespace, Scope scope, Action action, bool dryRun, L4Rule[] rules)
    {
        Source = source;
        Name = name;
        Namespace = @namespace;
        Key = @namespace + "/" + name;
        Scope = scope;
        Action = action;
        DryRun = dryRun;
        _rules = rules;
        RequiredPrincipals = Required(rules);
    }

    /// <summary>The resource as pushed (for config_dump).</summary>
    public Authorization Source { get; }

    public string Name { get; }
    public string Namespace { get; }

    /// <summary><c>namespace/name</c>: how Workload.authorization_policies names it, and how logs name it.</summary>
    public string Key { get; }
    public Scope Scope { get; }
    public Action Action { get; }
    public bool DryRun { get; }

    /// <summary>
    /// The exact principals one of which the peer must have for this policy to match, or null when it can match
    /// other peers too (a rule without an exact-principal clause). Empty: it never matches. A necessary condition
    /// only (the policy is still evaluated in full), so <see cref="L4PolicyIndex"/> can skip policies that name
    /// other peers without comparing a string.
    /// </summary>
    public IReadOnlySet<string>? RequiredPrincipals { get; }

    // Policy: any rule (a union); rule: every clause (any constrained clause is a necessary condition, so take the
    // first); clause: any match (a union, unconstrained when one match is).
    private static HashSet<string>? Required(L4Rule[] rules)
    {
        var union = new HashSet<string>(StringComparer.Ordinal);
        foreach (var rule in rules)
        {
            if (rule.RequiredPrincipals() is not { } required)
            {
                return null;
            }
            union.UnionWith(required);
        }
        return union;
    }

    public static L4Policy Compile(Authorization authorization)
    {
        ArgumentNullException.ThrowIfNull(authorization);
        var rules = new L4Rule[authorization.Rules.Count];
        for (int r = 0; r < rules.Length; r++)
        {
            var clauses = authorization.Rules[r].Clauses;
            var compiled = new L4Match[clauses.Count][];
            for (int c = 0; c < compiled.Length; c++)
            {
                var matches = clauses[c].Matches;
                compiled[c] = new L4Match[matches.Count];
                for (int m = 0; m < matches.Count; m++)
                {
                    compiled[c][m] = L4Match.Compile(matches[m]);
                }
            }
            rules[r] = new L4Rule(compiled);
        }
        return new L4Policy(authorization, authorization.Name, authorization.Namespace, authorization.Scope, authorization.Action, authorization.DryRun, rules);
    }

    /// <summary>
    /// ztunnel's <c>Authorization::matches</c>: a policy with no rules matches nothing; otherwise any rule. A rule
    /// matches when every clause does (a rule without clauses matches everything); a clause when any of its matches
    /// does (a clause without matches matches everything; an empty match never does).
    /// </summary>
    public bool Matches(in L4Connection connection, in L4Peer peer)
    {
        foreach (var rule in _rules)
        {
            if (rule.Matches(connection, peer))
            {
                return true;
            }
        }
        return false;
    }
}

internal sealed class L4Rule(L4Match[][] clauses)
{
    /// <summary>See <see cref="L4Policy.RequiredPrincipals"/>: null when no clause constrains the principal.</summary>
    public HashSet<string>? RequiredPrincipals()
    {
        foreach (var clause in clauses)
        {
            if (clause.Length == 0)
            {
                continue;
            }
            var union = new HashSet<string>(StringComparer.Ordinal);
            foreach (var match in clause)
            {
                if (match.RequiredPrincipals() is not { } required)
                {
                    union = null;
                    break;
                }
                union.UnionWith(required);
            }
            if (union is not null)
            {
                return union;
            }
        }
        return null;
    }

    public bool Matches(in L4Connection connection, in L4Peer peer)
    {
        foreach (var clause in clauses)
        {
            if (clause.Length == 0)
            {
                continue;
            }
            bool any = false;
            foreach (var match in clause)
            {
                if (match.Matches(connection, peer))
                {
                    any = true;
                    break;
                }
            }
            if (!any)
            {
                return false;
            }
        }
        return true;
    }
}

/// <summary>
/// One istio.security.Match: every populated field must match, and within a field any value; a <c>not_</c> field
/// matches when none of its values do. A match with no L4 field set never matches (ztunnel skips it), which is how
/// istiod makes a DENY rule emptied of HTTP attributes inert.
/// </summary>
internal sealed class L4Match
{
    private readonly L4StringMatch[] _namespaces, _notNamespaces, _principals, _notPrincipals;
    private readonly IpCidr[] _sourceIps, _notSourceIps, _destinationIps, _notDestinationIps;
    private readonly ushort[] _destinationPorts, _notDestinationPorts;
    private readonly (string Namespace, string ServiceAccount)[] _serviceAccounts, _notServiceAccounts;
    private readonly bool _empty;

    private L4Match(Match m)
    {
        _namespaces = Strings(m.Namespaces);
        _notNamespaces = Strings(m.NotNamespaces);
        _principals = Strings(m.Principals);
        _notPrincipals = Strings(m.NotPrincipals);
        _sourceIps = Cidrs(m.SourceIps);
        _notSourceIps = Cidrs(m.NotSourceIps);
        _destinationIps = Cidrs(m.DestinationIps);
        _notDestinationIps = Cidrs(m.NotDestinationIps);
        _destinationPorts = Ports(m.DestinationPorts);
        _notDestinationPorts = Ports(m.NotDestinationPorts);
        _serviceAccounts = ServiceAccounts(m.ServiceAccounts);
        _notServiceAccounts = ServiceAccounts(m.NotServiceAccounts);
        // ztunnel's RbacMatch::is_empty looks at the converted fields: entries it dropped (no match_type, a bad
        // address) do not count, and neither do extensions, which ztunnel does not read.
        _empty = _namespaces.Length + _notNamespaces.Length + _principals.Length + _notPrincipals.Length
            + _sourceIps.Length + _notSourceIps.Length + _destinationIps.Length + _notDestinationIps.Length
            + _destinationPorts.Length + _notDestinationPorts.Length + _serviceAccounts.Length + _notServiceAccounts.Length == 0;
    }

    public static L4Match Compile(Match match) => new(match);

    /// <summary>The principals this match accepts when they are all exact (none when it never matches); null when
    /// it accepts others (no principals field, or a prefix, suffix or presence form).</summary>
    public IEnumerable<string>? RequiredPrincipals()
    {
        if (_empty)
        {
            return [];
        }
        if (_principals.Length == 0)
        {
            return null;
        }
        var exact = new string[_principals.Length];
        for (int i = 0; i < exact.Length; i++)
        {
            if (_principals[i].Kind != L4StringMatchKind.Exact)
            {
                return null;
            }
            exact[i] = _principals[i].Value;
        }
        return exact;
    }

    public bool Matches(in L4Connection c, in L4Peer peer)
    {
        if (_empty)
        {
            return false;
        }
        // Every field must match and none has side effects, so the order is free: the identity fields first, as
        // they tell policies apart most often.
        return Strings(_principals, _notPrincipals, peer.HasIdentity, peer.Principal)
            && Strings(_namespaces, _notNamespaces, true, peer.Namespace)
            && ServiceAccounts(peer)
            && Ports(c.DestinationPort)
            && Cidrs(_sourceIps, _notSourceIps, c.Source)
            && Cidrs(_destinationIps, _notDestinationIps, c.Destination);
    }

    internal static bool Cidrs(IpCidr[] positive, IpCidr[] negative, IpKey address)
    {
        if (positive.Length > 0 && !AnyCidr(positive, address))
        {
            return false;
        }
        return negative.Length == 0 || !AnyCidr(negative, address);
    }

    private static bool AnyCidr(IpCidr[] cidrs, IpKey address)
    {
        foreach (var cidr in cidrs)
        {
            if (cidr.Contains(address))
            {
                return true;
            }
        }
        return false;
    }

    private bool Ports(int port)
    {
        if (_destinationPorts.Length > 0 && Array.IndexOf(_destinationPorts, (ushort)port) < 0)
        {
            return false;
        }
        return _notDestinationPorts.Length == 0 || Array.IndexOf(_notDestinationPorts, (ushort)port) < 0;
    }

    private bool ServiceAccounts(in L4Peer peer)
    {
        if (_serviceAccounts.Length > 0 && !AnyServiceAccount(_serviceAccounts, peer))
        {
            return false;
        }
        return _notServiceAccounts.Length == 0 || !AnyServiceAccount(_notServiceAccounts, peer);
    }

    internal static bool AnyServiceAccount((string Namespace, string ServiceAccount)[] accounts, in L4Peer peer)
    {
        if (!peer.HasIdentity)
        {
            // No identity at all never matches.
            return false;
        }
        foreach (var (ns, sa) in accounts)
        {
            if (peer.Namespace.SequenceEqual(ns) && peer.ServiceAccount.SequenceEqual(sa))
            {
                return true;
            }
        }
        return false;
    }

    /// <param name="present">false: the value is absent, and no matcher of any form matches it (a principal of a
    /// plaintext peer: ztunnel fails to strip <c>spiffe://</c> from "").</param>
    internal static bool Strings(L4StringMatch[] positive, L4StringMatch[] negative, bool present, ReadOnlySpan<char> value)
    {
        if (positive.Length > 0 && !(present && AnyString(positive, value)))
        {
            return false;
        }
        return negative.Length == 0 || !(present && AnyString(negative, value));
    }

    private static bool AnyString(L4StringMatch[] matchers, ReadOnlySpan<char> value)
    {
        foreach (var m in matchers)
        {
            if (m.Matches(value))
            {
                return true;
            }
        }
        return false;
    }

    private static L4StringMatch[] Strings(IList<StringMatch> source)
    {
        var list = new List<L4StringMatch>(source.Count);
        foreach (var s in source)
        {
            if (L4StringMatch.From(s) is { } m)
            {
                list.Add(m);
            }
        }
        return [.. list];
    }

    private static IpCidr[] Cidrs(IList<Address> source)
    {
        var list = new List<IpCidr>(source.Count);
        foreach (var a in source)
        {
            if (IpCidr.From(a.Address_.Span, a.Length) is { } cidr)
            {
                list.Add(cidr);
            }
        }
        return [.. list];
    }

    // ztunnel narrows each port to u16 (`*p as u16`); so do we.
    private static ushort[] Ports(IList<uint> source)
    {
        var ports = new ushort[source.Count];
        for (int i = 0; i < ports.Length; i++)
        {
            ports[i] = unchecked((ushort)source[i]);
        }
        return ports;
    }

    private static (string, string)[] ServiceAccounts(IList<ServiceAccountMatch> source)
    {
        var accounts = new (string, string)[source.Count];
        for (int i = 0; i < accounts.Length; i++)
        {
            accounts[i] = (source[i].Namespace, source[i].ServiceAccount);
        }
        return accounts;
    }
}

internal enum L4StringMatchKind
{
    Exact,
    Prefix,
    Suffix,
    Presence,
}

/// <summary>istio.security.StringMatch: exact, prefix, suffix (ordinal) or presence (non-empty).</summary>
internal readonly record struct L4StringMatch(L4StringMatchKind Kind, string Value)
{
    /// <summary>Null when no match type is set: ztunnel drops such entries.</summary>
    public static L4StringMatch? From(StringMatch s) => s.MatchTypeCase switch
    {
        StringMatch.MatchTypeOneofCase.Exact => new(L4StringMatchKind.Exact, s.Exact),
        StringMatch.MatchTypeOneofCase.Prefix => new(L4StringMatchKind.Prefix, s.Prefix),
        StringMatch.MatchTypeOneofCase.Suffix => new(L4StringMatchKind.Suffix, s.Suffix),
        StringMatch.MatchTypeOneofCase.Presence => new(L4StringMatchKind.Presence, ""),
        _ => null,
    };

    public bool Matches(ReadOnlySpan<char> value) => Kind switch
    {
        L4StringMatchKind.Exact => value.SequenceEqual(Value),
        L4StringMatchKind.Prefix => value.StartsWith(Value, StringComparison.Ordinal),
        L4StringMatchKind.Suffix => value.EndsWith(Value, StringComparison.Ordinal),
        _ => !value.IsEmpty,
    };
}

/// <summary>
/// The peer's identity split once per decision: the principal as Istio writes it (<c>td/ns/N/sa/S</c>, without
/// <c>spiffe://</c>), its namespace and its service account. An identity that is not a SPIFFE workload URI counts
/// as none, as ztunnel's Identity parse would refuse it.
/// </summary>
internal readonly ref struct L4Peer
{
    private const string Scheme = "spiffe://";

    public L4Peer(string? identity)
    {
        if (identity is null || !identity.StartsWith(Scheme, StringComparison.Ordinal))
        {
            return;
        }
        var principal = identity.AsSpan(Scheme.Length);
        int ns = principal.IndexOf("/ns/", StringComparison.Ordinal);
        if (ns <= 0)
        {
            return;
        }
        var rest = principal[(ns + 4)..];
        int sa = rest.IndexOf("/sa/", StringComparison.Ordinal);
        if (sa < 0)
        {
            return;
        }
        Principal = principal;
        Namespace = rest[..sa];
        ServiceAccount = rest[(sa + 4)..];
        HasIdentity = true;
    }

    public bool HasIdentity { get; }
    public ReadOnlySpan<char> Principal { get; }
    public ReadOnlySpan<char> Namespace { get; }
    public ReadOnlySpan<char> ServiceAccount { get; }
}

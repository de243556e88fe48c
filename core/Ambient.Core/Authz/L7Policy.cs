using System.Globalization;
using System.Net;
using System.Text;
using System.Text.RegularExpressions;
using Ambient.Core.Protos.AuthorizationPolicies;
using Microsoft.Extensions.Primitives;

namespace Ambient.Core.Authz;

/// <summary>
/// One AuthorizationPolicy a waypoint enforces, compiled once per xDS update from the spec as written (the waypoint
/// sees every L7 attribute, unlike ztunnel): rules of from-sources, to-operations and when-conditions, with CIDR
/// masks computed, ports parsed and string matchers typed, so a decision allocates nothing.
/// <para>
/// Istio's semantics (security/v1beta1 API reference, and the Envoy RBAC config istiod generates): a policy with no
/// rules matches nothing; a rule matches when each of its parts does, and an empty rule matches everything; a part
/// (from, to) matches when any of its entries does; an entry when every field it sets does; a field when any value
/// matches, a not-field when none does; every when-condition must match. An attribute the request does not have (a
/// request principal or claim without JWT, an SNI inside a tunnel, a missing header) matches no value and therefore
/// satisfies every not-field.
/// </para>
/// </summary>
internal sealed class L7Policy
{
    private readonly L7Rule[] _rules;

    private L7Policy(AuthorizationPolicySpec spec, L7Rule[] rules)
    {
        Name = spec.Name;
        Namespace = spec.Namespace;
        Key = spec.Namespace + "/" + spec.Name;
        Action = spec.Action;
        DryRun = spec.DryRun;
        Provider = spec.Provider;
        _rules = rules;
    }

    public string Name { get; }
    public string Namespace { get; }

    /// <summary><c>namespace/name</c>: the xDS resource name, and how logs name the policy.</summary>
    public string Key { get; }
    public PolicyAction Action { get; }
    public bool DryRun { get; }

    /// <summary>CUSTOM only: the extension provider the policy names.</summary>
    public string Provider { get; }

    public int RuleCount => _rules.Length;

    public static L7Policy Compile(AuthorizationPolicySpec spec)
    {
        ArgumentNullException.ThrowIfNull(spec);
        var rules = new L7Rule[spec.Rules.Count];
        for (var i = 0; i < rules.Length; i++)
        {
            rules[i] = new L7Rule(spec.Rules[i], spec.Namespace);
        }
        return new L7Policy(spec, rules);
    }

    /// <summary>The index of the first rule that matches, or -1.</summary>
    public int Match(in L7Request request, in L4Peer peer)
    {
        for (var i = 0; i < _rules.Length; i++)
        {
            if (_rules[i].Matches(request, peer))
            {
                return i;
            }
        }
        return -1;
    }
}

internal sealed class L7Rule
{
    private readonly L7Source[] _from;
    private readonly L7Operation[] _to;
    private readonly L7Condition[] _when;

    public L7Rule(PolicyRule rule, string policyNamespace)
    {
        _from = new L7Source[rule.From.Count];
        for (var i = 0; i < _from.Length; i++)
        {
            _from[i] = new L7Source(rule.From[i], policyNamespace);
        }
        _to = new L7Operation[rule.To.Count];
        for (var i = 0; i < _to.Length; i++)
        {
            _to[i] = new L7Operation(rule.To[i]);
        }
        _when = new L7Condition[rule.When.Count];
        for (var i = 0; i < _when.Length; i++)
        {
            _when[i] = new L7Condition(rule.When[i], policyNamespace);
        }
    }

    public bool Matches(in L7Request request, in L4Peer peer)
    {
        // Every part must match and none has side effects, so the order is free: the sources first, as identities tell
        // rules apart most often and compare cheapest.
        if (_from.Length > 0)
        {
            var any = false;
            foreach (var source in _from)
            {
                if (source.Matches(request, peer))
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
        if (_to.Length > 0)
        {
            var any = false;
            foreach (var op in _to)
            {
                if (op.Matches(request))
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
        foreach (var condition in _when)
        {
            if (!condition.Matches(request, peer))
            {
                return false;
            }
        }
        return true;
    }
}

/// <summary>rules[].from[].source: every field it sets must match.</summary>
internal sealed class L7Source
{
    private readonly L4StringMatch[] _principals, _notPrincipals, _namespaces, _notNamespaces;
    private readonly IpCidr[] _ipBlocks, _notIpBlocks, _remoteIpBlocks, _notRemoteIpBlocks;
    private readonly (string Namespace, string ServiceAccount)[] _serviceAccounts, _notServiceAccounts;
    // Without JWT there is no request principal: a requestPrincipals field never matches; notRequestPrincipals always does.
    private readonly bool _requestPrincipals;

    public L7Source(PolicySource source, string policyNamespace)
    {
        _principals = PolicyText.Strings(source.Principals);
        _notPrincipals = PolicyText.Strings(source.NotPrincipals);
        _namespaces = PolicyText.Strings(source.Namespaces);
        _notNamespaces = PolicyText.Strings(source.NotNamespaces);
        _ipBlocks = PolicyText.Cidrs(source.IpBlocks);
        _notIpBlocks = PolicyText.Cidrs(source.NotIpBlocks);
        _remoteIpBlocks = PolicyText.Cidrs(source.RemoteIpBlocks);
        _notRemoteIpBlocks = PolicyText.Cidrs(source.NotRemoteIpBlocks);
        _serviceAccounts = PolicyText.ServiceAccounts(source.ServiceAccounts, policyNamespace);
        _notServiceAccounts = PolicyText.ServiceAccounts(source.NotServiceAccounts, policyNamespace);
        _requestPrincipals = source.RequestPrincipals.Count > 0;
    }

    public bool Matches(in L7Request r, in L4Peer peer) =>
        !_requestPrincipals
        && L4Match.Strings(_principals, _notPrincipals, peer.HasIdentity, peer.Principal)
        && L4Match.Strings(_namespaces, _notNamespaces, peer.HasIdentity, peer.Namespace)
        && PolicyText.ServiceAccounts(_serviceAccounts, _notServiceAccounts, peer)
        && L4Match.Cidrs(_ipBlocks, _notIpBlocks, r.Source)
        && L4Match.Cidrs(_remoteIpBlocks, _notRemoteIpBlocks, r.Remote);
}

/// <summary>rules[].to[].operation: every field it sets must match.</summary>
internal sealed class L7Operation
{
    private readonly L7HostMatch[] _hosts, _notHosts;
    private readonly ushort[] _ports, _notPorts;
    private readonly L4StringMatch[] _methods, _notMethods;
    private readonly L7PathMatch[] _paths, _notPaths;

    public L7Operation(PolicyOperation op)
    {
        _hosts = Hosts(op.Hosts);
        _notHosts = Hosts(op.NotHosts);
        _ports = PolicyText.Ports(op.Ports);
        _notPorts = PolicyText.Ports(op.NotPorts);
        _methods = PolicyText.Strings(op.Methods);
        _notMethods = PolicyText.Strings(op.NotMethods);
        _paths = Paths(op.Paths);
        _notPaths = Paths(op.NotPaths);
    }

    public bool Matches(in L7Request r) =>
        PolicyText.Ports(_ports, _notPorts, r.DestinationPort)
        && L4Match.Strings(_methods, _notMethods, true, r.Method)
        && Any(_paths, _notPaths, r.Path, r.Path.Length)
        && Any(_hosts, _notHosts, r.Host, r.HostNameLength);

    /// <summary>A field and its not-field: any positive matcher (when there are some), and no negative one.</summary>
    private static bool Any<TMatch>(TMatch[] positive, TMatch[] negative, string value, int length)
        where TMatch : struct, IL7TextMatch
    {
        if (positive.Length > 0 && !AnyOf(positive, value, length))
        {
            return false;
        }
        return negative.Length == 0 || !AnyOf(negative, value, length);
    }

    private static bool AnyOf<TMatch>(TMatch[] matchers, string value, int length)
        where TMatch : struct, IL7TextMatch
    {
        foreach (var m in matchers)
        {
            if (m.Matches(value, length))
            {
                return true;
            }
        }
        return false;
    }

    private static L7HostMatch[] Hosts(IList<string> values)
    {
        var hosts = new L7HostMatch[values.Count];
        for (var i = 0; i < hosts.Length; i++)
        {
            hosts[i] = new L7HostMatch(values[i]);
        }
        return hosts;
    }

    private static L7PathMatch[] Paths(IList<string> values)
    {
        var paths = new L7PathMatch[values.Count];
        for (var i = 0; i < paths.Length; i++)
        {
            paths[i] = new L7PathMatch(values[i]);
        }
        return paths;
    }
}

internal enum L7ConditionKind
{
    Header,
    SourceIp,
    RemoteIp,
    SourceNamespace,
    SourcePrincipal,
    SourceServiceAccount,
    DestinationIp,
    DestinationPort,
    ConnectionSni,

    /// <summary>An attribute a request at the waypoint never has: request.auth.* (no JWT), experimental.envoy.filters.*.</summary>
    Absent,
}

/// <summary>
/// One when-condition (Istio's "Authorization Policy Conditions"): any of <c>values</c> must match (when set) and none
/// of <c>notValues</c>.
/// </summary>
internal sealed class L7Condition
{
    private readonly L7ConditionKind _kind;
    private readonly string _header = "";
    private readonly L4StringMatch[] _strings = [], _notStrings = [];
    private readonly IpCidr[] _cidrs = [], _notCidrs = [];
    private readonly ushort[] _ports = [], _notPorts = [];
    private readonly (string, string)[] _accounts = [], _notAccounts = [];
    private readonly bool _hasValues;

    public L7Condition(PolicyCondition condition, string policyNamespace)
    {
        _hasValues = condition.Values.Count > 0;
        _kind = KindOf(condition.Key, out var header);
        _header = header;
        switch (_kind)
        {
            case L7ConditionKind.SourceIp or L7ConditionKind.RemoteIp or L7ConditionKind.DestinationIp:
                _cidrs = PolicyText.Cidrs(condition.Values);
                _notCidrs = PolicyText.Cidrs(condition.NotValues);
                break;
            case L7ConditionKind.DestinationPort:
                _ports = PolicyText.Ports(condition.Values);
                _notPorts = PolicyText.Ports(condition.NotValues);
                break;
            case L7ConditionKind.SourceServiceAccount:
                _accounts = PolicyText.ServiceAccounts(condition.Values, policyNamespace);
                _notAccounts = PolicyText.ServiceAccounts(condition.NotValues, policyNamespace);
                break;
            default:
                _strings = PolicyText.Strings(condition.Values);
                _notStrings = PolicyText.Strings(condition.NotValues);
                break;
        }
    }

    public L7ConditionKind Kind => _kind;

    public bool Matches(in L7Request r, in L4Peer peer)
    {
        switch (_kind)
        {
            case L7ConditionKind.Header:
                // Envoy's header matcher sees every value of a repeated header joined with ','.
                var values = r.Headers.TryGetValue(_header, out var v) ? v : StringValues.Empty;
                return values.Count switch
                {
                    0 => L4Match.Strings(_strings, _notStrings, false, default),
                    1 => L4Match.Strings(_strings, _notStrings, true, values[0]),
                    _ => L4Match.Strings(_strings, _notStrings, true, string.Join(',', values.ToArray())),
                };
            case L7ConditionKind.SourceIp:
                return L4Match.Cidrs(_cidrs, _notCidrs, r.Source);
            case L7ConditionKind.RemoteIp:
                return L4Match.Cidrs(_cidrs, _notCidrs, r.Remote);
            case L7ConditionKind.DestinationIp:
                return L4Match.Cidrs(_cidrs, _notCidrs, r.Destination);
            case L7ConditionKind.DestinationPort:
                return PolicyText.Ports(_ports, _notPorts, r.DestinationPort);
            case L7ConditionKind.SourceNamespace:
                return L4Match.Strings(_strings, _notStrings, peer.HasIdentity, peer.Namespace);
            case L7ConditionKind.SourcePrincipal:
                return L4Match.Strings(_strings, _notStrings, peer.HasIdentity, peer.Principal);
            case L7ConditionKind.SourceServiceAccount:
                return PolicyText.ServiceAccounts(_accounts, _notAccounts, peer);
            case L7ConditionKind.ConnectionSni:
                return L4Match.Strings(_strings, _notStrings, !string.IsNullOrEmpty(r.Sni), r.Sni);
            default:
                return !_hasValues;
        }
    }

    private static L7ConditionKind KindOf(string key, out string header)
    {
        header = "";
        switch (key)
        {
            case "source.ip":
                return L7ConditionKind.SourceIp;
            case "remote.ip":
                return L7ConditionKind.RemoteIp;
            case "source.namespace":
                return L7ConditionKind.SourceNamespace;
            case "source.principal":
                return L7ConditionKind.SourcePrincipal;
            case "source.serviceAccount":
                return L7ConditionKind.SourceServiceAccount;
            case "destination.ip":
                return L7ConditionKind.DestinationIp;
            case "destination.port":
                return L7ConditionKind.DestinationPort;
            case "connection.sni":
                return L7ConditionKind.ConnectionSni;
        }
        const string headers = "request.headers[";
        if (key.StartsWith(headers, StringComparison.Ordinal) && key.EndsWith(']'))
        {
            header = key[headers.Length..^1];
            return L7ConditionKind.Header;
        }
        // request.auth.* and experimental.envoy.filters.* (and, defensively, anything the parser let through that is
        // not modelled): an attribute this request never has, so a `values` condition on it never matches.
        return L7ConditionKind.Absent;
    }
}

/// <summary>A matcher of one request string (the path, the Host), given with the length that counts (the Host without its port).</summary>
internal interface IL7TextMatch
{
    bool Matches(string value, int length);
}

/// <summary>
/// <c>hosts</c>: Istio's host matcher, case-insensitive, with its <c>*</c> forms. A value without a port ignores the
/// request's port (<c>example.com</c> matches <c>Example.com:8080</c>); a value with a port compares the whole Host.
/// </summary>
internal readonly struct L7HostMatch : IL7TextMatch
{
    private readonly L4StringMatchKind _kind;
    private readonly string _value;
    private readonly bool _withPort;

    public L7HostMatch(string value)
    {
        var m = PolicyText.String(value);
        _kind = m.Kind;
        _value = m.Value;
        // A colon names a port, except inside an IPv6 literal's brackets.
        var bracket = value.LastIndexOf(']');
        _withPort = value.IndexOf(':', bracket + 1) >= 0 && (bracket >= 0 || value.Count(static c => c == ':') == 1);
    }

    public bool Matches(string host, int hostNameLength)
    {
        var h = _withPort ? host.AsSpan() : host.AsSpan(0, hostNameLength);
        return _kind switch
        {
            L4StringMatchKind.Exact => h.Equals(_value, StringComparison.OrdinalIgnoreCase),
            L4StringMatchKind.Prefix => h.StartsWith(_value, StringComparison.OrdinalIgnoreCase),
            L4StringMatchKind.Suffix => h.EndsWith(_value, StringComparison.OrdinalIgnoreCase),
            _ => host.Length > 0,
        };
    }

    /// <summary>The host without a trailing <c>:digits</c> port (an IPv6 literal keeps its brackets).</summary>
    internal static ReadOnlySpan<char> WithoutPort(string host)
    {
        var span = host.AsSpan();
        var colon = span.LastIndexOf(':');
        if (colon < 0 || colon == span.Length - 1 || span[(colon + 1)..].ContainsAnyExceptInRange('0', '9'))
        {
            return span;
        }
        var before = span[..colon];
        // "[::1]:80" has its port after the bracket; a bare "::1" has none to strip.
        return before.EndsWith(']') || !before.Contains(':') ? before : span;
    }
}

/// <summary>
/// <c>paths</c>: Istio's path matcher on the path without the query, case-sensitive: exact, prefix <c>x*</c>, suffix
/// <c>*x</c>, presence <c>*</c>, or a template with <c>{*}</c> (one segment) and <c>{**}</c> (the rest of the path:
/// any number of segments, last in the template), which Envoy's uri_template matcher evaluates.
/// </summary>
internal readonly struct L7PathMatch : IL7TextMatch
{
    private readonly L4StringMatch _match;
    private readonly Regex? _template;

    public L7PathMatch(string value)
    {
        if (value.Contains("{*}", StringComparison.Ordinal) || value.Contains("{**}", StringComparison.Ordinal))
        {
            _template = Template(value);
            _match = default;
        }
        else
        {
            _template = null;
            _match = PolicyText.String(value);
        }
    }

    public bool Matches(string path, int length) => _template is { } t ? t.IsMatch(path) : _match.Matches(path);

    private static Regex Template(string value)
    {
        // Envoy's pattern template: {*} is one non-empty segment, {**} any remaining text (segments included).
        const string segment = "[a-zA-Z0-9\\-._~%!$&'()+,;:@=]+";
        const string rest = "[a-zA-Z0-9\\-._~%!$&'()+,;:@=/]*";
        var pattern = new StringBuilder("^");
        var i = 0;
        while (i < value.Length)
        {
            if (string.CompareOrdinal(value, i, "{**}", 0, 4) == 0)
            {
                pattern.Append(rest);
                i += 4;
            }
            else if (string.CompareOrdinal(value, i, "{*}", 0, 3) == 0)
            {
                pattern.Append(segment);
                i += 3;
            }
            else
            {
                pattern.Append(Regex.Escape(value[i].ToString()));
                i++;
            }
        }
        pattern.Append('$');
        return new Regex(pattern.ToString(), RegexOptions.CultureInvariant | RegexOptions.NonBacktracking);
    }
}

/// <summary>The policy's text forms, compiled once: Istio's string, CIDR, port and service-account notations.</summary>
internal static class PolicyText
{
    /// <summary>Istio's stringToMatch: <c>*</c> presence, <c>*x</c> suffix, <c>x*</c> prefix, else exact.</summary>
    public static L4StringMatch String(string v)
    {
        if (v == "*")
        {
            return new L4StringMatch(L4StringMatchKind.Presence, "");
        }
        if (v.StartsWith('*'))
        {
            return new L4StringMatch(L4StringMatchKind.Suffix, v[1..]);
        }
        return v.EndsWith('*') ? new L4StringMatch(L4StringMatchKind.Prefix, v[..^1]) : new L4StringMatch(L4StringMatchKind.Exact, v);
    }

    public static L4StringMatch[] Strings(IList<string> values)
    {
        var matches = new L4StringMatch[values.Count];
        for (var i = 0; i < matches.Length; i++)
        {
            matches[i] = String(values[i]);
        }
        return matches;
    }

    /// <summary>A single IP (a /32 or /128) or a CIDR; what does not parse is left out (the parser refuses it first).</summary>
    public static IpCidr? Cidr(string v)
    {
        var slash = v.IndexOf('/', StringComparison.Ordinal);
        if (!IPAddress.TryParse(slash < 0 ? v : v[..slash], out var ip))
        {
            return null;
        }
        var bytes = ip.GetAddressBytes();
        var length = (uint)bytes.Length * 8;
        if (slash >= 0 && !uint.TryParse(v.AsSpan(slash + 1), NumberStyles.None, CultureInfo.InvariantCulture, out length))
        {
            return null;
        }
        return IpCidr.From(bytes, length);
    }

    public static IpCidr[] Cidrs(IList<string> values)
    {
        var list = new List<IpCidr>(values.Count);
        foreach (var v in values)
        {
            if (Cidr(v) is { } cidr)
            {
                list.Add(cidr);
            }
        }
        return [.. list];
    }

    public static ushort[] Ports(IList<string> values)
    {
        var list = new List<ushort>(values.Count);
        foreach (var v in values)
        {
            if (ushort.TryParse(v, NumberStyles.None, CultureInfo.InvariantCulture, out var port))
            {
                list.Add(port);
            }
        }
        return [.. list];
    }

    public static bool Ports(ushort[] positive, ushort[] negative, int port)
    {
        if (positive.Length > 0 && Array.IndexOf(positive, (ushort)port) < 0)
        {
            return false;
        }
        return negative.Length == 0 || Array.IndexOf(negative, (ushort)port) < 0;
    }

    /// <summary>Istio's service-account notation: <c>ns/sa</c>, or <c>sa</c> in the policy's namespace.</summary>
    public static (string, string)[] ServiceAccounts(IList<string> values, string policyNamespace)
    {
        var accounts = new (string, string)[values.Count];
        for (var i = 0; i < accounts.Length; i++)
        {
            var v = values[i];
            var slash = v.IndexOf('/', StringComparison.Ordinal);
            accounts[i] = slash < 0 ? (policyNamespace, v) : (v[..slash], v[(slash + 1)..]);
        }
        return accounts;
    }

    public static bool ServiceAccounts((string, string)[] positive, (string, string)[] negative, in L4Peer peer)
    {
        if (positive.Length > 0 && !L4Match.AnyServiceAccount(positive, peer))
        {
            return false;
        }
        return negative.Length == 0 || !L4Match.AnyServiceAccount(negative, peer);
    }
}

using System.Collections.Immutable;
using System.Globalization;
using IPAddress = System.Net.IPAddress;
using Ambient.Core.Config;
using Ambient.Core.Protos.AuthorizationPolicies;
using Ambient.Core.Protos.Security;

namespace Ambient.Istiod.Authz;

/// <summary>Who enforces a policy: ztunnel (selector, namespace or mesh-wide), a waypoint (targetRefs), or nobody.</summary>
internal enum PolicyEnforcement
{
    Ztunnel,
    Waypoint,
    None,
}

/// <summary>
/// One AuthorizationPolicy after conversion: what ztunnel receives (<see cref="Xds"/>, null when it receives nothing),
/// where it is enforced, and every way the enforced policy differs from what was written (<see cref="Warnings"/>).
/// </summary>
internal sealed record ConvertedPolicy(
    AuthorizationPolicyResource Resource,
    PolicyEnforcement EnforcedBy,
    Authorization? Xds,
    ImmutableArray<string> Warnings)
{
    /// <summary><c>namespace/name</c>: the xDS resource name and the Workload.authorization_policies entry.</summary>
    public string Key => Resource.Spec.Namespace + "/" + Resource.Spec.Name;

    public AuthorizationPolicySpec Spec => Resource.Spec;
}

/// <summary>
/// AuthorizationPolicy to istio.security.Authorization exactly as istiod converts it for ztunnel
/// (pilot/pkg/serviceregistry/ambient/authorization.go, convertAuthorizationPolicy and handleRule):
/// <list type="bullet">
/// <item>targetRefs: not for ztunnel (a waypoint enforces it); AUDIT: not sent (it never changes a decision).</item>
/// <item>scope: WORKLOAD_SELECTOR with a selector (even an empty one), else NAMESPACE, or GLOBAL in the root namespace.</item>
/// <item>each rule: a clause of its to-operations (ports), a clause of its from-sources, one clause per when-condition.
/// An ALLOW rule that uses an HTTP attribute is dropped whole (never matches: fail closed); in a DENY rule the HTTP
/// attributes are left out and the rest is kept, so a part made only of HTTP attributes becomes an empty match, which
/// ztunnel never matches.</item>
/// </list>
/// CUSTOM differs on purpose: Istio sends nothing to ztunnel, so such a policy would silently allow; with no
/// extension provider available here it is converted as a DENY for the requests it matches (what Istio's proxies do
/// when the provider is missing) and reported as unsupported.
/// </summary>
internal static class AuthorizationPolicyConverter
{
    public const string DefaultRootNamespace = "istio-system";

    private static readonly string[] L4WhenKeys = ["source.ip", "source.namespace", "source.principal", "destination.ip", "destination.port"];

    public static ConvertedPolicy Convert(AuthorizationPolicyResource resource, string rootNamespace)
    {
        var spec = resource.Spec;
        var warnings = ImmutableArray.CreateBuilder<string>();
        if (resource.Metadata.Annotations.TryGetValue(AuthorizationPolicyResource.DryRunAnnotation, out var dryRun) && AuthorizationPolicyResource.ParseDryRun(dryRun) is null)
        {
            warnings.Add($"annotation {AuthorizationPolicyResource.DryRunAnnotation}: \"{dryRun}\" is not a boolean; the policy is enforced");
        }
        if (spec.TargetRefs.Count > 0)
        {
            if (spec.Action == PolicyAction.Custom)
            {
                warnings.Add($"the CUSTOM action is not supported (no extension provider \"{spec.Provider}\" here): enforced by the waypoint as a DENY for the matching requests");
            }
            return new ConvertedPolicy(resource, PolicyEnforcement.Waypoint, null, warnings.ToImmutable());
        }
        if (spec.HasSelector && spec.MatchLabels.Count == 0)
        {
            warnings.Add("workload selector specified without labels: the policy selects every workload of its namespace");
        }

        Ambient.Core.Protos.Security.Action action;
        switch (spec.Action)
        {
            case PolicyAction.Allow:
                action = Ambient.Core.Protos.Security.Action.Allow;
                break;
            case PolicyAction.Deny:
                action = Ambient.Core.Protos.Security.Action.Deny;
                break;
            case PolicyAction.Custom:
                action = Ambient.Core.Protos.Security.Action.Deny;
                warnings.Add($"the CUSTOM action is not supported (no extension provider \"{spec.Provider}\" here): enforced by ztunnel as a DENY for the matching requests");
                break;
            default:
                warnings.Add("ztunnel does not support the AUDIT action; an AUDIT policy never changes a decision, so nothing is enforced");
                return new ConvertedPolicy(resource, PolicyEnforcement.None, null, warnings.ToImmutable());
        }

        var scope = spec.HasSelector ? Scope.WorkloadSelector : spec.Namespace == rootNamespace ? Scope.Global : Scope.Namespace;
        var xds = new Authorization { Name = spec.Name, Namespace = spec.Namespace, Scope = scope, Action = action, DryRun = spec.DryRun };
        var allL7 = new SortedSet<string>(StringComparer.Ordinal);
        var statusAt = warnings.Count;
        for (var i = 0; i < spec.Rules.Count; i++)
        {
            var l7 = new SortedSet<string>(StringComparer.Ordinal);
            var rule = ConvertRule(spec.Rules[i], spec.Namespace, l7);
            allL7.UnionWith(l7);
            if (l7.Count > 0 && action == Ambient.Core.Protos.Security.Action.Allow)
            {
                warnings.Add($"rules[{i}]: L7 attributes ({string.Join(", ", l7)}) in an ALLOW rule enforced by ztunnel: this rule never matches");
                continue; // L7 policies never match for ALLOW
            }
            if (l7.Count > 0)
            {
                warnings.Add(NeverMatches(rule)
                    ? $"rules[{i}]: L7 attributes ({string.Join(", ", l7)}) in a DENY rule are left out by ztunnel, and nothing enforceable remains: this rule never matches at ztunnel"
                    : $"rules[{i}]: L7 attributes ({string.Join(", ", l7)}) in a DENY rule are left out by ztunnel: the rest of the rule is enforced, more restrictive than written");
            }
            xds.Rules.Add(rule);
        }
        if (allL7.Count > 0)
        {
            // Istio's status message for the policy as a whole (authorization.go httpRuleFmt), first.
            var effective = false;
            foreach (var r in xds.Rules) effective |= !NeverMatches(r);
            warnings.Insert(statusAt, "ztunnel does not support HTTP attributes (found: " + string.Join(", ", allL7) + "). "
                + "In ambient mode you must use a waypoint proxy to enforce HTTP rules. "
                + (action == Ambient.Core.Protos.Security.Action.Allow
                    ? "Within an ALLOW policy, rules matching HTTP attributes are omitted. This will be more restrictive than requested."
                    : effective
                        ? "DENY policy with HTTP attributes is enforced without the HTTP rules. This will be more restrictive than requested."
                        : "After omitting unsupported HTTP attributes, this DENY policy has no enforceable rules at ztunnel and will have no effect. Deploy a waypoint proxy and use a targetRef to enforce this policy."));
        }
        foreach (var r in spec.Rules)
        {
            foreach (var from in r.From)
            {
                foreach (var p in from.Principals.Concat(from.NotPrincipals))
                {
                    if (p.StartsWith("spiffe://", StringComparison.Ordinal))
                    {
                        warnings.Add($"principal \"{p}\" starts with spiffe://: principals are written without it (<trust domain>/ns/<namespace>/sa/<account>), so this value never matches");
                    }
                }
            }
        }
        return new ConvertedPolicy(resource, PolicyEnforcement.Ztunnel, xds, warnings.ToImmutable());
    }

    private static Rule ConvertRule(PolicyRule rule, string ruleNamespace, SortedSet<string> l7)
    {
        var converted = new Rule();
        if (rule.To.Count > 0)
        {
            var clause = new Clause();
            foreach (var op in rule.To)
            {
                AddIfSet(l7, op.Hosts.Count, "hosts");
                AddIfSet(l7, op.NotHosts.Count, "notHosts");
                AddIfSet(l7, op.Methods.Count, "methods");
                AddIfSet(l7, op.NotMethods.Count, "notMethods");
                AddIfSet(l7, op.Paths.Count, "paths");
                AddIfSet(l7, op.NotPaths.Count, "notPaths");
                var match = new Match();
                AddPorts(match.DestinationPorts, op.Ports);
                AddPorts(match.NotDestinationPorts, op.NotPorts);
                clause.Matches.Add(match);
            }
            converted.Clauses.Add(clause);
        }
        if (rule.From.Count > 0)
        {
            var clause = new Clause();
            foreach (var source in rule.From)
            {
                AddIfSet(l7, source.RemoteIpBlocks.Count, "remoteIpBlocks");
                AddIfSet(l7, source.NotRemoteIpBlocks.Count, "notRemoteIpBlocks");
                AddIfSet(l7, source.RequestPrincipals.Count, "requestPrincipals");
                AddIfSet(l7, source.NotRequestPrincipals.Count, "notRequestPrincipals");
                var match = new Match();
                AddAddresses(match.SourceIps, source.IpBlocks);
                AddAddresses(match.NotSourceIps, source.NotIpBlocks);
                AddStringMatches(match.Namespaces, source.Namespaces);
                AddStringMatches(match.NotNamespaces, source.NotNamespaces);
                AddServiceAccounts(match.ServiceAccounts, source.ServiceAccounts, ruleNamespace);
                AddServiceAccounts(match.NotServiceAccounts, source.NotServiceAccounts, ruleNamespace);
                AddStringMatches(match.Principals, source.Principals);
                AddStringMatches(match.NotPrincipals, source.NotPrincipals);
                clause.Matches.Add(match);
            }
            converted.Clauses.Add(clause);
        }
        foreach (var when in rule.When)
        {
            if (Array.IndexOf(L4WhenKeys, when.Key) < 0)
            {
                l7.Add(when.Key);
            }
            var match = new Match();
            switch (when.Key)
            {
                case "source.namespace":
                    AddStringMatches(match.Namespaces, when.Values);
                    AddStringMatches(match.NotNamespaces, when.NotValues);
                    break;
                case "source.principal":
                    AddStringMatches(match.Principals, when.Values);
                    AddStringMatches(match.NotPrincipals, when.NotValues);
                    break;
                case "source.ip":
                    AddAddresses(match.SourceIps, when.Values);
                    AddAddresses(match.NotSourceIps, when.NotValues);
                    break;
                case "destination.port":
                    AddPorts(match.DestinationPorts, when.Values);
                    AddPorts(match.NotDestinationPorts, when.NotValues);
                    break;
                case "destination.ip":
                    AddAddresses(match.DestinationIps, when.Values);
                    AddAddresses(match.NotDestinationIps, when.NotValues);
                    break;
            }
            converted.Clauses.Add(new Clause { Matches = { match } });
        }
        return converted;
    }

    /// <summary>True when ztunnel can never match the rule: some clause holds only empty matches (ztunnel skips those).</summary>
    internal static bool NeverMatches(Rule rule)
    {
        foreach (var clause in rule.Clauses)
        {
            var any = clause.Matches.Count == 0;
            foreach (var m in clause.Matches)
            {
                any |= m.CalculateSize() > 0;
            }
            if (!any) return true;
        }
        return false;
    }

    private static void AddIfSet(SortedSet<string> l7, int count, string field)
    {
        if (count > 0) l7.Add(field);
    }

    /// <summary>Istio's stringToMatch: <c>*</c> presence, <c>*x</c> suffix, <c>x*</c> prefix, else exact.</summary>
    internal static StringMatch ToStringMatch(string v)
    {
        if (v == "*") return new StringMatch { Presence = new Presence() };
        if (v.StartsWith('*')) return new StringMatch { Suffix = v[1..] };
        if (v.EndsWith('*')) return new StringMatch { Prefix = v[..^1] };
        return new StringMatch { Exact = v };
    }

    private static void AddStringMatches(Google.Protobuf.Collections.RepeatedField<StringMatch> into, IEnumerable<string> values)
    {
        foreach (var v in values) into.Add(ToStringMatch(v));
    }

    // Istio's stringToPort: what does not parse is skipped (the parser has already refused it).
    private static void AddPorts(Google.Protobuf.Collections.RepeatedField<uint> into, IEnumerable<string> values)
    {
        foreach (var v in values)
        {
            if (uint.TryParse(v, NumberStyles.None, CultureInfo.InvariantCulture, out var p) && p <= 65535) into.Add(p);
        }
    }

    /// <summary>Istio's stringToIP: a single IP is a /32 (/128); a CIDR keeps its address as written and its length.</summary>
    internal static void AddAddresses(Google.Protobuf.Collections.RepeatedField<Address> into, IEnumerable<string> values)
    {
        foreach (var v in values)
        {
            var slash = v.IndexOf('/', StringComparison.Ordinal);
            var text = slash < 0 ? v : v[..slash];
            if (!IPAddress.TryParse(text, out var ip)) continue;
            var max = ip.AddressFamily == System.Net.Sockets.AddressFamily.InterNetwork ? 32u : 128u;
            var length = max;
            if (slash >= 0 && (!uint.TryParse(v.AsSpan(slash + 1), NumberStyles.None, CultureInfo.InvariantCulture, out length) || length > max)) continue;
            into.Add(new Address { Address_ = Google.Protobuf.ByteString.CopyFrom(ip.GetAddressBytes()), Length = length });
        }
    }

    // Istio's stringToServiceAccountMatch: "ns/sa", or "sa" in the policy's namespace.
    private static void AddServiceAccounts(Google.Protobuf.Collections.RepeatedField<ServiceAccountMatch> into, IEnumerable<string> values, string ruleNamespace)
    {
        foreach (var v in values)
        {
            var slash = v.IndexOf('/', StringComparison.Ordinal);
            into.Add(slash < 0
                ? new ServiceAccountMatch { Namespace = ruleNamespace, ServiceAccount = v }
                : new ServiceAccountMatch { Namespace = v[..slash], ServiceAccount = v[(slash + 1)..] });
        }
    }
}

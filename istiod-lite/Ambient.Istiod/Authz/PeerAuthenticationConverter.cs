using System.Collections.Immutable;
using Ambient.Core.Protos.AuthorizationPolicies;
using Ambient.Core.Protos.Security;
using Action = Ambient.Core.Protos.Security.Action;

namespace Ambient.Istiod.Authz;

/// <summary>
/// PeerAuthentication to the L4 authorization ztunnel enforces, exactly as Istio's ambient istiod does it
/// (pilot/pkg/serviceregistry/ambient: authorization.go convertPeerAuthentication and
/// convertedSelectorPeerAuthentications, policies.go PolicyCollections). ztunnel has no notion of an mTLS mode: a
/// STRICT scope is a DENY of connections without a peer principal (<c>not_principals: [presence]</c>), which only a
/// plaintext connection (the 15006 listener) lacks; an HBONE peer always has one.
/// <list type="bullet">
/// <item>Whenever any PeerAuthentication exists, one static policy <c>&lt;root&gt;/istio_converted_static_strict</c> is
/// pushed, and every workload whose effective mode (workload &gt; namespace &gt; mesh, UNSET inherits, default
/// PERMISSIVE; the oldest policy of a level wins) is STRICT names it in Workload.authorization_policies.</item>
/// <item>A workload policy with portLevelMtls that makes some ports differ from its effective mode becomes
/// <c>&lt;ns&gt;/converted_peer_authentication_&lt;name&gt;</c> (a DENY of WORKLOAD_SELECTOR scope) and the workloads it
/// selects name it instead of (never beside) the static one: ztunnel denies on any matching DENY, so an exception
/// must live inside the policy that denies.</item>
/// </list>
/// Istio orders policies of a level by creationTimestamp; a folder has none, so file order stands in for it (the
/// first in file order is the oldest), as it does for duplicate names.
/// </summary>
internal static class PeerAuthenticationConverter
{
    /// <summary>authorization.go staticStrictPolicyName ('_' is illegal in Kubernetes names, so it never collides).</summary>
    public const string StaticStrictPolicyName = "istio_converted_static_strict";

    /// <summary>model.GetAmbientPolicyConfigName's prefix for a PeerAuthentication.</summary>
    public const string ConvertedPrefix = "converted_peer_authentication_";

    /// <summary>policies.go DefaultPolicy: DENY, WORKLOAD_SELECTOR, one group of one rule of one match
    /// <c>{not_principals: [presence]}</c>.</summary>
    public static Authorization StaticStrict(string rootNamespace) => new()
    {
        Name = StaticStrictPolicyName,
        Namespace = rootNamespace,
        Scope = Scope.WorkloadSelector,
        Action = Action.Deny,
        Rules = { new Rule { Clauses = { new Clause { Matches = { NoPrincipal() } } } } },
    };

    public static string StaticStrictKey(string rootNamespace) => rootNamespace + "/" + StaticStrictPolicyName;

    public static string ConvertedKey(PeerAuthenticationSpec pa) => pa.Namespace + "/" + ConvertedPrefix + pa.Name;

    /// <summary>
    /// authorization.go convertPeerAuthentication, with policies.go's choice of <paramref name="namespacePolicy"/> and
    /// <paramref name="rootPolicy"/> (the oldest policy without a selector of the workload policy's namespace and of the
    /// root namespace). Null when the policy needs no resource of its own: not a workload policy with portLevelMtls,
    /// in the root namespace, or its ports change nothing.
    /// </summary>
    public static Authorization? Convert(string rootNamespace, PeerAuthenticationSpec pa, PeerAuthenticationSpec? namespacePolicy, PeerAuthenticationSpec? rootPolicy)
    {
        if (pa.Namespace == rootNamespace || !pa.HasSelector || pa.PortLevelMtls.Count == 0)
        {
            return null;
        }
        var mode = pa.Mode;
        var nsMode = namespacePolicy?.Mode;
        var rootMode = rootPolicy?.Mode;
        // Istio's Groups are our rules (OR-ed), its Rules our clauses (AND-ed).
        var clauses = new List<Clause>();
        var rules = new List<Rule>();
        if (mode == MutualTlsMode.Strict)
        {
            clauses.Add(new Clause { Matches = { NoPrincipal() } });
        }
        var foundNonStrictPort = false;
        foreach (var port in SortedPorts(pa))
        {
            var portMode = pa.PortLevelMtls[port];
            switch (portMode)
            {
                case MutualTlsMode.Strict:
                    // Go's precedence, kept as written: A || (B && C) || (D && E), so the third case holds whatever
                    // the workload's own mode is (a STRICT port of a PERMISSIVE workload under a STRICT mesh with no
                    // namespace policy gets no rule).
                    if (mode == MutualTlsMode.Strict
                        || (mode == MutualTlsMode.Unset && nsMode == MutualTlsMode.Strict)
                        || ((nsMode is null or MutualTlsMode.Unset) && rootMode == MutualTlsMode.Strict))
                    {
                        continue; // enforced by the parent policy
                    }
                    // One group per STRICT port: groups are OR-ed.
                    rules.Add(new Rule { Clauses = { new Clause { Matches = { new Match { NotPrincipals = { Presence() }, DestinationPorts = { port } } } } } });
                    break;
                case MutualTlsMode.Permissive or MutualTlsMode.Disable:
                    if (mode is MutualTlsMode.Permissive or MutualTlsMode.Disable)
                    {
                        continue;
                    }
                    if (mode == MutualTlsMode.Unset
                        && ((nsMode is { } n && n != MutualTlsMode.Strict)
                            || (nsMode is null && rootMode is { } r && r != MutualTlsMode.Strict)
                            || (nsMode is null && rootMode is null)))
                    {
                        continue; // not STRICT, and the effective policy is not STRICT either
                    }
                    foundNonStrictPort = true;
                    // Exempts the port from the deny: deny only when the port is another one.
                    clauses.Add(new Clause { Matches = { new Match { NotDestinationPorts = { port } } } });
                    break;
                default:
                    continue;
            }
        }
        if (mode == MutualTlsMode.Strict && !foundNonStrictPort)
        {
            return null; // all ports STRICT: the static STRICT policy does it
        }
        if (clauses.Count == 0 && rules.Count == 0)
        {
            return null;
        }
        var mergeStrict = (rootMode == MutualTlsMode.Strict && (nsMode is null or MutualTlsMode.Unset or MutualTlsMode.Strict))
            || nsMode == MutualTlsMode.Strict;
        if (mergeStrict && foundNonStrictPort)
        {
            clauses.Add(new Clause { Matches = { NoPrincipal() } });
        }
        if (clauses.Count > 0)
        {
            var group = new Rule();
            group.Clauses.Add(clauses);
            rules.Add(group);
        }
        var converted = new Authorization
        {
            Name = ConvertedPrefix + pa.Name,
            Namespace = pa.Namespace,
            Scope = Scope.WorkloadSelector,
            Action = Action.Deny,
        };
        converted.Rules.Add(rules);
        return converted;
    }

    /// <summary>
    /// authorization.go convertedSelectorPeerAuthentications: the names a workload lists for the policies that apply to
    /// it (<paramref name="applicable"/>, in creation order: the root namespace's without a selector, and its own
    /// namespace's without a selector or whose selector its labels contain), sorted. The static STRICT policy when the
    /// effective mode is STRICT, the workload policy's converted form when its ports make a difference.
    /// </summary>
    public static ImmutableArray<string> EffectiveKeys(string rootNamespace, IReadOnlyList<PeerAuthenticationSpec> applicable)
    {
        PeerAuthenticationSpec? mesh = null, ns = null, workload = null;
        foreach (var pa in applicable)
        {
            if (pa.MatchLabels.Count == 0)
            {
                if (pa.Namespace == rootNamespace)
                {
                    mesh ??= pa;
                }
                else
                {
                    ns ??= pa;
                }
            }
            else if (pa.Namespace != rootNamespace)
            {
                workload ??= pa;
            }
        }
        var strict = false;
        if (mesh is not null)
        {
            strict = mesh.Mode == MutualTlsMode.Strict;
        }
        if (ns is not null && ns.Mode != MutualTlsMode.Unset)
        {
            strict = ns.Mode == MutualTlsMode.Strict;
        }
        if (workload is null)
        {
            return Keys(rootNamespace, strict, null);
        }
        if (workload.Mode == MutualTlsMode.Strict)
        {
            strict = true;
        }
        if (workload.Mode is MutualTlsMode.Permissive or MutualTlsMode.Disable)
        {
            strict = false;
        }
        string? portLevelKey = null;
        if (workload.PortLevelMtls.Count > 0)
        {
            switch (workload.Mode)
            {
                case MutualTlsMode.Strict:
                    if (AnyPort(workload, MutualTlsMode.Permissive, MutualTlsMode.Disable))
                    {
                        portLevelKey = ConvertedKey(workload);
                        strict = false; // the converted form carries the STRICT default itself
                    }
                    break;
                case MutualTlsMode.Permissive or MutualTlsMode.Disable:
                    if (AnyPort(workload, MutualTlsMode.Strict, MutualTlsMode.Strict))
                    {
                        portLevelKey = ConvertedKey(workload);
                    }
                    break;
                default:
                    if (strict)
                    {
                        // Only PERMISSIVE ports count here, not DISABLE (as Istio has it).
                        if (AnyPort(workload, MutualTlsMode.Permissive, MutualTlsMode.Permissive))
                        {
                            portLevelKey = ConvertedKey(workload);
                            strict = false;
                        }
                    }
                    else if (AnyPort(workload, MutualTlsMode.Strict, MutualTlsMode.Strict))
                    {
                        portLevelKey = ConvertedKey(workload);
                    }
                    break;
            }
        }
        return Keys(rootNamespace, strict, portLevelKey);
    }

    /// <summary>workloads.go fetchPeerAuthentications: does <paramref name="pa"/> apply to a workload of
    /// <paramref name="ns"/> with <paramref name="labels"/>? (Root namespace: only without a selector.)</summary>
    public static bool Applies(string rootNamespace, PeerAuthenticationSpec pa, string ns, IReadOnlyDictionary<string, string> labels)
    {
        if (pa.Namespace == rootNamespace && !pa.HasSelector)
        {
            return true;
        }
        if (pa.Namespace != ns)
        {
            return false;
        }
        foreach (var (key, value) in pa.MatchLabels)
        {
            if (!labels.TryGetValue(key, out var actual) || actual != value)
            {
                return false;
            }
        }
        return true;
    }

    private static ImmutableArray<string> Keys(string rootNamespace, bool strict, string? portLevelKey)
    {
        var keys = new SortedSet<string>(StringComparer.Ordinal);
        if (strict)
        {
            keys.Add(StaticStrictKey(rootNamespace));
        }
        if (portLevelKey is not null)
        {
            keys.Add(portLevelKey);
        }
        return [.. keys];
    }

    private static bool AnyPort(PeerAuthenticationSpec pa, MutualTlsMode a, MutualTlsMode b)
    {
        foreach (var mode in pa.PortLevelMtls.Values)
        {
            if (mode == a || mode == b)
            {
                return true;
            }
        }
        return false;
    }

    private static uint[] SortedPorts(PeerAuthenticationSpec pa)
    {
        var ports = pa.PortLevelMtls.Keys.ToArray();
        Array.Sort(ports);
        return ports;
    }

    private static Match NoPrincipal() => new() { NotPrincipals = { Presence() } };

    private static StringMatch Presence() => new() { Presence = new Presence() };
}

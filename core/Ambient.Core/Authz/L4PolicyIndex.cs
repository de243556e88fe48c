namespace Ambient.Core.Authz;

/// <summary>
/// One workload's DENY and ALLOW policies (each list in ztunnel's order), indexed by the exact principals they
/// require (<see cref="L4Policy.RequiredPrincipals"/>), so a decision looks the peer up once and evaluates only the
/// policies that can match it, in the same order: a policy naming other peers is skipped without a string compare.
/// A policy without such a requirement is a candidate for every peer. Built once per workload and push; a lookup
/// allocates nothing.
/// </summary>
internal sealed class L4PolicyIndex
{
    private static readonly IReadOnlySet<string> EmptySet = new HashSet<string>();
    private readonly Candidates _unconstrained;
    private readonly Dictionary<string, Candidates> _byPrincipal;
    private readonly Dictionary<string, Candidates>.AlternateLookup<ReadOnlySpan<char>> _byPrincipalSpan;

    public L4PolicyIndex(L4Policy[] deny, L4Policy[] allow)
    {
        HasAllow = allow.Length > 0;
        var principals = new HashSet<string>(StringComparer.Ordinal);
        foreach (var p in deny)
        {
            principals.UnionWith(p.RequiredPrincipals ?? EmptySet);
        }
        foreach (var p in allow)
        {
            principals.UnionWith(p.RequiredPrincipals ?? EmptySet);
        }
        _unconstrained = new Candidates(For(deny, null), For(allow, null));
        _byPrincipal = new Dictionary<string, Candidates>(principals.Count, StringComparer.Ordinal);
        foreach (var principal in principals)
        {
            _byPrincipal[principal] = new Candidates(For(deny, principal), For(allow, principal));
        }
        _byPrincipalSpan = _byPrincipal.GetAlternateLookup<ReadOnlySpan<char>>();
    }

    /// <summary>Whether any ALLOW policy applies (whatever the peer): without one, no ALLOW match is needed.</summary>
    public bool HasAllow { get; }

    /// <summary>The DENY and ALLOW policies that can match <paramref name="peer"/>, in order.</summary>
    public Candidates For(in L4Peer peer) =>
        peer.HasIdentity && _byPrincipal.Count > 0 && _byPrincipalSpan.TryGetValue(peer.Principal, out var candidates)
            ? candidates
            : _unconstrained;

    /// <summary>The policies of <paramref name="policies"/> a peer with <paramref name="principal"/> (null: any
    /// principal not required by a policy, or none) can match, in their order.</summary>
    private static L4Policy[] For(L4Policy[] policies, string? principal)
    {
        var list = new List<L4Policy>(policies.Length);
        foreach (var p in policies)
        {
            if (p.RequiredPrincipals is not { } required || (principal is not null && required.Contains(principal)))
            {
                list.Add(p);
            }
        }
        return [.. list];
    }

    internal sealed record Candidates(L4Policy[] Deny, L4Policy[] Allow);
}

using Ambient.Core.Authz;
using Ambient.Core.Protos.Security;
using static Ambient.Core.Tests.Authz.L4Policies;
using Action = Ambient.Core.Protos.Security.Action;
using Authorization = Ambient.Core.Protos.Security.Authorization;

namespace Ambient.Core.Tests.Authz;

/// <summary>
/// The principal index only skips policies that cannot match: every decision (outcome, reason and deciding policy)
/// is the one a scan of every policy in order gives.
/// </summary>
public class L4PolicyIndexTests
{
    private static readonly string[] Identities =
    [
        "spiffe://td/ns/a/sa/client", "spiffe://td/ns/a/sa/other", "spiffe://td/ns/b/sa/client", "spiffe://td/ns/b/sa/x",
        "spiffe://td/ns/c/sa/client", "not-spiffe", null!,
    ];

    private static Match RandomMatch(Random random) => random.Next(7) switch
    {
        0 => new Match { Principals = { Exact(Principal(random)) } },
        1 => new Match { Principals = { Exact(Principal(random)), Exact(Principal(random)) }, DestinationPorts = { 8080 } },
        2 => new Match { Principals = { Prefix("td/ns/" + (random.Next(2) == 0 ? "a" : "b")) } },
        3 => new Match { Principals = { Exact(Principal(random)), Suffix("/sa/x") } },
        4 => new Match { Namespaces = { Exact(random.Next(2) == 0 ? "a" : "b") } },
        5 => new Match { NotPrincipals = { Exact(Principal(random)) } },
        _ => new Match(),
    };

    private static string Principal(Random random) => Identities[random.Next(5)]["spiffe://".Length..];

    private static Rule RandomRule(Random random)
    {
        var clauses = new Match[random.Next(3)][];
        for (var c = 0; c < clauses.Length; c++)
        {
            clauses[c] = new Match[random.Next(3)];
            for (var m = 0; m < clauses[c].Length; m++) clauses[c][m] = RandomMatch(random);
        }
        return Rule(clauses);
    }

    /// <summary>The decision without the index: every policy of the list, in order.</summary>
    private static (bool, L4DecisionReason, string?) Scan(Authorization[] policies, L4Connection connection)
    {
        var peer = new L4Peer(connection.SourceIdentity);
        var compiled = Array.ConvertAll(policies, L4Policy.Compile);
        foreach (var p in compiled)
        {
            if (p.Action == Action.Deny && p.Matches(connection, peer)) return (false, L4DecisionReason.DenyMatched, p.Key);
        }
        if (!Array.Exists(compiled, p => p.Action == Action.Allow)) return (true, L4DecisionReason.NoAllowPolicies, null);
        foreach (var p in compiled)
        {
            if (p.Action == Action.Allow && p.Matches(connection, peer)) return (true, L4DecisionReason.AllowMatched, p.Key);
        }
        return (false, L4DecisionReason.NoAllowMatched, null);
    }

    [Fact]
    public void Indexed_decisions_are_those_of_a_full_scan()
    {
        var random = new Random(1414);
        for (var round = 0; round < 300; round++)
        {
            var policies = new Authorization[random.Next(1, 12)];
            for (var i = 0; i < policies.Length; i++)
            {
                var rules = new Rule[random.Next(3)];
                for (var r = 0; r < rules.Length; r++) rules[r] = RandomRule(random);
                policies[i] = Policy($"p{i:D2}", random.Next(2) == 0 ? Action.Allow : Action.Deny, rules: rules);
            }
            var authorizer = L4Authorizer.Build(policies);
            var workload = Workload();
            foreach (var identity in Identities)
            {
                var connection = Conn(identity);
                var d = authorizer.Evaluate(workload, connection);
                Assert.Equal(Scan(policies, connection), (d.Allowed, d.Reason, d.Policy?.Key));
            }
        }
    }

    [Fact]
    public void Required_principals_are_a_necessary_condition_only_when_every_rule_has_one()
    {
        var exact = L4Policy.Compile(Policy("p", Action.Deny, rules: [Rule(new Match { Principals = { Exact("td/ns/a/sa/x") } }), Rule(new Match { Principals = { Exact("td/ns/b/sa/y") } })]));
        Assert.Equal(["td/ns/a/sa/x", "td/ns/b/sa/y"], exact.RequiredPrincipals!.Order(StringComparer.Ordinal));
        // One rule open to any peer, or one prefix form: unconstrained.
        Assert.Null(L4Policy.Compile(Policy("p", Action.Deny, rules: [Rule(new Match { Principals = { Exact("td/ns/a/sa/x") } }), new Rule()])).RequiredPrincipals);
        Assert.Null(L4Policy.Compile(Policy("p", Action.Deny, rules: Rule(new Match { Principals = { Exact("td/ns/a/sa/x"), Prefix("td/") } }))).RequiredPrincipals);
        // A rule is constrained by any one of its clauses.
        var twoClauses = L4Policy.Compile(Policy("p", Action.Allow, rules: Rule([new Match { DestinationPorts = { 80 } }], [new Match { Principals = { Exact("td/ns/a/sa/x") } }])));
        Assert.Equal(["td/ns/a/sa/x"], twoClauses.RequiredPrincipals!);
        // No rules (allow-nothing): matches no peer at all.
        Assert.Empty(L4Policy.Compile(Policy("p", Action.Allow)).RequiredPrincipals!);
    }

    [Fact]
    public void An_allow_list_for_other_peers_still_denies_a_peer_it_does_not_name()
    {
        // The peer's candidate ALLOW list is empty, yet ALLOW policies apply: denied, not "no allow policies".
        var d = Decide(Tls(), Workload(), Policy("only-x", Action.Allow, rules: Rule(new Match { Principals = { Exact("td/ns/a/sa/x") } })));
        Assert.False(d.Allowed);
        Assert.Equal(L4DecisionReason.NoAllowMatched, d.Reason);
    }
}

using Ambient.Core.Authz;
using Ambient.Core.Protos.Security;
using static Ambient.Core.Tests.Authz.L4Policies;
using Action = Ambient.Core.Protos.Security.Action;

namespace Ambient.Core.Tests.Authz;

/// <summary>
/// Rule/clause/match semantics, ported from istio/ztunnel src/rbac.rs `mod tests` (rbac_empty_policy, rbac_nesting,
/// rbac_multi_rule, the rbac_test! cases per field, string_match) plus the forms those tests do not reach.
/// </summary>
public class L4MatchTests
{
    [Fact]
    public void Empty_policy_forms_as_rbac_empty_policy()
    {
        // A clause holding only an empty match: the match is skipped, so the clause (and the policy) never matches.
        Assert.False(MatchesPolicy(Policy("p", Action.Allow, rules: Rule(new Match())), Plaintext()));
        // A clause with no matches matches everything.
        Assert.True(MatchesPolicy(Policy("p", Action.Allow, rules: Rule(Array.Empty<Match>())), Plaintext()));
        // A rule with no clauses matches everything: `rules: [{}]` is allow-all.
        Assert.True(MatchesPolicy(Policy("p", Action.Allow, rules: new Rule()), Plaintext()));
        // A policy with no rules matches nothing: `{}` is allow-nothing for ALLOW.
        Assert.False(MatchesPolicy(Policy("p", Action.Allow), Plaintext()));
    }

    [Fact]
    public void Matches_in_a_clause_are_ored_and_clauses_anded_as_rbac_nesting()
    {
        var policy = Policy("nested", Action.Allow, rules: Rule(
            [new Match { Namespaces = { Exact("a") } }, new Match { Namespaces = { Exact("b") } }],
            [new Match { DestinationPorts = { 80 } }]));
        Assert.True(MatchesPolicy(policy, Conn("spiffe://td/ns/a/sa/account", port: 80)));
        Assert.True(MatchesPolicy(policy, Conn("spiffe://td/ns/b/sa/account", port: 80)));
        Assert.False(MatchesPolicy(policy, Conn("spiffe://td/ns/bad/sa/account", port: 80)));
        Assert.False(MatchesPolicy(policy, Conn("spiffe://td/ns/b/sa/account", port: 12345)));
    }

    [Fact]
    public void Rules_are_ored_as_rbac_multi_rule()
    {
        var policy = Policy("multi", Action.Allow, rules: [
            Rule(new Match { Namespaces = { Exact("a") } }),
            Rule(new Match { Namespaces = { Exact("b") } })]);
        Assert.True(MatchesPolicy(policy, Conn("spiffe://td/ns/a/sa/account", port: 80)));
        Assert.True(MatchesPolicy(policy, Conn("spiffe://td/ns/b/sa/account", port: 80)));
        Assert.False(MatchesPolicy(policy, Conn("spiffe://td/ns/bad/sa/account", port: 80)));
    }

    public static TheoryData<string, Match, bool, bool, bool> Fields => new()
    {
        // field, match, plaintext_conn, tls_conn, tls_conn_alt: the rbac_test! table of rbac.rs.
        { "namespaces", new Match { Namespaces = { Exact("namespace") } }, false, true, false },
        { "not_namespaces", new Match { NotNamespaces = { Exact("namespace") } }, true, false, true },
        { "service_accounts", new Match { ServiceAccounts = { new ServiceAccountMatch { Namespace = "namespace", ServiceAccount = "account" } } }, false, true, false },
        { "not_service_accounts", new Match { NotServiceAccounts = { new ServiceAccountMatch { Namespace = "namespace", ServiceAccount = "account" } } }, true, false, true },
        { "principals", new Match { Principals = { Exact("td/ns/namespace/sa/account") } }, false, true, false },
        { "not_principals", new Match { NotPrincipals = { Exact("td/ns/namespace/sa/account") } }, true, false, true },
        { "source_ips", new Match { SourceIps = { Cidr("127.0.0.1", 32) } }, true, true, false },
        { "not_source_ips", new Match { NotSourceIps = { Cidr("127.0.0.1", 32) } }, false, false, true },
        { "destination_ips", new Match { DestinationIps = { Cidr("127.0.0.2", 32) } }, true, true, false },
        { "not_destination_ips", new Match { NotDestinationIps = { Cidr("127.0.0.2", 32) } }, false, false, true },
        { "cidr_range", new Match { DestinationIps = { Cidr("127.0.0.1", 24) } }, true, true, true },
        { "destination_ports", new Match { DestinationPorts = { 8080 } }, true, true, false },
        { "not_destination_ports", new Match { NotDestinationPorts = { 8080 } }, false, false, true },
    };

    [Theory]
    [MemberData(nameof(Fields))]
    public void Each_field_as_rbac_test(string field, Match match, bool plaintext, bool tls, bool tlsAlt)
    {
        Assert.True(plaintext == Matches(match, Plaintext()), field + " plaintext");
        Assert.True(tls == Matches(match, Tls()), field + " tls");
        Assert.True(tlsAlt == Matches(match, TlsAlt()), field + " tls_alt");
    }

    [Theory]
    // rbac.rs string_match cases.
    [InlineData("exact", "foo", "foo", true)]
    [InlineData("exact", "foo", "not", false)]
    [InlineData("exact", "foo", "", false)]
    [InlineData("prefix", "foo", "foobar", true)]
    [InlineData("prefix", "foo", "notfoo", false)]
    [InlineData("prefix", "foo", "", false)]
    [InlineData("suffix", "foo", "barfoo", true)]
    [InlineData("suffix", "foo", "foonot", false)]
    [InlineData("suffix", "foo", "", false)]
    [InlineData("presence", "", "foo", true)]
    [InlineData("presence", "", "", false)]
    // Ordinal, as Rust's str comparisons.
    [InlineData("exact", "foo", "FOO", false)]
    public void String_match(string kind, string value, string input, bool expected)
    {
        var sm = kind switch { "exact" => Exact(value), "prefix" => Prefix(value), "suffix" => Suffix(value), _ => Presence() };
        Assert.Equal(expected, L4StringMatch.From(sm)!.Value.Matches(input));
    }

    [Fact]
    public void A_string_match_without_a_type_is_dropped_as_ztunnel_drops_it()
    {
        // The field is then empty: it no longer constrains, and a match left with nothing never matches.
        Assert.Null(L4StringMatch.From(new StringMatch()));
        Assert.False(Matches(new Match { Principals = { new StringMatch() } }, Tls()));
        Assert.True(Matches(new Match { Principals = { new StringMatch() }, DestinationPorts = { 8080 } }, Tls()));
    }

    [Theory]
    [InlineData("td/ns/namespace/sa/account", true)]
    [InlineData("spiffe://td/ns/namespace/sa/account", false)] // compared without spiffe://, so the scheme never matches
    [InlineData("td/ns/namespace/*", false)] // no glob: istiod turns "x*" into a prefix match
    public void Principals_are_compared_without_the_spiffe_scheme(string exact, bool expected)
        => Assert.Equal(expected, Matches(new Match { Principals = { Exact(exact) } }, Tls()));

    [Fact]
    public void Principal_prefix_suffix_and_presence()
    {
        Assert.True(Matches(new Match { Principals = { Prefix("td/ns/namespace/") } }, Tls()));
        Assert.False(Matches(new Match { Principals = { Prefix("td/ns/namespace/") } }, TlsAlt()));
        Assert.True(Matches(new Match { Principals = { Suffix("/sa/account") } }, Tls()));
        Assert.True(Matches(new Match { Principals = { Presence() } }, Tls()));
        // Plaintext has no principal: no form matches it, and a not_ form does not exclude it.
        Assert.False(Matches(new Match { Principals = { Presence() } }, Plaintext()));
        Assert.False(Matches(new Match { Principals = { Prefix("") } }, Plaintext()));
        Assert.True(Matches(new Match { NotPrincipals = { Presence() } }, Plaintext()));
        Assert.False(Matches(new Match { NotPrincipals = { Presence() } }, Tls()));
    }

    [Fact]
    public void Namespace_of_a_plaintext_peer_is_empty()
    {
        // ztunnel matches namespaces against "" when there is no identity.
        Assert.False(Matches(new Match { Namespaces = { Presence() } }, Plaintext()));
        Assert.True(Matches(new Match { Namespaces = { Exact("") } }, Plaintext()));
        Assert.True(Matches(new Match { Namespaces = { Prefix("name") } }, Tls()));
        Assert.True(Matches(new Match { Namespaces = { Suffix("space") } }, Tls()));
    }

    [Fact]
    public void Every_populated_field_must_match()
    {
        var m = new Match { Principals = { Exact("td/ns/namespace/sa/account") }, SourceIps = { Cidr("10.0.0.0", 8) } };
        Assert.False(Matches(m, Tls()));
        Assert.True(Matches(m, Conn(TlsIdentity, source: "10.1.2.3")));
        // A value in both the field and its not_ field never matches.
        Assert.False(Matches(new Match { DestinationPorts = { 8080 }, NotDestinationPorts = { 8080 } }, Tls()));
    }

    [Fact]
    public void Cidrs_ipv6_families_and_mapped_addresses()
    {
        Assert.True(Matches(new Match { SourceIps = { Cidr("fd00::", 64) } }, Conn(null, source: "fd00::1")));
        Assert.False(Matches(new Match { SourceIps = { Cidr("fd00::", 64) } }, Conn(null, source: "fd00:0:0:1::1")));
        // ::/0 does not hold IPv4 addresses, nor 0.0.0.0/0 IPv6 ones.
        Assert.False(Matches(new Match { SourceIps = { Cidr("::", 0) } }, Conn(null, source: "10.0.0.1")));
        Assert.True(Matches(new Match { SourceIps = { Cidr("0.0.0.0", 0) } }, Conn(null, source: "10.0.0.1")));
        Assert.False(Matches(new Match { SourceIps = { Cidr("0.0.0.0", 0) } }, Conn(null, source: "::1")));
        // A dual-stack socket's IPv4-mapped address is the IPv4 address.
        Assert.True(Matches(new Match { SourceIps = { Cidr("10.0.0.0", 8) } }, Conn(null, source: "::ffff:10.0.0.1")));
        // Host bits set in the address are ignored, as IpNet::contains ignores them.
        Assert.True(Matches(new Match { DestinationIps = { Cidr("127.0.0.99", 24) } }, Tls()));
    }

    [Fact]
    public void Invalid_addresses_are_dropped_as_ztunnel_drops_them()
    {
        var badLength = new Address { Address_ = Google.Protobuf.ByteString.CopyFrom(127, 0, 0, 1), Length = 33 };
        var badBytes = new Address { Address_ = Google.Protobuf.ByteString.CopyFrom(127, 0, 0), Length = 8 };
        Assert.Null(IpCidr.From(badLength.Address_.Span, badLength.Length));
        Assert.Null(IpCidr.From(badBytes.Address_.Span, badBytes.Length));
        Assert.False(Matches(new Match { SourceIps = { badLength, badBytes } }, Tls()));
    }

    [Fact]
    public void Ports_are_narrowed_to_16_bits_as_ztunnel_narrows_them()
        => Assert.True(Matches(new Match { DestinationPorts = { 65536 + 8080 } }, Tls()));

    [Fact]
    public void Service_accounts_need_an_identity_and_compare_namespace_and_name()
    {
        var sa = new ServiceAccountMatch { Namespace = "ns-alt", ServiceAccount = "sa=alt" };
        Assert.True(Matches(new Match { ServiceAccounts = { sa } }, TlsAlt()));
        Assert.False(Matches(new Match { ServiceAccounts = { new ServiceAccountMatch { Namespace = "namespace", ServiceAccount = "sa=alt" } } }, TlsAlt()));
        Assert.True(Matches(new Match { NotServiceAccounts = { sa } }, Plaintext()));
    }

    [Fact]
    public void A_match_with_only_extensions_is_empty()
        => Assert.False(Matches(new Match { Extensions = { new Extension { Name = "x" } } }, Tls()));
}

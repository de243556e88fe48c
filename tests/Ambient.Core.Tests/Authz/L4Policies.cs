using System.Net;
using Ambient.Core.Authz;
using Ambient.Core.Model;
using Ambient.Core.Protos.Security;
using Google.Protobuf;
using Action = Ambient.Core.Protos.Security.Action;
using Authorization = Ambient.Core.Protos.Security.Authorization;

namespace Ambient.Core.Tests.Authz;

/// <summary>Builders for istio.security.Authorization protos and connections, as ztunnel's rbac.rs tests build them.</summary>
internal static class L4Policies
{
    public const string TlsIdentity = "spiffe://td/ns/namespace/sa/account";
    public const string AltIdentity = "spiffe://td-alt/ns/ns-alt/sa/sa=alt";

    /// <summary>rbac.rs plaintext_conn: 127.0.0.1:1234 -> 127.0.0.2:8080, no identity.</summary>
    public static L4Connection Plaintext() => new(null, IPAddress.Parse("127.0.0.1"), IPAddress.Parse("127.0.0.2"), 8080);

    /// <summary>rbac.rs tls_conn: the same addresses, identity td/ns/namespace/sa/account.</summary>
    public static L4Connection Tls() => new(TlsIdentity, IPAddress.Parse("127.0.0.1"), IPAddress.Parse("127.0.0.2"), 8080);

    /// <summary>rbac.rs tls_conn_alt: 127.0.0.3 -> 127.0.0.4:9090, identity td-alt/ns/ns-alt/sa/sa=alt.</summary>
    public static L4Connection TlsAlt() => new(AltIdentity, IPAddress.Parse("127.0.0.3"), IPAddress.Parse("127.0.0.4"), 9090);

    public static L4Connection Conn(string? identity, string source = "127.0.0.1", string destination = "127.0.0.2", int port = 8080)
        => new(identity, IPAddress.Parse(source), IPAddress.Parse(destination), port);

    public static WorkloadInfo Workload(string ns = "namespace", params string[] policies) => new($"c//Pod/{ns}/w", ns, "td", "sa")
    {
        Name = "w",
        CanonicalName = "w",
        WorkloadName = "w",
        AuthorizationPolicies = [.. policies],
    };

    public static Authorization Policy(string name, Action action, Scope scope = Scope.Namespace, string ns = "namespace", params Rule[] rules)
    {
        var a = new Authorization { Name = name, Namespace = ns, Action = action, Scope = scope };
        a.Rules.Add(rules);
        return a;
    }

    /// <summary>A rule of clauses, each clause a list of matches (ztunnel's Vec&lt;Vec&lt;RbacMatch&gt;&gt;).</summary>
    public static Rule Rule(params Match[][] clauses)
    {
        var rule = new Rule();
        foreach (var matches in clauses)
        {
            var clause = new Clause();
            clause.Matches.Add(matches);
            rule.Clauses.Add(clause);
        }
        return rule;
    }

    /// <summary>A rule with one clause of one match.</summary>
    public static Rule Rule(Match match) => Rule([match]);

    public static StringMatch Exact(string v) => new() { Exact = v };
    public static StringMatch Prefix(string v) => new() { Prefix = v };
    public static StringMatch Suffix(string v) => new() { Suffix = v };
    public static StringMatch Presence() => new() { Presence = new Presence() };

    public static Address Cidr(string ip, uint length) => new() { Address_ = ByteString.CopyFrom(IPAddress.Parse(ip).GetAddressBytes()), Length = length };

    public static L4Decision Decide(L4Connection connection, WorkloadInfo workload, params Authorization[] policies)
        => L4Authorizer.Build(policies).Evaluate(workload, connection);

    /// <summary>Does an ALLOW policy of this one match match the connection? (rbac.rs allow_policy(..).matches).</summary>
    public static bool Matches(Match match, L4Connection connection)
        => MatchesPolicy(Policy("p", Action.Allow, Scope.Global, rules: Rule(match)), connection);

    public static bool MatchesPolicy(Authorization policy, L4Connection connection)
    {
        var compiled = L4Policy.Compile(policy);
        return compiled.Matches(connection, new L4Peer(connection.SourceIdentity));
    }
}

using System.Net;
using Ambient.Core.Authz;
using Ambient.Core.Protos.Security;
using static Ambient.Core.Tests.Authz.L4Policies;
using Action = Ambient.Core.Protos.Security.Action;
using Authorization = Ambient.Core.Protos.Security.Authorization;

namespace Ambient.Core.Tests.Authz;

/// <summary>
/// The L4 resources Istio's ambient istiod pushes for PeerAuthentication (pilot/pkg/serviceregistry/ambient:
/// the static STRICT policy of PolicyCollections' DefaultPolicy, and convertPeerAuthentication's port-level forms),
/// judged by the evaluator: a connection without a peer principal (plaintext, the 15006 listener) is denied where the
/// effective mode is STRICT and allowed elsewhere; an mTLS (HBONE) peer is never affected.
/// </summary>
public class PeerAuthenticationEnforcementTests
{
    private static readonly IPAddress Source = IPAddress.Parse("127.0.0.1");
    private static readonly IPAddress Destination = IPAddress.Parse("127.0.0.2");

    // PolicyCollections DefaultPolicy: DENY, one group, one rule, one match {not_principals: [presence]}.
    private static readonly Authorization StaticStrict =
        Policy("istio_converted_static_strict", Action.Deny, Scope.WorkloadSelector, "istio-system", Rule(new Match { NotPrincipals = { Presence() } }));

    // convertPeerAuthentication, mode STRICT with portLevelMtls {8080: PERMISSIVE}: one group whose rules (our
    // clauses) are AND-ed: no principal AND a port other than 8080.
    private static readonly Authorization StrictExcept8080 = Policy("converted_peer_authentication_echo", Action.Deny, Scope.WorkloadSelector, "shop",
        Rule([new Match { NotPrincipals = { Presence() } }], [new Match { NotDestinationPorts = { 8080 } }]));

    // convertPeerAuthentication, mode PERMISSIVE with portLevelMtls {9090: STRICT}: one group per STRICT port.
    private static readonly Authorization PermissiveExcept9090 = Policy("converted_peer_authentication_echo", Action.Deny, Scope.WorkloadSelector, "shop",
        Rule(new Match { NotPrincipals = { Presence() }, DestinationPorts = { 9090 } }));

    private static L4Decision Judge(L4Connection connection, Authorization policy, string key) =>
        L4Authorizer.Build([policy]).Evaluate(Workload("shop", key), connection);

    [Fact]
    public void Plaintext_connection_has_no_peer_principal()
    {
        var plaintext = L4Connection.Plaintext(Source, Destination, 8080);
        Assert.Null(plaintext.SourceIdentity);
        Assert.Equal(8080, plaintext.DestinationPort);
        Assert.False(new L4Peer(plaintext.SourceIdentity).HasIdentity);
    }

    [Fact]
    public void Static_strict_denies_plaintext_and_allows_mtls()
    {
        var denied = Judge(L4Connection.Plaintext(Source, Destination, 8080), StaticStrict, "istio-system/istio_converted_static_strict");
        Assert.False(denied.Allowed);
        Assert.Equal(L4DecisionReason.DenyMatched, denied.Reason);
        Assert.Equal("explicitly denied by: istio-system/istio_converted_static_strict", denied.Describe());
        Assert.True(Judge(Tls(), StaticStrict, "istio-system/istio_converted_static_strict").Allowed);
        // A certificate identity that is not a SPIFFE workload URI is no principal at all (ztunnel would refuse it).
        Assert.False(Judge(Conn("not-spiffe"), StaticStrict, "istio-system/istio_converted_static_strict").Allowed);
    }

    [Fact]
    public void Static_strict_applies_only_to_workloads_that_name_it()
    {
        // WORKLOAD_SELECTOR scope: a PERMISSIVE workload does not list it, so plaintext is allowed there.
        Assert.True(L4Authorizer.Build([StaticStrict]).Evaluate(Workload("shop"), L4Connection.Plaintext(Source, Destination, 8080)).Allowed);
    }

    [Theory]
    [InlineData(8080, true)]
    [InlineData(9090, false)]
    [InlineData(15006, false)]
    public void Strict_with_a_permissive_port_allows_plaintext_on_that_port_only(int port, bool allowed)
    {
        Assert.Equal(allowed, Judge(L4Connection.Plaintext(Source, Destination, port), StrictExcept8080, "shop/converted_peer_authentication_echo").Allowed);
        Assert.True(Judge(Conn(TlsIdentity, port: port), StrictExcept8080, "shop/converted_peer_authentication_echo").Allowed);
    }

    [Theory]
    [InlineData(9090, false)]
    [InlineData(8080, true)]
    public void Permissive_with_a_strict_port_denies_plaintext_on_that_port_only(int port, bool allowed)
    {
        Assert.Equal(allowed, Judge(L4Connection.Plaintext(Source, Destination, port), PermissiveExcept9090, "shop/converted_peer_authentication_echo").Allowed);
        Assert.True(Judge(Conn(TlsIdentity, port: port), PermissiveExcept9090, "shop/converted_peer_authentication_echo").Allowed);
    }

    [Fact]
    public void Strict_denial_comes_before_an_allow_policy()
    {
        // DENY first: an ALLOW-all namespace policy does not let plaintext past STRICT.
        var allowAll = Policy("allow-all", Action.Allow, Scope.Namespace, "shop", new Rule());
        var d = L4Authorizer.Build([allowAll, StaticStrict])
            .Evaluate(Workload("shop", "istio-system/istio_converted_static_strict"), L4Connection.Plaintext(Source, Destination, 8080));
        Assert.False(d.Allowed);
        Assert.Equal(L4DecisionReason.DenyMatched, d.Reason);
    }
}

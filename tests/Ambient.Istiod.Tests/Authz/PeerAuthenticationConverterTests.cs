using System.Net;
using Ambient.Config.Yaml;
using Ambient.Core.Authz;
using Ambient.Core.Config;
using Ambient.Core.Model;
using Ambient.Core.Protos.Security;
using Ambient.Istiod.Authz;
using Action = Ambient.Core.Protos.Security.Action;
using Authorization = Ambient.Core.Protos.Security.Authorization;

namespace Ambient.Istiod.Tests.Authz;

// PeerAuthentication for ztunnel, every mode / inheritance / port-level combination, as istio/istio
// pilot/pkg/serviceregistry/ambient does it: authorization.go convertedSelectorPeerAuthentications (the names a
// workload lists) and convertPeerAuthentication (the port-level resource), policies.go PolicyCollections (the static
// STRICT DefaultPolicy, and which namespace / root policy a workload policy is merged with). The expected resources are
// written from that code; each case is then judged by the ztunnel evaluator for a plaintext (no peer principal) and an
// mTLS connection on ports 8080 and 9090 of the workload shop/echo (app=echo).
public class PeerAuthenticationConverterTests
{
    private const string Root = "istio-system";
    private const string StaticKey = "istio-system/istio_converted_static_strict";
    private const string ConvertedKey = "shop/converted_peer_authentication_echo";
    private const string MeshIdentity = "spiffe://cluster.local/ns/shop/sa/client";

    private static string Mesh(string mode, string name = "default") => Pa(Root, name, $"  mtls: {{mode: {mode}}}\n");

    private static string Ns(string mode, string ns = "shop", string name = "default") => Pa(ns, name, $"  mtls: {{mode: {mode}}}\n");

    private static string Wl(string? mode, string ports = "", string name = "echo") =>
        Pa("shop", name, "  selector: {matchLabels: {app: echo}}\n" + (mode is null ? "" : $"  mtls: {{mode: {mode}}}\n")
            + (ports.Length == 0 ? "" : "  portLevelMtls: {" + ports + "}\n"));

    private static string Pa(string ns, string name, string spec) =>
        $"apiVersion: security.istio.io/v1\nkind: PeerAuthentication\nmetadata: {{name: {name}, namespace: {ns}}}\nspec:\n{spec}";

    private sealed record Outcome(PolicySet Set, WorkloadInfo Echo, L4Authorizer Authorizer)
    {
        public bool PlaintextAllowed(int port) =>
            Authorizer.Evaluate(Echo, L4Connection.Plaintext(IPAddress.Loopback, IPAddress.Parse("127.0.0.2"), port)).Allowed;

        public bool MtlsAllowed(int port) =>
            Authorizer.Evaluate(Echo, new L4Connection(MeshIdentity, IPAddress.Loopback, IPAddress.Parse("127.0.0.2"), port)).Allowed;

        public Authorization? Pushed(string key) => Set.ForZtunnel.FirstOrDefault(a => a.Namespace + "/" + a.Name == key);
    }

    private static Outcome Run(params string[] documents)
    {
        var result = ManifestParser.Parse("/cfg/peer.yaml", string.Join("---\n", documents));
        Assert.Empty(result.Errors);
        var set = PolicySet.Build(result.Resources, Root);
        var echo = new WorkloadInfo(WorkloadInfo.PodUid("Kubernetes", "shop", "echo"), "shop", "cluster.local", "echo")
        {
            Name = "echo",
            CanonicalName = "echo",
            WorkloadName = "echo",
            Labels = System.Collections.Immutable.ImmutableSortedDictionary.CreateRange(StringComparer.Ordinal, [KeyValuePair.Create("app", "echo")]),
        };
        var snapshot = set.Attach(MeshSnapshot.Create([echo], [], MeshOptions.Default), Root);
        return new Outcome(set, snapshot.FindPod("shop", "echo")!, L4Authorizer.Build(set.ForZtunnel));
    }

    private static Match NoPrincipal() => new() { NotPrincipals = { new StringMatch { Presence = new Presence() } } };

    private static Clause Clause(Match m) => new() { Matches = { m } };

    private static Authorization Converted(params Rule[] rules)
    {
        var a = new Authorization { Name = "converted_peer_authentication_echo", Namespace = "shop", Scope = Scope.WorkloadSelector, Action = Action.Deny };
        a.Rules.Add(rules);
        return a;
    }

    // Mode inheritance without port-level settings: mesh > namespace > workload, UNSET inherits, default PERMISSIVE.
    // Columns: the documents (| separated), whether the workload names the static STRICT policy (and so plaintext is denied).
    public static TheoryData<string, bool> Inheritance => new()
    {
        { "", false },
        { Mesh("STRICT"), true },
        { Mesh("PERMISSIVE"), false },
        { Mesh("DISABLE"), false },
        { Mesh("UNSET"), false },
        { Mesh("STRICT") + "|" + Ns("PERMISSIVE"), false },
        { Mesh("STRICT") + "|" + Ns("DISABLE"), false },
        { Mesh("STRICT") + "|" + Ns("UNSET"), true },
        { Mesh("PERMISSIVE") + "|" + Ns("STRICT"), true },
        { Ns("STRICT"), true },
        { Ns("STRICT", ns: "other"), false },
        { Ns("PERMISSIVE") + "|" + Wl("STRICT"), true },
        { Mesh("STRICT") + "|" + Wl("PERMISSIVE"), false },
        { Mesh("STRICT") + "|" + Wl("DISABLE"), false },
        { Mesh("STRICT") + "|" + Wl("UNSET"), true },
        { Ns("STRICT") + "|" + Wl(null), true },
        { Mesh("PERMISSIVE") + "|" + Ns("UNSET") + "|" + Wl("UNSET"), false },
        // The oldest (first in file order) of a level wins.
        { Mesh("STRICT", "a") + "|" + Mesh("PERMISSIVE", "b"), true },
        { Ns("PERMISSIVE", name: "a") + "|" + Ns("STRICT", name: "b"), false },
        { Wl("STRICT", name: "a") + "|" + Wl("PERMISSIVE", name: "b"), true },
        // A selector policy in the root namespace applies to no workload elsewhere (fetchPeerAuthentications).
        { Pa(Root, "sel", "  selector: {matchLabels: {app: echo}}\n  mtls: {mode: STRICT}\n"), false },
    };

    [Theory]
    [MemberData(nameof(Inheritance))]
    public void Effective_mode_is_inherited_as_Istio_resolves_it(string documents, bool strict)
    {
        var o = Run(documents.Length == 0 ? [] : documents.Split('|'));
        Assert.Equal(strict ? [StaticKey] : [], o.Echo.AuthorizationPolicies);
        // The static policy is pushed whenever any PeerAuthentication exists (policies.go DefaultPolicy), named or not.
        Assert.Equal(documents.Length > 0, o.Pushed(StaticKey) is not null);
        Assert.DoesNotContain(o.Set.ForZtunnel, a => a.Name.StartsWith("converted_", StringComparison.Ordinal));
        foreach (var port in (int[])[8080, 9090])
        {
            Assert.Equal(!strict, o.PlaintextAllowed(port));
            Assert.True(o.MtlsAllowed(port)); // HBONE peers are never affected
        }
    }

    [Fact]
    public void Static_strict_policy_is_Istios_DefaultPolicy()
    {
        var expected = new Authorization
        {
            Name = "istio_converted_static_strict",
            Namespace = Root,
            Scope = Scope.WorkloadSelector,
            Action = Action.Deny,
            Rules = { new Rule { Clauses = { Clause(NoPrincipal()) } } },
        };
        Assert.Equal(expected, Run(Mesh("STRICT")).Pushed(StaticKey));
        Assert.Equal(expected, PeerAuthenticationConverter.StaticStrict(Root));
    }

    // Port-level cases: the documents, the names the workload lists, the converted resource (null: none pushed), and
    // whether plaintext is allowed on 8080 and on 9090.
    public static TheoryData<string, string[], Authorization?, bool, bool> PortLevel => new()
    {
        // STRICT workload, PERMISSIVE (or DISABLE) port: the STRICT deny carries the exception (STRICT branch of
        // convertedSelectorPeerAuthentications; convertPeerAuthentication: [notPrincipals] AND [notDestinationPorts]).
        { Wl("STRICT", "8080: {mode: PERMISSIVE}"), [ConvertedKey],
            Converted(new Rule { Clauses = { Clause(NoPrincipal()), Clause(new Match { NotDestinationPorts = { 8080 } }) } }), true, false },
        { Wl("STRICT", "8080: {mode: DISABLE}"), [ConvertedKey],
            Converted(new Rule { Clauses = { Clause(NoPrincipal()), Clause(new Match { NotDestinationPorts = { 8080 } }) } }), true, false },
        // Several exempt ports: one clause each, AND-ed.
        { Wl("STRICT", "9090: {mode: PERMISSIVE}, 8080: {mode: PERMISSIVE}"), [ConvertedKey],
            Converted(new Rule { Clauses = { Clause(NoPrincipal()), Clause(new Match { NotDestinationPorts = { 8080 } }), Clause(new Match { NotDestinationPorts = { 9090 } }) } }), true, true },
        // STRICT workload, STRICT port: just STRICT (convertPeerAuthentication returns nil, the static policy does it).
        { Wl("STRICT", "8080: {mode: STRICT}"), [StaticKey], null, false, false },
        // STRICT workload under a STRICT namespace: the namespace strictness is merged in (a second notPrincipals clause).
        { Ns("STRICT") + "|" + Wl("STRICT", "8080: {mode: PERMISSIVE}"), [ConvertedKey],
            Converted(new Rule { Clauses = { Clause(NoPrincipal()), Clause(new Match { NotDestinationPorts = { 8080 } }), Clause(NoPrincipal()) } }), true, false },
        // PERMISSIVE (or DISABLE) workload, STRICT port: one group per STRICT port.
        { Wl("PERMISSIVE", "9090: {mode: STRICT}"), [ConvertedKey],
            Converted(new Rule { Clauses = { Clause(new Match { NotPrincipals = { new StringMatch { Presence = new Presence() } }, DestinationPorts = { 9090 } }) } }), true, false },
        { Wl("DISABLE", "9090: {mode: STRICT}, 8080: {mode: STRICT}"), [ConvertedKey],
            Converted(
                new Rule { Clauses = { Clause(new Match { NotPrincipals = { new StringMatch { Presence = new Presence() } }, DestinationPorts = { 8080 } }) } },
                new Rule { Clauses = { Clause(new Match { NotPrincipals = { new StringMatch { Presence = new Presence() } }, DestinationPorts = { 9090 } }) } }), false, false },
        // PERMISSIVE workload, PERMISSIVE port: nothing to do.
        { Wl("PERMISSIVE", "8080: {mode: PERMISSIVE}"), [], null, true, true },
        // UNSET workload under a STRICT namespace / mesh, PERMISSIVE port: the inherited strictness is merged in.
        { Ns("STRICT") + "|" + Wl("UNSET", "8080: {mode: PERMISSIVE}"), [ConvertedKey],
            Converted(new Rule { Clauses = { Clause(new Match { NotDestinationPorts = { 8080 } }), Clause(NoPrincipal()) } }), true, false },
        { Mesh("STRICT") + "|" + Wl(null, "8080: {mode: PERMISSIVE}"), [ConvertedKey],
            Converted(new Rule { Clauses = { Clause(new Match { NotDestinationPorts = { 8080 } }), Clause(NoPrincipal()) } }), true, false },
        // ... and under a PERMISSIVE namespace that overrides a STRICT mesh, the port is already permissive.
        { Mesh("STRICT") + "|" + Ns("PERMISSIVE") + "|" + Wl(null, "8080: {mode: PERMISSIVE}"), [], null, true, true },
        // UNSET workload with a STRICT port under a PERMISSIVE (or no) parent: that port only.
        { Mesh("PERMISSIVE") + "|" + Wl(null, "9090: {mode: STRICT}"), [ConvertedKey],
            Converted(new Rule { Clauses = { Clause(new Match { NotPrincipals = { new StringMatch { Presence = new Presence() } }, DestinationPorts = { 9090 } }) } }), true, false },
        { Wl("UNSET", "9090: {mode: STRICT}"), [ConvertedKey],
            Converted(new Rule { Clauses = { Clause(new Match { NotPrincipals = { new StringMatch { Presence = new Presence() } }, DestinationPorts = { 9090 } }) } }), true, false },
        // UNSET workload with a STRICT port under a STRICT mesh: the static policy covers every port.
        { Mesh("STRICT") + "|" + Wl(null, "9090: {mode: STRICT}"), [StaticKey], null, false, false },
        // Istio as it is: under an inherited STRICT mode only PERMISSIVE ports make the workload list its converted
        // policy; a DISABLE port gets a converted resource that nothing names, and the static policy denies it.
        { Mesh("STRICT") + "|" + Wl(null, "8080: {mode: DISABLE}"), [StaticKey],
            Converted(new Rule { Clauses = { Clause(new Match { NotDestinationPorts = { 8080 } }), Clause(NoPrincipal()) } }), false, false },
        // Istio as it is: Go's precedence in convertPeerAuthentication skips a STRICT port of a PERMISSIVE workload when
        // the mesh is STRICT and the namespace has no policy; the workload names a resource that is never pushed.
        { Mesh("STRICT") + "|" + Wl("PERMISSIVE", "9090: {mode: STRICT}"), [ConvertedKey], null, true, true },
    };

    [Theory]
    [MemberData(nameof(PortLevel))]
    public void Port_level_mtls_is_converted_as_Istio_converts_it(string documents, string[] names, Authorization? converted, bool plaintext8080, bool plaintext9090)
    {
        var o = Run(documents.Split('|'));
        Assert.Equal(names, o.Echo.AuthorizationPolicies);
        Assert.Equal(converted, o.Pushed(ConvertedKey));
        Assert.Equal(plaintext8080, o.PlaintextAllowed(8080));
        Assert.Equal(plaintext9090, o.PlaintextAllowed(9090));
        Assert.True(o.MtlsAllowed(8080));
        Assert.True(o.MtlsAllowed(9090));
    }

    [Fact]
    public void Peer_authentication_names_follow_the_selector_authorization_policies()
    {
        var policy = "apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata: {name: zz-allow, namespace: shop}\nspec:\n  selector: {matchLabels: {app: echo}}\n  rules: [{}]\n";
        var o = Run(policy, Mesh("STRICT"));
        Assert.Equal(["shop/zz-allow", StaticKey], o.Echo.AuthorizationPolicies);
        // The ALLOW-all does not let plaintext past the STRICT deny.
        Assert.False(o.PlaintextAllowed(8080));
    }

    [Fact]
    public void Warnings_say_where_enforcement_differs_from_the_policy()
    {
        var set = Run(Mesh("STRICT", "a"), Mesh("PERMISSIVE", "b"), Wl("DISABLE"), Pa(Root, "sel", "  selector: {matchLabels: {app: x}}\n")).Set;
        var byKey = set.PeerAuthentications.ToDictionary(p => p.Key);
        Assert.Equal(["istio-system/a", "istio-system/b", "shop/echo", "istio-system/sel"], set.PeerAuthentications.Select(p => p.Key));
        Assert.Empty(byKey["istio-system/a"].Warnings);
        Assert.Equal(PeerAuthenticationLevel.Mesh, byKey["istio-system/a"].Level);
        Assert.Contains("ignored: istio-system/a is older", Assert.Single(byKey["istio-system/b"].Warnings), StringComparison.Ordinal);
        Assert.Contains("DISABLE is enforced as PERMISSIVE", Assert.Single(byKey["shop/echo"].Warnings), StringComparison.Ordinal);
        Assert.Equal(PeerAuthenticationLevel.Ignored, byKey["istio-system/sel"].Level);
        Assert.Contains("applies to no workload", Assert.Single(byKey["istio-system/sel"].Warnings), StringComparison.Ordinal);

        var quirk = Run(Mesh("STRICT"), Wl("PERMISSIVE", "9090: {mode: STRICT}")).Set.PeerAuthentications.Single(p => p.Key == "shop/echo");
        Assert.Contains("ztunnel does not enforce them", Assert.Single(quirk.Warnings), StringComparison.Ordinal);
    }

    [Fact]
    public void Debug_document_lists_peer_authentications()
    {
        var json = PolicyJson.Describe(Run(Mesh("STRICT"), Wl("STRICT", "8080: {mode: PERMISSIVE}")).Set, Root);
        using var doc = System.Text.Json.JsonDocument.Parse(json);
        var list = doc.RootElement.GetProperty("peerAuthentications");
        Assert.Equal(2, list.GetArrayLength());
        Assert.Equal("mesh", list[0].GetProperty("level").GetString());
        Assert.Equal("STRICT", list[0].GetProperty("mode").GetString());
        Assert.Equal(StaticKey, list[0].GetProperty("enforcedAs").GetString());
        Assert.Equal("workload", list[1].GetProperty("level").GetString());
        Assert.Equal("PERMISSIVE", list[1].GetProperty("portLevelMtls").GetProperty("8080").GetString());
        Assert.Equal(ConvertedKey, list[1].GetProperty("enforcedAs").GetString());
        Assert.Equal("DENY", list[1].GetProperty("ztunnel").GetProperty("action").GetString());
    }
}

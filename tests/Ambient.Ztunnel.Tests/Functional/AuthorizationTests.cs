using System.Net.Sockets;
using Ambient.Core.Protos.Security;
using Action = Ambient.Core.Protos.Security.Action;

namespace Ambient.Ztunnel.Tests.Functional;

/// <summary>
/// L4 authorization at the destination ztunnel, end to end through two in-process ztunnels: policies are installed
/// on node-2's state as an Authorization push would install them, and the client on node-1 connects through SOCKS5
/// -> HBONE to the echo pod on node-2.
/// </summary>
public sealed class AuthorizationTests : IAsyncLifetime
{
    private const string Ns = "authz";
    private const string ClientPrincipal = "cluster.local/ns/authz/sa/client";
    private const string Service = "echo.authz.svc.cluster.local";
    private MeshEnvironment _mesh = null!;

    public async ValueTask InitializeAsync() => _mesh = await MeshEnvironment.StartAsync(Ns);

    public async ValueTask DisposeAsync() => await _mesh.DisposeAsync();

    private static Authorization ByPrincipal(string name, Action action, string principal)
    {
        var policy = new Authorization { Name = name, Namespace = Ns, Scope = Scope.Namespace, Action = action };
        var clause = new Clause();
        clause.Matches.Add(new Match { Principals = { new StringMatch { Exact = principal } } });
        var rule = new Rule();
        rule.Clauses.Add(clause);
        policy.Rules.Add(rule);
        return policy;
    }

    private async Task RoundTripAsync()
    {
        using var socket = await _mesh.Socks5ConnectAsync("client", Service, 80);
        await socket.SendAsync("ping"u8.ToArray());
        var back = new byte[4];
        await MeshEnvironment.ReceiveExactlyAsync(socket, back, CancellationToken.None).WaitAsync(TimeSpan.FromSeconds(10));
        Assert.Equal("ping"u8.ToArray(), back);
    }

    [Fact]
    public async Task A_deny_by_principal_is_401_before_the_backend_sees_a_byte_and_named_in_the_access_log()
    {
        await RoundTripAsync();
        var echo = _mesh.Echo("echo-v1");
        int accepted = echo.Accepted;
        long received = echo.BytesReceived;

        _mesh.Nodes["node-2"].State.UpdateAuthorizations([ByPrincipal("deny-client", Action.Deny, ClientPrincipal)]);

        var refused = await Assert.ThrowsAsync<SocksRefusedException>(() => _mesh.Socks5ConnectAsync("client", Service, 80));
        Assert.Equal(2, refused.Code); // connection not allowed by ruleset: the CONNECT was answered 401
        Assert.Equal(accepted, echo.Accepted);
        Assert.Equal(received, echo.BytesReceived);
        await CrossNodeTests.AssertEventuallyAsync(async () => CrossNodeTests.Has(await _mesh.MetricsAsync("node-2"),
            "istio_tcp_connections_opened_total", "reporter=\"destination\"", "response_flags=\"DENY\"", $"source_principal=\"spiffe://{ClientPrincipal}\""));
        Assert.Contains(_mesh.Logs.Entries, e => e.Message.Contains("direction=inbound", StringComparison.Ordinal)
            && e.Message.Contains("flags=DENY", StringComparison.Ordinal)
            && e.Message.Contains("explicitly denied by: authz/deny-client", StringComparison.Ordinal));
    }

    [Fact]
    public async Task An_allow_for_another_principal_denies_and_an_update_lets_the_next_connection_through_without_restart()
    {
        var state = _mesh.Nodes["node-2"].State;
        state.UpdateAuthorizations([ByPrincipal("allow-other", Action.Allow, "cluster.local/ns/authz/sa/other")]);
        var refused = await Assert.ThrowsAsync<SocksRefusedException>(() => _mesh.Socks5ConnectAsync("client", Service, 80));
        Assert.Equal(2, refused.Code);
        Assert.Contains(_mesh.Logs.Entries, e => e.Message.Contains("direction=inbound", StringComparison.Ordinal)
            && e.Message.Contains("allow policies exist, but none allowed", StringComparison.Ordinal));

        state.UpdateAuthorizations([ByPrincipal("allow-other", Action.Allow, "cluster.local/ns/authz/sa/other"), ByPrincipal("allow-client", Action.Allow, ClientPrincipal)]);
        await RoundTripAsync();

        // Removing every policy is allow-all again.
        state.UpdateAuthorizations([ByPrincipal("deny-client", Action.Deny, ClientPrincipal)]);
        await Assert.ThrowsAsync<SocksRefusedException>(() => _mesh.Socks5ConnectAsync("client", Service, 80));
        state.UpdateAuthorizations([]);
        await RoundTripAsync();
    }

    [Fact]
    public async Task A_strict_peer_authentication_leaves_mtls_through_and_config_dump_shows_the_pushed_policies()
    {
        // The static STRICT policy Istio pushes for PeerAuthentication (DENY not_principals: [presence]), here in
        // namespace scope so it applies without a workload naming it: an HBONE peer always has a principal.
        var strict = new Authorization { Name = "istio_converted_static_strict", Namespace = Ns, Scope = Scope.Namespace, Action = Action.Deny };
        strict.Rules.Add(new Rule { Clauses = { new Clause { Matches = { new Match { NotPrincipals = { new StringMatch { Presence = new Presence() } } } } } } });
        _mesh.Nodes["node-2"].State.UpdateAuthorizations([strict]);

        await RoundTripAsync();

        using var dump = System.Text.Json.JsonDocument.Parse(await _mesh.ConfigDumpAsync("node-2"));
        var policy = Assert.Single(dump.RootElement.GetProperty("policies").EnumerateArray());
        Assert.Equal("istio_converted_static_strict", policy.GetProperty("name").GetString());
        Assert.Equal("DENY", policy.GetProperty("action").GetString());
        Assert.True(policy.GetProperty("rules")[0].GetProperty("clauses")[0].GetProperty("matches")[0].GetProperty("notPrincipals")[0].TryGetProperty("presence", out _));
    }
}

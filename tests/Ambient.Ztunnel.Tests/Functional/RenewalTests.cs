using System.Net.Sockets;
using System.Security.Cryptography.X509Certificates;
using System.Security.Cryptography;

namespace Ambient.Ztunnel.Tests.Functional;

/// <summary>Certificates renew at half-life while tunnels stay up (ztunnel issue, point 1).</summary>
public sealed class RenewalTests
{
    [Fact]
    public async Task Renewal_issues_a_new_certificate_without_dropping_an_established_tunnel()
    {
        // The CA back-dates NotBefore by 2 minutes, so a short certificate renews at half its remaining life.
        await using var mesh = await MeshEnvironment.StartAsync("renew", certificateTtl: TimeSpan.FromSeconds(8));
        const string echo = "spiffe://cluster.local/ns/renew/sa/echo";
        var certs = mesh.Nodes["node-2"].Certificates;
        Assert.True(certs.TryGetCertificate(echo, out var before, out _));

        using var tunnel = await mesh.Socks5ConnectAsync("client", "echo.renew.svc.cluster.local", 80);
        await RoundTripAsync(tunnel);

        var deadline = DateTime.UtcNow.AddSeconds(20);
        X509Certificate2? after = null;
        while (DateTime.UtcNow < deadline)
        {
            if (certs.TryGetCertificate(echo, out var now, out _) && now.SerialNumber != before.SerialNumber)
            {
                after = now;
                break;
            }
            await Task.Delay(100);
        }
        Assert.True(after is not null, "the echo identity's certificate was not renewed within 20 s");

        // The tunnel opened under the old certificate still carries data, and a new one works too.
        await RoundTripAsync(tunnel);
        using var fresh = await mesh.Socks5ConnectAsync("client", "echo.renew.svc.cluster.local", 80);
        await RoundTripAsync(fresh);
    }

    private static async Task RoundTripAsync(Socket socket)
    {
        var payload = RandomNumberGenerator.GetBytes(64 * 1024);
        var send = socket.SendAsync(payload);
        var back = new byte[payload.Length];
        await MeshEnvironment.ReceiveExactlyAsync(socket, back, CancellationToken.None).WaitAsync(TimeSpan.FromSeconds(20));
        await send;
        Assert.Equal(payload, back);
    }
}

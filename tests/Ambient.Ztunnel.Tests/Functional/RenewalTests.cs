using System.Net;
using System.Net.Security;
using System.Net.Sockets;
using System.Security.Authentication;
using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;
using Ambient.Core.Identity;

namespace Ambient.Ztunnel.Tests.Functional;

/// <summary>
/// Certificates renew at half-life, the renewed certificate is what the next handshake presents, and tunnels opened
/// under the old one keep working.
/// </summary>
public sealed class RenewalTests
{
    private const string Echo = "spiffe://cluster.local/ns/renew/sa/echo";
    private const string Client = "spiffe://cluster.local/ns/renew/sa/client";

    // The CA back-dates NotBefore by 2 minutes, so Istio's half-life instant, NotBefore + (NotAfter - NotBefore) / 2,
    // falls (140 s + 120 s) / 2 - 120 s = 10 s after issuance: near enough for a test, and far enough ahead that the
    // manager takes the plain half-life branch rather than its fallback for lifetimes already half gone.
    private static readonly TimeSpan Ttl = TimeSpan.FromSeconds(140);

    // Renewal is one CSR (P-256 key generation) and one CreateCertificate round trip to an in-process istiod. On a
    // loaded 2-core machine that has taken well under a second; 5 s bounds it without making a late renewal pass.
    private static readonly TimeSpan RenewalWork = TimeSpan.FromSeconds(5);

    // A delay may end a timer tick early, and X.509 validity times have whole-second resolution.
    private static readonly TimeSpan Early = TimeSpan.FromMilliseconds(250);

    [Fact]
    public async Task Renewal_at_half_life_is_presented_on_the_next_handshake_without_dropping_an_established_tunnel()
    {
        await using var mesh = await MeshEnvironment.StartAsync("renew", certificateTtl: Ttl);
        var certs = mesh.Nodes["node-2"].Certificates;
        var renewed = new TaskCompletionSource<DateTimeOffset>(TaskCreationOptions.RunContinuationsAsynchronously);
        certs.CertificateChanged += id =>
        {
            if (id.ToString() == Echo)
            {
                renewed.TrySetResult(DateTimeOffset.UtcNow);
            }
        };
        Assert.True(certs.TryGetWorkloadCertificate(Echo, out var before));
        var leaf = before.CertificateWithKey;
        var halfLife = new DateTimeOffset(leaf.NotBefore.ToUniversalTime())
            + ((leaf.NotAfter.ToUniversalTime() - leaf.NotBefore.ToUniversalTime()) / 2);
        Assert.True(halfLife > DateTimeOffset.UtcNow + TimeSpan.FromSeconds(2),
            $"test setup: the half-life instant {halfLife:O} must still be ahead (now {DateTimeOffset.UtcNow:O})");
        Assert.Equal(halfLife, before.RefreshAt);

        // What a peer sees today: a fresh handshake to the echo pod's 15008 gets the current certificate.
        var hbone = mesh.Nodes["node-2"].HboneListeners[mesh.PodAddress("echo-v1")];
        Assert.Equal(before.SerialNumber, await PresentedSerialAsync(mesh, hbone));

        using var tunnel = await mesh.Socks5ConnectAsync("client", "echo.renew.svc.cluster.local", 80);
        await RoundTripAsync(tunnel);

        // The first change after subscribing is the renewal: not before half-life, and promptly after it.
        var renewedAt = await renewed.Task.WaitAsync(halfLife - DateTimeOffset.UtcNow + RenewalWork + TimeSpan.FromSeconds(10));
        Assert.True(renewedAt >= halfLife - Early, $"renewed at {renewedAt:O}, before the half-life instant {halfLife:O}");
        Assert.True(renewedAt <= halfLife + RenewalWork, $"renewed at {renewedAt:O}, {(renewedAt - halfLife).TotalSeconds:F1} s after the half-life instant {halfLife:O}");
        Assert.True(certs.TryGetWorkloadCertificate(Echo, out var after));
        Assert.NotEqual(before.SerialNumber, after.SerialNumber);
        // The CA's own stamp agrees: it issued the new certificate (NotBefore = issuance - 2 min) at half-life.
        var issued = new DateTimeOffset(after.CertificateWithKey.NotBefore.ToUniversalTime()) + TimeSpan.FromMinutes(2);
        Assert.InRange(issued, halfLife - TimeSpan.FromSeconds(1) - Early, halfLife + RenewalWork);

        // A new handshake presents the renewed certificate, not the one cached for the listener before.
        Assert.Equal(after.SerialNumber, await PresentedSerialAsync(mesh, hbone));

        // The tunnel opened under the old certificate still carries data, and a new one works too.
        await RoundTripAsync(tunnel);
        using var fresh = await mesh.Socks5ConnectAsync("client", "echo.renew.svc.cluster.local", 80);
        await RoundTripAsync(fresh);
    }

    /// <summary>
    /// A new TCP connection and mutual TLS 1.3 handshake to a workload's HBONE listener, as the client pod's ztunnel
    /// makes it (its current certificate, ALPN h2, no SNI): the serial of the certificate the server presented.
    /// </summary>
    /// <summary>
    /// A fresh handshake to <paramref name="hbone"/> as node-1's <paramref name="client"/> (its current certificate),
    /// the server's certificate judged by node-1's current trust bundle; returns the serial it presented.
    /// </summary>
    internal static async Task<string> PresentedSerialAsync(MeshEnvironment mesh, IPEndPoint hbone, string client = Client, string echo = Echo)
    {
        var clientCerts = mesh.Nodes["node-1"].Certificates;
        Assert.True(clientCerts.TryGetCertificate(client, out var clientCert, out _));
        using var socket = new Socket(hbone.AddressFamily, SocketType.Stream, ProtocolType.Tcp);
        await socket.ConnectAsync(hbone);
        await using var ssl = new SslStream(new NetworkStream(socket, ownsSocket: false));
        string? presentedIdentity = null;
        string? validationError = null;
        await ssl.AuthenticateAsClientAsync(new SslClientAuthenticationOptions
        {
            TargetHost = "",
            EnabledSslProtocols = SslProtocols.Tls13,
            ApplicationProtocols = [SslApplicationProtocol.Http2],
            ClientCertificates = [clientCert],
            CertificateRevocationCheckMode = X509RevocationMode.NoCheck,
            RemoteCertificateValidationCallback = (_, cert, _, _) =>
            {
                using var presented = X509CertificateLoader.LoadCertificate(cert!.GetRawCertData());
                var ok = clientCerts.Trust.ValidateChain(presented, null, out SpiffeId id, out var error);
                presentedIdentity = ok ? id.ToString() : null;
                validationError = error;
                return ok;
            },
        }).WaitAsync(TimeSpan.FromSeconds(20));
        Assert.True(presentedIdentity == echo, $"the server presented {presentedIdentity ?? "an invalid certificate"} ({validationError})");
        Assert.Equal(SslApplicationProtocol.Http2, ssl.NegotiatedApplicationProtocol);
        using var remote = X509CertificateLoader.LoadCertificate(ssl.RemoteCertificate!.GetRawCertData());
        return remote.SerialNumber;
    }

    internal static async Task RoundTripAsync(Socket socket)
    {
        var payload = RandomNumberGenerator.GetBytes(64 * 1024);
        var send = socket.SendAsync(payload);
        var back = new byte[payload.Length];
        await MeshEnvironment.ReceiveExactlyAsync(socket, back, CancellationToken.None).WaitAsync(TimeSpan.FromSeconds(20));
        await send;
        Assert.Equal(payload, back);
    }
}

using System.Net;
using System.Net.Sockets;
using System.Text;
using Ambient.Hbone.Server;
using Ambient.TestCommon;

namespace Ambient.Ztunnel.Tests.Inbound;

/// <summary>Handshake policy, long-lived tunnels, multiplexing, certificate rotation and listener churn.</summary>
public class InboundTlsAndLifecycleTests
{
    [Fact]
    public async Task No_Client_Certificate_Is_Refused_And_Reported()
    {
        await using var env = await InboundTestEnvironment.StartAsync();

        var r = await env.ConnectAsync(env.EchoAuthority, 10, noCert: true);

        Assert.Null(r.Status);
        Assert.NotNull(r.Error);
        var failure = await WaitForTlsFailureAsync(env);
        Assert.Equal("no client certificate", failure.Reason);
        Assert.Equal(IPAddress.Loopback, failure.Remote.Address);
        Assert.Equal(0, env.Echo.Accepted);
        await AssertStillServesAsync(env);
    }

    [Fact]
    public async Task Client_Certificate_From_A_Foreign_Ca_Is_Refused()
    {
        await using var env = await InboundTestEnvironment.StartAsync();
        using var foreign = TestCertificates.CreateRoot("foreign-root");
        using var cert = TestCertificates.IssueWorkload(foreign, TestCertificates.Spiffe("client-ns", "client"));
        var files = TestCertificates.WritePem(env.Dir, "foreign", cert);

        var r = await env.ConnectAsync(env.EchoAuthority, 10, cert: files);

        Assert.Null(r.Status);
        Assert.NotNull(r.Error);
        var failure = await WaitForTlsFailureAsync(env);
        Assert.StartsWith("chain:", failure.Reason, StringComparison.Ordinal);
        Assert.Equal(0, env.Echo.Accepted);
        await AssertStillServesAsync(env);
    }

    [Fact]
    public async Task Expired_Client_Certificate_Is_Refused()
    {
        await using var env = await InboundTestEnvironment.StartAsync();
        var now = DateTimeOffset.UtcNow;
        using var cert = TestCertificates.IssueWorkload(env.Ca, TestCertificates.Spiffe("client-ns", "client"), now.AddDays(-2), now.AddDays(-1));
        var files = TestCertificates.WritePem(env.Dir, "expired", cert);

        var r = await env.ConnectAsync(env.EchoAuthority, 10, cert: files);

        Assert.Null(r.Status);
        var failure = await WaitForTlsFailureAsync(env);
        Assert.Contains("NotTimeValid", failure.Reason, StringComparison.Ordinal);
        Assert.Equal(0, env.Echo.Accepted);
    }

    [Fact]
    public async Task Plaintext_Bytes_Close_That_Connection_Only()
    {
        await using var env = await InboundTestEnvironment.StartAsync();

        using (var plain = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp))
        {
            await plain.ConnectAsync(env.Listener, TestContext.Current.CancellationToken);
            await plain.SendAsync(Encoding.ASCII.GetBytes("CONNECT 127.0.0.1:80 HTTP/1.1\r\nHost: x\r\n\r\n"), SocketFlags.None);
            var buffer = new byte[4096];
            using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(15));
            // The server must close on us (EOF or reset); it must not hang or answer in plaintext HTTP.
            int total = 0;
            try
            {
                int n;
                while ((n = await plain.ReceiveAsync(buffer, SocketFlags.None, timeout.Token)) > 0)
                    total += n;
            }
            catch (SocketException)
            {
            }
            Assert.False(timeout.IsCancellationRequested, "server did not close the plaintext connection");
        }

        var failure = await WaitForTlsFailureAsync(env);
        Assert.Contains("handshake failed", failure.Reason, StringComparison.Ordinal);
        await AssertStillServesAsync(env);
    }

    [Fact]
    public async Task Idle_Tunnel_Survives_Seven_Seconds()
    {
        // No body-rate or idle rule may cut a silent tunnel (Kestrel's MinRequestBodyDataRate did so after ~5 s).
        await using var env = await InboundTestEnvironment.StartAsync();

        var r = await env.ConnectAsync(env.EchoAuthority, 1000, extra: ["--idle", "7"]);

        Assert.Null(r.Error);
        Assert.Equal(200, r.Status);
        Assert.False(r.Reset);
        Assert.Equal(1000, r.EchoedLen);
        Assert.Equal(InboundTestEnvironment.PatternSha256(1000), r.EchoedSha256);
    }

    [Fact]
    public async Task Two_Concurrent_Tunnels_Share_One_Tls_Connection()
    {
        await using var env = await InboundTestEnvironment.StartAsync();
        const int len = 256 * 1024;

        var r = await env.ConnectAsync(env.EchoAuthority, len, extra: ["--streams", "2"]);

        Assert.Null(r.Error);
        Assert.Equal(2, r.Streams.Count);
        foreach (var s in r.Streams)
        {
            Assert.Equal(200, s.Status);
            Assert.Equal(len, s.EchoedLen);
            Assert.Equal(InboundTestEnvironment.PatternSha256(len), s.EchoedSha256);
        }
        var closed = (await HboneInboundServerTests.WaitForAsync(env, o => o.Closed.Count == 2 ? o.Closed.ToList() : null))!;
        // Same TLS connection: same source port for both streams.
        Assert.Equal(closed[0].Info.Source, closed[1].Info.Source);
        Assert.Single(env.Logs.Entries, e => e.EventId.Name == "InboundConnectionEstablished");
    }

    [Fact]
    public async Task Rotated_Certificate_Is_Presented_On_The_Next_Handshake()
    {
        await using var env = await InboundTestEnvironment.StartAsync();

        var before = await env.ConnectAsync(env.EchoAuthority, 10);
        Assert.Equal(200, before.Status);
        Assert.Equal(Serial(env.ServerCert), Normalize(before.PeerSerial));

        using var renewed = TestCertificates.IssueWorkload(env.Ca, TestCertificates.Spiffe("server-ns", "server"));
        env.Identity.SetServerCertificate(InboundTestEnvironment.Workload, renewed);
        var after = await env.ConnectAsync(env.EchoAuthority, 10);

        Assert.Equal(200, after.Status);
        Assert.Equal(Serial(renewed), Normalize(after.PeerSerial));
        Assert.NotEqual(before.PeerSerial, after.PeerSerial);
    }

    [Fact]
    public async Task Each_Listener_Presents_Its_Workloads_Cert_And_Churn_Leaves_Other_Tunnels_Alone()
    {
        await using var env = await InboundTestEnvironment.StartAsync();
        var second = IPAddress.Parse("127.0.0.2");
        var third = IPAddress.Parse("127.0.0.3");
        using var secondCert = TestCertificates.IssueWorkload(env.Ca, TestCertificates.Spiffe("other-ns", "other"));
        env.Identity.SetServerCertificate(second, secondCert);
        env.Identity.SetServerCertificate(third, secondCert);
        var secondListener = env.Server.AddListener(second);
        env.Targets.Serve(second, env.Echo.EndPoint);

        // A tunnel on the first workload stays open (idle) while other workloads come and go.
        var longLived = env.ConnectAsync(env.EchoAuthority, 4096, extra: ["--idle", "3"]);
        await Task.Delay(1000, TestContext.Current.CancellationToken);
        var thirdListener = env.Server.AddListener(third);
        Assert.True(env.Server.RemoveListener(third));
        Assert.False(env.Server.RemoveListener(third));

        var viaSecond = await env.ConnectAsync(env.EchoAuthority, 10, listener: secondListener);
        Assert.Equal(200, viaSecond.Status);
        Assert.Equal(Serial(secondCert), Normalize(viaSecond.PeerSerial));

        var first = await longLived;
        Assert.Equal(200, first.Status);
        Assert.Equal(Serial(env.ServerCert), Normalize(first.PeerSerial));
        Assert.Equal(InboundTestEnvironment.PatternSha256(4096), first.EchoedSha256);

        // The removed listener no longer accepts.
        Assert.Equal(2, env.Server.Listeners.Count);
        using var probe = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
        await Assert.ThrowsAnyAsync<SocketException>(async () =>
            await probe.ConnectAsync(thirdListener, TestContext.Current.CancellationToken));
    }

    [Fact]
    public async Task Removing_A_Listener_Cuts_Its_Own_Tunnels()
    {
        await using var env = await InboundTestEnvironment.StartAsync();

        var tunnel = env.ConnectAsync(env.EchoAuthority, 10, extra: ["--idle", "30"]);
        await HboneInboundServerTests.WaitForAsync(env, o => o.Opened.Count == 1 ? o.Opened[0] : null);
        Assert.True(env.Server.RemoveListener(InboundTestEnvironment.Workload));

        var r = await tunnel;
        Assert.Equal(200, r.Status);
        Assert.NotNull(r.Error); // connection closed by server long before the 30 s idle ends
    }

    private static string Serial(System.Security.Cryptography.X509Certificates.X509Certificate2 cert) => Normalize(cert.SerialNumber)!;

    private static string? Normalize(string? hex) => hex?.TrimStart('0').ToUpperInvariant();

    private static Task<(IPEndPoint Remote, string Reason)> WaitForTlsFailureAsync(InboundTestEnvironment env) =>
        HboneInboundServerTests.WaitForAsync(env, o => o.TlsFailures.Count > 0 ? o.TlsFailures[0] : default);

    private static async Task AssertStillServesAsync(InboundTestEnvironment env)
    {
        var r = await env.ConnectAsync(env.EchoAuthority, 1000);
        Assert.Equal(200, r.Status);
        Assert.Equal(InboundTestEnvironment.PatternSha256(1000), r.EchoedSha256);
    }
}

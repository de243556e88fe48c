using System.Net.Security;
using System.Net.Sockets;
using System.Security.Authentication;
using System.Security.Cryptography.X509Certificates;
using Ambient.TestCommon;
using Ambient.Ztunnel.Memory;
using Ambient.Ztunnel.Tests.Inbound;
using Microsoft.Extensions.Logging.Abstractions;

namespace Ambient.Ztunnel.Tests.Memory;

/// <summary>
/// Memory goes back to the OS once a burst of connections is over (2,000 idle HBONE connections left the AOT
/// ztunnel at 3.7x its RSS before them), and only then: steady churn never pays for a full GC.
/// </summary>
public sealed class ConnectionMemoryTrimmerTests
{
    private static readonly TimeSpan Quiet = TimeSpan.FromSeconds(2);

    private sealed class Harness
    {
        public ManualTimeProvider Time { get; } = new();
        public int Releases;
        public ConnectionMemoryTrimmer Trimmer { get; }

        public Harness(int minimumDrop = 10) =>
            Trimmer = new ConnectionMemoryTrimmer(NullLogger.Instance, Time, () => Releases++, minimumDrop, Quiet);

        public void Open(int n)
        {
            for (var i = 0; i < n; i++)
            {
                Trimmer.Opened();
            }
        }

        public void Close(int n)
        {
            for (var i = 0; i < n; i++)
            {
                Trimmer.Closed();
            }
        }
    }

    [Fact]
    public void Releases_once_when_a_burst_has_closed_and_the_closes_have_stopped()
    {
        var h = new Harness();
        h.Open(20);
        h.Close(20);
        h.Time.Advance(Quiet - TimeSpan.FromMilliseconds(1));
        Assert.Equal(0, h.Releases);
        h.Time.Advance(TimeSpan.FromMilliseconds(1));
        Assert.Equal(1, h.Releases);
        Assert.Equal(1, h.Trimmer.Trims);
        h.Time.Advance(TimeSpan.FromMinutes(10));
        Assert.Equal(1, h.Releases);
    }

    [Fact]
    public void Every_close_restarts_the_quiet_period()
    {
        var h = new Harness();
        h.Open(40);
        h.Close(20); // down by 20 (>= 10) to half the peak: a burst is over
        h.Time.Advance(Quiet - TimeSpan.FromMilliseconds(500));
        h.Close(5);
        h.Time.Advance(Quiet - TimeSpan.FromMilliseconds(1));
        Assert.Equal(0, h.Releases);
        h.Time.Advance(TimeSpan.FromMilliseconds(1));
        Assert.Equal(1, h.Releases);
    }

    [Fact]
    public void Steady_churn_at_any_level_never_releases()
    {
        var h = new Harness();
        h.Open(30);
        for (var i = 0; i < 1000; i++)
        {
            h.Close(1);
            h.Open(1);
            h.Time.Advance(TimeSpan.FromMilliseconds(10));
        }
        // A small dip (fewer than the minimum drop) is churn too.
        h.Close(9);
        h.Time.Advance(TimeSpan.FromMinutes(1));
        Assert.Equal(0, h.Releases);
    }

    [Fact]
    public void Connections_coming_back_before_the_quiet_period_ends_cancel_the_release()
    {
        var h = new Harness();
        h.Open(20);
        h.Close(20);
        h.Open(15); // above half the peak again
        h.Time.Advance(TimeSpan.FromMinutes(1));
        Assert.Equal(0, h.Releases);
    }

    [Fact]
    public void The_next_burst_is_measured_from_the_level_after_the_release()
    {
        var h = new Harness();
        h.Open(100);
        h.Close(95);
        h.Time.Advance(Quiet);
        Assert.Equal(1, h.Releases);
        // 5 left; a burst of 12 more and back down to 5 is a drop of 12 from a peak of 17: released again.
        h.Open(12);
        h.Close(12);
        h.Time.Advance(Quiet);
        Assert.Equal(2, h.Releases);
    }

    [Fact]
    public async Task The_hbone_server_reports_real_connections_so_a_closed_burst_releases_memory()
    {
        var released = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        using var trimmer = new ConnectionMemoryTrimmer(NullLogger.Instance, TimeProvider.System, () => released.TrySetResult(),
            minimumDrop: 8, quietPeriod: TimeSpan.FromMilliseconds(200));
        await using var env = await InboundTestEnvironment.StartAsync(trimmer: trimmer);
        var clients = new List<SslStream>();
        for (var i = 0; i < 12; i++)
        {
            clients.Add(await HandshakeAsync(env));
        }
        Assert.False(released.Task.IsCompleted, "memory was released while every connection was still open");
        foreach (var c in clients)
        {
            await c.DisposeAsync();
        }
        await released.Task.WaitAsync(TimeSpan.FromSeconds(30));
        Assert.Equal(1, trimmer.Trims);
    }

    [Fact]
    public void The_default_release_runs_on_this_platform()
    {
        // A full aggressive GC and malloc_trim (or nothing native where glibc is absent): must not throw.
        ConnectionMemoryTrimmer.ReleaseMemory();
    }

    /// <summary>Mutual TLS 1.3 with ALPN h2 and the HTTP/2 client preface: an idle HBONE connection as a pool holds it.</summary>
    private static async Task<SslStream> HandshakeAsync(InboundTestEnvironment env)
    {
        var socket = new Socket(env.Listener.AddressFamily, SocketType.Stream, ProtocolType.Tcp);
        await socket.ConnectAsync(env.Listener);
        var ssl = new SslStream(new NetworkStream(socket, ownsSocket: true));
        await ssl.AuthenticateAsClientAsync(new SslClientAuthenticationOptions
        {
            TargetHost = "",
            EnabledSslProtocols = SslProtocols.Tls13,
            ApplicationProtocols = [SslApplicationProtocol.Http2],
            ClientCertificates = [env.ClientCert],
            CertificateRevocationCheckMode = X509RevocationMode.NoCheck,
            RemoteCertificateValidationCallback = (_, _, _, _) => true, // the server's identity is not under test here
        }).WaitAsync(TimeSpan.FromSeconds(20));
        await ssl.WriteAsync("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"u8.ToArray());
        await ssl.WriteAsync(new byte[] { 0, 0, 0, 0x4, 0, 0, 0, 0, 0 });
        return ssl;
    }
}

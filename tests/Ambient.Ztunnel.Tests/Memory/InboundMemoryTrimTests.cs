using System.Net.Security;
using System.Net.Sockets;
using System.Security.Authentication;
using System.Security.Cryptography.X509Certificates;
using Ambient.Core.Memory;
using Ambient.Ztunnel.Tests.Inbound;
using Microsoft.Extensions.Logging.Abstractions;

namespace Ambient.Ztunnel.Tests.Memory;

/// <summary>The HBONE server tells the memory trimmer about every real connection, so a closed burst releases memory.</summary>
public sealed class InboundMemoryTrimTests
{
    [Fact]
    public async Task The_hbone_server_reports_real_connections_so_a_closed_burst_releases_memory()
    {
        var released = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        using var trimmer = new MemoryTrimmer(NullLogger.Instance, "connections", minimumDrop: 8,
            quietPeriod: TimeSpan.FromMilliseconds(200), release: () => released.TrySetResult());
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

using System.Net.Security;
using System.Net.Sockets;
using System.Security.Authentication;
using System.Security.Cryptography.X509Certificates;
using Ambient.LoadGen.Client;

namespace Ambient.LoadGen.Memory;

/// <summary>
/// One idle HBONE connection as a real client holds it in a pool: TCP, mutual TLS 1.3 with ALPN h2 and a workload
/// certificate, the HTTP/2 client preface and SETTINGS, then nothing but answers to the server's SETTINGS and PING
/// (so its keepalive does not cut us), until closed with a TLS close_notify and a FIN.
/// </summary>
internal sealed class IdleHboneClient : IAsyncDisposable
{
    // RFC 9113 3.4: the client connection preface, then an empty SETTINGS frame (length 0, type 0x4, flags 0, stream 0).
    private static readonly byte[] PrefaceAndSettings =
    [
        .. "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"u8,
        0, 0, 0, 0x4, 0, 0, 0, 0, 0,
    ];

    // SETTINGS with the ACK flag (0x1), no payload.
    private static readonly byte[] SettingsAck = [0, 0, 0, 0x4, 0x1, 0, 0, 0, 0];

    private readonly Socket _socket;
    private readonly SslStream _ssl;
    private readonly Task _reader;
    private volatile bool _closing;

    private IdleHboneClient(Socket socket, SslStream ssl)
    {
        _socket = socket;
        _ssl = ssl;
        _reader = Task.Run(ReadLoopAsync);
    }

    /// <summary>Set when the server closed the connection (or sent GOAWAY) while we held it.</summary>
    public bool ClosedByServer { get; private set; }

    public static async Task<IdleHboneClient> OpenAsync(Target target, X509Certificate2 clientCertificate, X509Certificate2 meshRoot, CancellationToken ct)
    {
        var socket = await target.ConnectAsync(ct).ConfigureAwait(false);
        var ssl = new SslStream(new NetworkStream(socket, ownsSocket: false), leaveInnerStreamOpen: false);
        try
        {
            await ssl.AuthenticateAsClientAsync(new SslClientAuthenticationOptions
            {
                // HBONE sends no SNI; SslStream sends none for an empty target host.
                TargetHost = "",
                EnabledSslProtocols = SslProtocols.Tls13,
                ApplicationProtocols = [SslApplicationProtocol.Http2],
                ClientCertificates = [clientCertificate],
                CertificateRevocationCheckMode = X509RevocationMode.NoCheck,
                RemoteCertificateValidationCallback = (_, cert, _, _) => ChainsTo(cert, meshRoot),
            }, ct).ConfigureAwait(false);
            if (ssl.NegotiatedApplicationProtocol != SslApplicationProtocol.Http2)
            {
                throw new IOException("the server did not negotiate ALPN h2");
            }
            await ssl.WriteAsync(PrefaceAndSettings, ct).ConfigureAwait(false);
            await ssl.FlushAsync(ct).ConfigureAwait(false);
            return new IdleHboneClient(socket, ssl);
        }
        catch
        {
            await ssl.DisposeAsync().ConfigureAwait(false);
            socket.Dispose();
            throw;
        }
    }

    /// <summary>The server's certificate is a SPIFFE workload certificate (no DNS name): judge it by the mesh root alone.</summary>
    private static bool ChainsTo(X509Certificate? certificate, X509Certificate2 root)
    {
        if (certificate is null)
        {
            return false;
        }
        using var chain = new X509Chain();
        chain.ChainPolicy.TrustMode = X509ChainTrustMode.CustomRootTrust;
        chain.ChainPolicy.CustomTrustStore.Add(root);
        chain.ChainPolicy.RevocationMode = X509RevocationMode.NoCheck;
        using var leaf = X509CertificateLoader.LoadCertificate(certificate.GetRawCertData());
        return chain.Build(leaf);
    }

    /// <summary>Reads frame headers and answers SETTINGS and PING; every other frame's payload is skipped.</summary>
    private async Task ReadLoopAsync()
    {
        var header = new byte[9];
        var payload = new byte[64];
        try
        {
            while (true)
            {
                await _ssl.ReadExactlyAsync(header).ConfigureAwait(false);
                var length = (header[0] << 16) | (header[1] << 8) | header[2];
                var type = header[3];
                var flags = header[4];
                var isAck = (flags & 0x1) != 0;
                if (type == 0x6 && length == 8)
                {
                    // PING: echo the 8 opaque bytes with the ACK flag (RFC 9113 6.7).
                    await _ssl.ReadExactlyAsync(payload.AsMemory(0, 8)).ConfigureAwait(false);
                    if (!isAck)
                    {
                        var ack = new byte[17];
                        ack[2] = 8; ack[3] = 0x6; ack[4] = 0x1;
                        payload.AsSpan(0, 8).CopyTo(ack.AsSpan(9));
                        await _ssl.WriteAsync(ack).ConfigureAwait(false);
                    }
                    continue;
                }
                while (length > 0)
                {
                    var n = Math.Min(length, payload.Length);
                    await _ssl.ReadExactlyAsync(payload.AsMemory(0, n)).ConfigureAwait(false);
                    length -= n;
                }
                if (type == 0x4 && !isAck)
                {
                    await _ssl.WriteAsync(SettingsAck).ConfigureAwait(false);
                }
                else if (type == 0x7)
                {
                    ClosedByServer = true;
                }
            }
        }
        catch (Exception)
        {
            // Any end of the connection (EOF, reset, a TLS error, our own dispose): the loop is over.
            ClosedByServer |= !_closing;
        }
    }

    /// <summary>TLS close_notify, FIN, then the socket is released.</summary>
    public async ValueTask DisposeAsync()
    {
        _closing = true;
        try
        {
            await _ssl.ShutdownAsync().ConfigureAwait(false);
        }
        catch (Exception)
        {
            // Best effort: the server may already be gone, or OpenSSL may refuse a close_notify while it still
            // processes post-handshake messages ("shutdown while in init"); the FIN below closes regardless.
        }
        try
        {
            _socket.Shutdown(SocketShutdown.Both);
        }
        catch (SocketException)
        {
        }
        await _ssl.DisposeAsync().ConfigureAwait(false);
        _socket.Dispose();
        await _reader.ConfigureAwait(false);
    }
}

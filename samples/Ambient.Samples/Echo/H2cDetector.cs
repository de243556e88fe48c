using System.Buffers;
using System.Security.Cryptography.X509Certificates;
using Microsoft.AspNetCore.Connections;
using Microsoft.AspNetCore.Server.Kestrel.Core.Features;
using Microsoft.AspNetCore.Http.Features;

namespace Ambient.Samples.Echo;

/// <summary>
/// Lets one cleartext port serve both HTTP/1.1 and h2c with prior knowledge. Kestrel picks the protocol of a
/// cleartext Http1AndHttp2 endpoint without looking at the bytes (always HTTP/1.1), but picks HTTP/2 when a TLS
/// feature reports ALPN "h2". So this connection middleware peeks (examines without consuming) the first 24 bytes
/// and, when they are the HTTP/2 connection preface (RFC 9113 section 3.4), marks the connection as negotiated h2.
/// No handshake feature is added, so Kestrel's TLS version checks treat it as the cleartext connection it is.
/// The server sets AllowAlternateSchemes so the request's :scheme http is accepted on this "TLS" connection.
/// </summary>
internal static class H2cDetector
{
    // "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
    private static ReadOnlySpan<byte> Preface => "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"u8;

    public static async Task DetectAsync(ConnectionContext connection, Func<Task> next)
    {
        var input = connection.Transport.Input;
        while (true)
        {
            var result = await input.ReadAsync(connection.ConnectionClosed).ConfigureAwait(false);
            var buffer = result.Buffer;
            var decided = buffer.Length >= Preface.Length || !StartsLikePreface(buffer) || result.IsCompleted;
            if (decided)
            {
                var isH2 = buffer.Length >= Preface.Length && StartsLikePreface(buffer);
                input.AdvanceTo(buffer.Start); // consume nothing: Kestrel reads the same bytes again
                if (isH2)
                {
                    var negotiated = new NegotiatedH2();
                    connection.Features.Set<ITlsApplicationProtocolFeature>(negotiated);
                    connection.Features.Set<ITlsConnectionFeature>(negotiated);
                }
                break;
            }
            input.AdvanceTo(buffer.Start, buffer.End); // examined all; wait for more
        }
        await next().ConfigureAwait(false);
    }

    private static bool StartsLikePreface(ReadOnlySequence<byte> buffer)
    {
        var length = (int)Math.Min(buffer.Length, Preface.Length);
        Span<byte> head = stackalloc byte[24];
        buffer.Slice(0, length).CopyTo(head);
        return head[..length].SequenceEqual(Preface[..length]);
    }

    private sealed class NegotiatedH2 : ITlsApplicationProtocolFeature, ITlsConnectionFeature
    {
        public ReadOnlyMemory<byte> ApplicationProtocol => "h2"u8.ToArray();
        public X509Certificate2? ClientCertificate { get => null; set { } }
        public Task<X509Certificate2?> GetClientCertificateAsync(CancellationToken cancellationToken) => Task.FromResult<X509Certificate2?>(null);
    }
}

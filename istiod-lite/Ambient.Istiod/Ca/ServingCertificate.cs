using System.Net.Security;
using System.Security.Authentication;

namespace Ambient.Istiod.Ca;

/// <summary>
/// istiod's own TLS settings on 15012, re-issued whenever the CA's signer changes: after a root rotation's second
/// phase a proxy that reconnects must find a certificate under the new root, since the old one leaves its bundle in
/// the third. Established connections keep the certificate they were made with.
/// </summary>
internal sealed class ServingCertificate(CertificateAuthority ca)
{
    private static readonly List<SslApplicationProtocol> H2Only = [SslApplicationProtocol.Http2];
    private readonly Lock _lock = new();
    private (long Generation, SslServerAuthenticationOptions Options)? _current;

    public SslServerAuthenticationOptions Current()
    {
        var material = ca.Material;
        var cached = _current;
        if (cached is { } c && c.Generation == material.SignerGeneration)
        {
            return c.Options;
        }
        lock (_lock)
        {
            if (_current is { } again && again.Generation == material.SignerGeneration)
            {
                return again.Options;
            }
            // Intermediates follow the leaf so that clients holding only the root can verify a plug-in CA's leaf.
            var certificate = ca.IssueServerCertificate();
            var options = new SslServerAuthenticationOptions
            {
                ServerCertificateContext = SslStreamCertificateContext.Create(certificate, material.Signer.LoadIntermediates(), offline: true),
                EnabledSslProtocols = SslProtocols.Tls12 | SslProtocols.Tls13,
                ApplicationProtocols = H2Only,
            };
            _current = (material.SignerGeneration, options);
            return options;
        }
    }
}

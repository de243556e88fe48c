using System.Net;
using System.Net.Security;
using System.Net.Sockets;
using System.Security.Authentication;
using System.Security.Cryptography.X509Certificates;
using Microsoft.Extensions.Logging;

namespace Ambient.Hbone.Server;

/// <summary>A built <see cref="SslStreamCertificateContext"/> for one certificate, reused until the cert changes.</summary>
internal sealed record CertificateContextCache(X509Certificate2 Certificate, SslStreamCertificateContext Context);

/// <summary>
/// Per-connection state, created at accept time. It carries the listener (which workload's cert to present), the
/// verified peer identity (read by the CONNECT handler), and whether a TLS failure was already reported with a
/// precise reason.
/// </summary>
internal sealed class InboundConnectionState
{
    private readonly InboundTls _tls;

    public InboundConnectionState(InboundTls tls, WorkloadListener listener, IPEndPoint remote)
    {
        _tls = tls;
        Listener = listener;
        Remote = remote;
    }

    public WorkloadListener Listener { get; }

    public IPEndPoint Remote { get; }

    /// <summary>SPIFFE identity of the verified client; set during the handshake.</summary>
    public string? PeerIdentity { get; set; }

    public bool FailureReported { get; set; }

    // Bound once per connection (not per call) and handed to SslStream.
    public bool ValidateClient(object sender, X509Certificate? certificate, X509Chain? chain, SslPolicyErrors errors) =>
        _tls.ValidateClient(this, certificate, chain);
}

/// <summary>
/// TLS policy of every workload listener: TLS 1.3 only, ALPN h2 only, no SNI, the listener's workload cert chosen
/// per handshake (so renewals apply to the next handshake), client certificate required and judged by
/// <see cref="IInboundIdentity"/>. Failures are reported through <see cref="IInboundObserver.TlsFailure"/> and end
/// only that connection.
/// </summary>
internal sealed class InboundTls
{
    private static readonly List<SslApplicationProtocol> H2Only = [SslApplicationProtocol.Http2];

    private readonly IInboundIdentity _identity;
    private readonly IInboundObserver _observer;
    private readonly ILogger _logger;

    public InboundTls(IInboundIdentity identity, IInboundObserver observer, ILogger logger)
    {
        _identity = identity;
        _observer = observer;
        _logger = logger;
    }

    public InboundConnectionState CreateState(WorkloadListener listener, Socket socket) =>
        new(this, listener, socket.RemoteEndPoint as IPEndPoint ?? new IPEndPoint(IPAddress.None, 0));

    /// <summary>The handshake settings for one accepted connection; throws (and reports) when the workload has no certificate yet.</summary>
    public SslServerAuthenticationOptions ServerOptions(InboundConnectionState state)
    {
        var listener = state.Listener;
        var cert = _identity.GetServerCertificate(listener.Address, out var chain);
        if (cert is null)
        {
            Fail(state, $"no certificate for workload {listener.Address} yet");
            throw new AuthenticationException($"no certificate for workload {listener.Address} yet");
        }

        var cached = listener.Certificate;
        if (cached is null || !ReferenceEquals(cached.Certificate, cert))
        {
            // Building the context walks the chain once; redo it only when the identity hands out another cert.
            cached = new CertificateContextCache(cert, SslStreamCertificateContext.Create(cert, chain, offline: true));
            listener.Certificate = cached;
        }

        return new SslServerAuthenticationOptions
        {
            ServerCertificateContext = cached.Context,
            EnabledSslProtocols = SslProtocols.Tls13,
            ApplicationProtocols = H2Only,
            ClientCertificateRequired = true,
            CertificateRevocationCheckMode = X509RevocationMode.NoCheck,
            AllowRenegotiation = false,
            RemoteCertificateValidationCallback = state.ValidateClient,
        };
    }

    internal bool ValidateClient(InboundConnectionState state, X509Certificate? certificate, X509Chain? chain)
    {
        if (certificate is null)
        {
            Fail(state, "no client certificate");
            return false;
        }

        // SPIFFE certs carry no DNS name, so the SslPolicyErrors SslStream computed (name mismatch, untrusted
        // root against the system store) say nothing here: the mesh trust decision is the identity's alone.
        var cert2 = certificate as X509Certificate2 ?? X509CertificateLoader.LoadCertificate(certificate.GetRawCertData());
        string? identity;
        string? reason;
        try
        {
            identity = _identity.ValidateClient(cert2, chain, out reason);
        }
        catch (Exception ex)
        {
            identity = null;
            reason = "client certificate validation error: " + ex.Message;
        }

        if (identity is null)
        {
            Fail(state, reason ?? "client certificate rejected");
            return false;
        }

        state.PeerIdentity = identity;
        return true;
    }

    /// <summary>Called when a handshake ended without success; reports a generic reason unless a precise one was given.</summary>
    public void HandshakeFailed(InboundConnectionState state) =>
        Fail(state, "TLS handshake failed (not TLS 1.3 with ALPN h2, aborted, or timed out)");

    public void Fail(InboundConnectionState state, string reason)
    {
        if (state.FailureReported)
            return;
        state.FailureReported = true;
        InboundLog.TlsFailure(_logger, state.Remote, state.Listener.Address, reason);
        try
        {
            _observer.TlsFailure(state.Remote, reason);
        }
        catch (Exception ex)
        {
            InboundLog.ObserverFailed(_logger, ex);
        }
    }
}

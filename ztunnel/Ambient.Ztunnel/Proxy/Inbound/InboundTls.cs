using System.Net;
using System.Net.Security;
using System.Net.Sockets;
using System.Security.Authentication;
using System.Security.Cryptography.X509Certificates;
using Microsoft.AspNetCore.Connections;
using Microsoft.AspNetCore.Server.Kestrel.Https;
using Microsoft.Extensions.Logging;

namespace Ambient.Ztunnel.Proxy.Inbound;

/// <summary>A built <see cref="SslStreamCertificateContext"/> for one certificate, reused until the cert changes.</summary>
internal sealed record CertificateContextCache(X509Certificate2 Certificate, SslStreamCertificateContext Context);

/// <summary>
/// Per-connection state, attached as a connection feature at accept time. It carries the listener (which workload's
/// cert to present), the verified peer identity (read by the CONNECT handler), and whether a TLS failure was
/// already reported with a precise reason.
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

    public bool HandshakeCompleted { get; set; }

    public bool FailureReported { get; set; }

    /// <summary>The connection after its handshake (set by <see cref="InboundTls.MarkHandshakeCompleted"/>), so a stream can end it.</summary>
    public ConnectionContext? Connection { get; set; }

    private int _streams;
    private int _prematureResets;
    private int _closedForResets;

    /// <summary>Counts a CONNECT stream that reached the handler.</summary>
    public void StreamStarted() => Interlocked.Increment(ref _streams);

    /// <summary>
    /// Counts a stream the client reset before its tunnel was up (before our 200). True exactly once: when this
    /// connection has had at least <paramref name="limit"/> such streams AND they are more than half of all its
    /// streams, i.e. it looks like a rapid-reset flood (CVE-2023-44487) rather than a client cancelling now and then.
    /// The half rule is Envoy's (premature resets vs. total streams); a busy pooled connection with occasional
    /// cancellations never trips it.
    /// </summary>
    public bool PrematureReset(int limit)
    {
        int resets = Interlocked.Increment(ref _prematureResets);
        return resets >= limit && resets * 2 > Volatile.Read(ref _streams)
            && Interlocked.Exchange(ref _closedForResets, 1) == 0;
    }

    public int Streams => Volatile.Read(ref _streams);

    public int PrematureResets => Volatile.Read(ref _prematureResets);

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

    public TlsHandshakeCallbackOptions CallbackOptions(TimeSpan handshakeTimeout) => new()
    {
        OnConnection = OnConnection,
        HandshakeTimeout = handshakeTimeout,
    };

    private ValueTask<SslServerAuthenticationOptions> OnConnection(TlsHandshakeCallbackContext context)
    {
        var state = context.Connection.Features.Get<InboundConnectionState>()
            ?? throw new InvalidOperationException("HBONE connection without listener state");
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

        return ValueTask.FromResult(new SslServerAuthenticationOptions
        {
            ServerCertificateContext = cached.Context,
            EnabledSslProtocols = SslProtocols.Tls13,
            ApplicationProtocols = H2Only,
            ClientCertificateRequired = true,
            CertificateRevocationCheckMode = X509RevocationMode.NoCheck,
            AllowRenegotiation = false,
            RemoteCertificateValidationCallback = state.ValidateClient,
        });
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

    /// <summary>Called by the connection middleware when a handshake ended without success and no reason was given yet.</summary>
    public void HandshakeFailed(InboundConnectionState state) =>
        Fail(state, "TLS handshake failed (not TLS 1.3 with ALPN h2, aborted, or timed out)");

    private void Fail(InboundConnectionState state, string reason)
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

    /// <summary>
    /// Connection middleware placed around Kestrel's HTTPS middleware: Kestrel swallows handshake errors (it only
    /// logs them), so a connection that returns here without having passed <see cref="MarkHandshakeCompleted"/> failed
    /// its handshake.
    /// </summary>
    public Func<ConnectionDelegate, ConnectionDelegate> DetectFailures => next => async connection =>
    {
        try
        {
            await next(connection).ConfigureAwait(false);
        }
        finally
        {
            var state = connection.Features.Get<InboundConnectionState>();
            if (state is not null && !state.HandshakeCompleted)
                HandshakeFailed(state);
        }
    };

    /// <summary>Connection middleware placed after Kestrel's HTTPS middleware: reached only by completed handshakes.</summary>
    public static Func<ConnectionDelegate, ConnectionDelegate> MarkHandshakeCompleted => next => connection =>
    {
        var state = connection.Features.Get<InboundConnectionState>();
        if (state is not null)
        {
            state.HandshakeCompleted = true;
            state.Connection = connection;
        }
        return next(connection);
    };
}

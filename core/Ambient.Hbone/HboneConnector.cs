using System.Net.Security;
using System.Net.Sockets;
using System.Security.Authentication;
using System.Security.Cryptography.X509Certificates;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;

namespace Ambient.Hbone;

/// <summary>
/// Dials one HBONE connection: TCP (NoDelay, optional socket hook for SO_MARK), mutual TLS 1.3 with ALPN h2 only and
/// no SNI, the source workload's cert, and the server checked against the expected destination identity before a
/// single byte of HTTP/2 is sent (fail closed).
/// </summary>
internal sealed class HboneConnector : IHboneConnector
{
    private readonly IHboneTlsProvider _tls;
    private readonly HboneClientOptions _options;
    private readonly ILoggerFactory _loggerFactory;
    private readonly ILogger _logger;
    private readonly TimeProvider _time;

    public HboneConnector(IHboneTlsProvider tls, HboneClientOptions options, ILoggerFactory? loggerFactory = null, TimeProvider? timeProvider = null)
    {
        ArgumentNullException.ThrowIfNull(tls);
        ArgumentNullException.ThrowIfNull(options);
        options.Validate();
        _tls = tls;
        _options = options;
        _loggerFactory = loggerFactory ?? NullLoggerFactory.Instance;
        _logger = _loggerFactory.CreateLogger<HboneConnector>();
        _time = timeProvider ?? TimeProvider.System;
    }

    public async Task<Http2Connection> ConnectAsync(HbonePoolKey key, CancellationToken cancellationToken)
    {
        using var timeout = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
        timeout.CancelAfter(_options.ConnectTimeout);
        var socket = _options.CreateSocket is { } create
            ? await create(key.Destination.AddressFamily, timeout.Token).ConfigureAwait(false)
            : new Socket(key.Destination.AddressFamily, SocketType.Stream, ProtocolType.Tcp);
        socket.NoDelay = true;
        SslStream? ssl = null;
        string? rejection = null;
        bool connected = false;
        try
        {
            _options.ConfigureSocket?.Invoke(socket);
            await socket.ConnectAsync(key.Destination, timeout.Token).ConfigureAwait(false);
            ssl = new SslStream(new NetworkStream(socket, ownsSocket: true), leaveInnerStreamOpen: false);

            (X509Certificate2 certificate, X509Certificate2Collection? chain) = _tls.GetClientCertificate(key.SourceIdentity);
            var authentication = new SslClientAuthenticationOptions
            {
                // Empty target host: .NET then sends no SNI extension; HBONE never uses SNI (as Istio's ztunnel).
                TargetHost = string.Empty,
                EnabledSslProtocols = SslProtocols.Tls13,
                ApplicationProtocols = [SslApplicationProtocol.Http2],
                ClientCertificateContext = SslStreamCertificateContext.Create(certificate, chain, offline: true),
                CertificateRevocationCheckMode = X509RevocationMode.NoCheck,
                // SPIFFE certs carry no DNS name, so the platform's name/chain verdict is meaningless: the provider decides.
                RemoteCertificateValidationCallback = (_, serverCertificate, serverChain, _) =>
                {
                    if (serverCertificate is not X509Certificate2 server)
                    {
                        rejection = "the server presented no certificate";
                        return false;
                    }
                    if (_tls.ValidateServer(server, serverChain, key.DestinationIdentity, out string? failure))
                    {
                        return true;
                    }
                    rejection = failure ?? "rejected by the trust provider";
                    return false;
                },
            };
            await ssl.AuthenticateAsClientAsync(authentication, timeout.Token).ConfigureAwait(false);
            if (ssl.NegotiatedApplicationProtocol != SslApplicationProtocol.Http2)
            {
                throw new HboneException($"HBONE peer {key.Destination} did not negotiate ALPN h2 (got '{ssl.NegotiatedApplicationProtocol}')");
            }

            var connection = new Http2Connection(ssl, _options, $"{key.Destination} ({key.DestinationIdentity})",
                _loggerFactory.CreateLogger<Http2Connection>(), _time);
            await connection.StartAsync(timeout.Token).ConfigureAwait(false);
            HboneLog.ConnectionOpened(_logger, connection.Peer, key);
            connected = true;
            return connection;
        }
        catch (Exception ex) when (rejection is not null && ex is AuthenticationException or IOException)
        {
            throw Fail(key, new HboneException(
                $"HBONE TLS to {key.Destination} refused the server certificate: expected identity {key.DestinationIdentity}; {rejection}", inner: ex));
        }
        catch (OperationCanceledException ex) when (!cancellationToken.IsCancellationRequested)
        {
            throw Fail(key, new HboneException($"HBONE dial to {key.Destination} timed out after {_options.ConnectTimeout}", isRetryable: false, inner: ex));
        }
        catch (SocketException ex)
        {
            throw Fail(key, new HboneException($"HBONE dial to {key.Destination} failed: {ex.SocketErrorCode} ({ex.Message})", inner: ex));
        }
        catch (Exception ex) when (ex is AuthenticationException or IOException && ex is not HboneException)
        {
            throw Fail(key, new HboneException($"HBONE TLS handshake with {key.Destination} failed: {ex.Message}", inner: ex));
        }
        finally
        {
            if (!connected)
            {
                // The SslStream owns the socket once it exists.
                if (ssl is not null)
                {
                    await ssl.DisposeAsync().ConfigureAwait(false);
                }
                else
                {
                    socket.Dispose();
                }
            }
        }
    }

    private HboneException Fail(HbonePoolKey key, HboneException error)
    {
        HboneLog.DialFailed(_logger, key, error.Message);
        return error;
    }
}

using System.Net;
using System.Net.Security;
using System.Net.Sockets;
using System.Security.Authentication;
using System.Security.Cryptography.X509Certificates;
using Ambient.Core.Identity;
using Ambient.TestCommon;
using Ambient.Dataplane.Identity;
using Ambient.Ztunnel.Proxy.Outbound;
using Ambient.Dataplane.State;
using Ambient.Ztunnel.Tests.State;

namespace Ambient.Ztunnel.Tests.Identity;

/// <summary>
/// istiod-lite signing with an operator's intermediate (--ca-dir): the ztunnel's xDS and CA clients trust only
/// root-cert.pem, and two workloads' certificates handshake mutual TLS 1.3 with the ztunnel's own TLS pieces, each
/// side presenting leaf + intermediate and verifying the other through it.
/// </summary>
public sealed class PlugInCaHandshakeTests : IAsyncLifetime
{
    private static readonly SpiffeId Echo = SpiffeId.Parse("spiffe://cluster.local/ns/demo/sa/echo");
    private static readonly SpiffeId ClientId = SpiffeId.Parse("spiffe://cluster.local/ns/demo/sa/client");
    private static readonly TimeSpan Deadline = TimeSpan.FromSeconds(30);
    private readonly ListLogger _log = new();
    // An RSA intermediate under an EC root: the chain mixes key types as operators' often do.
    private readonly PlugInCaFolder _cacerts = new("rsa:2048", CaKeyFormat.Pkcs1);
    private IstiodTestHost _istiod = null!;

    public async ValueTask InitializeAsync() => _istiod = await IstiodTestHost.StartAsync(TestMeshes.Demo(), _cacerts.Folder);

    public async ValueTask DisposeAsync()
    {
        await _istiod.DisposeAsync();
        _cacerts.Dispose();
    }

    [Fact]
    public async Task Two_workloads_with_plug_in_ca_leaves_handshake_through_the_intermediate()
    {
        await using var client = await NodeAsync("node-1", ClientId);
        await using var echo = await NodeAsync("node-2", Echo);
        var (clientCerts, echoCerts) = (client.Certificates, echo.Certificates);
        Assert.True(echoCerts.TryGetCertificate(Echo, out var echoCert, out var echoChain));
        using var intermediate = X509Certificate2.CreateFromPem(File.ReadAllText(_cacerts.CaCert));
        Assert.Equal(intermediate.SubjectName.Name, echoCert.IssuerName.Name);

        var (serverSaw, clientSaw) = await HandshakeAsync(clientCerts, echoCerts, SslStreamCertificateContext.Create(echoCert, echoChain, offline: true));

        Assert.Equal(ClientId.ToString(), serverSaw);
        Assert.Null(clientSaw);
    }

    [Fact]
    public async Task A_leaf_presented_without_its_intermediate_is_refused()
    {
        await using var client = await NodeAsync("node-1", ClientId);
        await using var echo = await NodeAsync("node-2", Echo);
        var (clientCerts, echoCerts) = (client.Certificates, echo.Certificates);
        Assert.True(echoCerts.TryGetCertificate(Echo, out var echoCert, out _));

        // The control: the same leaf without the chain the CA returned does not lead to root-cert.pem.
        var (_, clientSaw) = await HandshakeAsync(clientCerts, echoCerts, SslStreamCertificateContext.Create(echoCert, additionalCertificates: null, offline: true));

        Assert.NotNull(clientSaw);
        Assert.Contains("does not chain to the mesh root", clientSaw, StringComparison.Ordinal);
    }

    /// <summary>One node's xDS client and certificate manager, holding a certificate for <paramref name="identity"/>.</summary>
    private async Task<Node> NodeAsync(string node, SpiffeId identity)
    {
        // The xDS client trusts only root-cert.pem: istiod-lite's serving chain must carry the intermediate too.
        var xds = _istiod.CreateXdsClient(node, _log);
        var state = new ProxyState(node);
        xds.SnapshotChanged += state.Update;
        xds.Start();
        var manager = new CertificateManager(new CertificateManagerOptions
        {
            CaAddress = _istiod.Address,
            Token = () => _istiod.TokenOf(node),
            RequestedTtl = TimeSpan.FromHours(1),
            InitialBackoff = TimeSpan.FromMilliseconds(200),
            MaxBackoff = TimeSpan.FromSeconds(1),
        }, TrustBundle.FromPem(File.ReadAllText(_cacerts.RootCert)), _log.CreateLogger("certs-" + node));
        var result = new Node(xds, manager);
        try
        {
            await xds.WaitForSyncAsync().WaitAsync(Deadline, TestContext.Current.CancellationToken);
            manager.Attach(state);
            await Eventually.ValueAsync(() => manager.TryGetWorkloadCertificate(identity.ToString(), out var c) ? c : null, Deadline, "a certificate for " + identity);
            return result;
        }
        catch
        {
            await result.DisposeAsync();
            throw;
        }
    }

    private sealed record Node(Ambient.Dataplane.Xds.DeltaXdsClient Xds, CertificateManager Certificates) : IAsyncDisposable
    {
        public async ValueTask DisposeAsync()
        {
            await Certificates.DisposeAsync();
            await Xds.DisposeAsync();
        }
    }

    // Server side as the inbound listener builds it (certificate context, peer judged by the trust bundle); client
    // side through MeshTls, the HBONE connector's identity seam. Returns the identity the server accepted and
    // the client's refusal reason, if any.
    private static async Task<(string? ServerSaw, string? ClientRefusal)> HandshakeAsync(CertificateManager client, CertificateManager server, SslStreamCertificateContext serverContext)
    {
        using var listener = new TcpListener(IPAddress.Loopback, 0);
        listener.Start();
        string? serverSaw = null, clientRefusal = null;
        var serverTask = Task.Run(async () =>
        {
            using var accepted = await listener.AcceptTcpClientAsync();
            await using var ssl = new SslStream(accepted.GetStream());
            await ssl.AuthenticateAsServerAsync(new SslServerAuthenticationOptions
            {
                ServerCertificateContext = serverContext,
                EnabledSslProtocols = SslProtocols.Tls13,
                ClientCertificateRequired = true,
                CertificateRevocationCheckMode = X509RevocationMode.NoCheck,
                RemoteCertificateValidationCallback = (_, cert, chain, _) =>
                {
                    if (cert is X509Certificate2 c2 && server.Trust.ValidatePresentedChain(c2, chain, out SpiffeId peer, out _))
                    {
                        serverSaw = peer.ToString();
                        return true;
                    }
                    return false;
                },
            });
            var one = new byte[1];
            _ = await ssl.ReadAsync(one);
        });

        var tls = new MeshTls(client);
        var (cert, chain) = tls.GetClientCertificate(ClientId.ToString());
        using var tcp = new TcpClient();
        await tcp.ConnectAsync(IPAddress.Loopback, ((IPEndPoint)listener.LocalEndpoint).Port);
        var refused = false;
        await using (var ssl = new SslStream(tcp.GetStream()))
        {
            try
            {
                await ssl.AuthenticateAsClientAsync(new SslClientAuthenticationOptions
                {
                    TargetHost = string.Empty,
                    EnabledSslProtocols = SslProtocols.Tls13,
                    ClientCertificateContext = SslStreamCertificateContext.Create(cert, chain, offline: true),
                    CertificateRevocationCheckMode = X509RevocationMode.NoCheck,
                    RemoteCertificateValidationCallback = (_, serverCert, serverChain, _) =>
                        serverCert is X509Certificate2 s && tls.ValidateServer(s, serverChain, Echo.ToString(), out clientRefusal),
                }).WaitAsync(Deadline);
                await ssl.WriteAsync(new byte[] { 1 });
                await ssl.FlushAsync();
            }
            catch (AuthenticationException) when (clientRefusal is not null)
            {
                refused = true;
            }
        }
        tcp.Dispose();
        if (refused)
        {
            // TLS 1.3: the server may have finished its side before the client refused; either way it must end.
            var serverError = await Record.ExceptionAsync(() => serverTask.WaitAsync(Deadline));
            Assert.False(serverError is TimeoutException, "the server side hung after the client refused");
        }
        else
        {
            await serverTask.WaitAsync(Deadline);
        }
        return (serverSaw, clientRefusal);
    }
}

using System.Buffers.Binary;
using System.Diagnostics;
using System.Net;
using System.Net.Security;
using System.Net.Sockets;
using System.Security.Authentication;
using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;
using System.Text;
using Ambient.TestCommon;
using Ambient.Core.Protos.Ca;
using Google.Protobuf;
using Google.Protobuf.WellKnownTypes;

namespace Ambient.E2E.Tests;

/// <summary>
/// Someone on the network (not a ztunnel) dials a meshed pod's HBONE port with openssl: without a client certificate,
/// or with one for the real client identity signed by a CA of their own, the TLS connection is refused, no HTTP/2
/// connection is ever served (no server SETTINGS frame), and the node counts a TLS_FAILURE. The control: a
/// certificate the mesh CA issued (asked for with the node's token, as a ztunnel would) is accepted and not counted.
/// </summary>
public sealed class TamperE2ETests : IAsyncLifetime
{
    private const string OpenSsl = "/usr/bin/openssl";
    private MeshRun? _mesh;
    private MeshRun Mesh => _mesh!;

    public async ValueTask InitializeAsync()
    {
        _mesh = await MeshRun.UpAsync("tamper", ns =>
            MeshYaml.Namespace(ns) + MeshYaml.ServiceAccount(ns, "client")
            + MeshYaml.Sleep(ns, "client", "client", "tamper-a") + MeshYaml.Echo(ns, "echo", "default", "tamper-b"));
    }

    [Fact]
    public async Task NoCertAndForeignCa_AreRefusedWithTlsFailure_MeshIssuedCertIsAccepted()
    {
        var ct = TestContext.Current.CancellationToken;
        Assert.True(File.Exists(OpenSsl), $"{OpenSsl} is missing: install the Debian openssl package (apt-get install openssl)");
        var echo = Mesh.Pod("echo");
        var nodeB = Mesh.Ztunnel("tamper-b");
        var hbone = new IPEndPoint(IPAddress.Parse(echo.Address!), 15008);
        var root = Mesh.RootCertPath;
        // The mesh works before the attacks (and so the listener is up).
        using (var http = MeshRun.ClientIn(Mesh.Pod("client"), keepAlive: false))
        {
            Assert.Equal("echo", await http.GetAsync($"http://echo.{Mesh.Namespace}.svc.cluster.local/", ct));
        }

        var pki = Directory.CreateDirectory(Path.Combine(Mesh.TempPath, "pki")).FullName;
        var (foreignCert, foreignKey) = await ForeignCaLeafAsync(pki, Mesh.Spiffe("client"));
        var (meshCert, meshKey) = await MeshIssuedAsync(pki, "tamper-a", Mesh.Spiffe("client"));

        foreach (var (kind, cert, key, reason) in new[]
        {
            ("no certificate", (string?)null, (string?)null, "no client certificate"),
            ("foreign CA", foreignCert, foreignKey, "does not chain to the mesh root"),
        })
        {
            var before = await TlsFailuresAsync(nodeB);
            var args = new List<string> { "s_client", "-connect", $"{hbone}", "-tls1_3", "-alpn", "h2", "-CAfile", root, "-ign_eof" };
            if (cert is not null) args.AddRange(["-cert", cert, "-key", key!]);
            var (exit, output) = await OpenSslAsync(args);
            // -ign_eof keeps s_client reading until the server ends the connection: returning at all means the
            // server closed it. In TLS 1.3 the client cert is judged after the client's Finished, so the refusal is an
            // alert or (what .NET on Linux does) a close without one, which s_client calls an unexpected EOF.
            Assert.True(exit != 0, $"openssl s_client ({kind}) was not refused:\n{output}");
            Assert.True(output.Contains("unexpected eof", StringComparison.OrdinalIgnoreCase) || output.Contains("alert", StringComparison.OrdinalIgnoreCase),
                $"openssl s_client ({kind}) ended for another reason (exit {exit}):\n{output}");
            await MeshRun.EventuallyAsync(async () => await TlsFailuresAsync(nodeB) == before + 1, TimeSpan.FromSeconds(10),
                async () => $"{kind}: TLS_FAILURE should go from {before} to {before + 1}:\n{await MeshRun.MetricsAsync(nodeB)}");

            // Not even the start of an HTTP/2 connection: the server never sends its SETTINGS, so no stream can be opened.
            var h2 = await Http2ProbeAsync(hbone, cert is null ? null : X509Certificate2.CreateFromPemFile(cert, key));
            Assert.True(h2 != "settings", $"{kind}: the server started HTTP/2 for an unauthenticated client");
            await MeshRun.EventuallyAsync(async () => await TlsFailuresAsync(nodeB) == before + 2, TimeSpan.FromSeconds(10),
                () => Task.FromResult($"{kind}: the HTTP/2 probe ({h2}) was not counted as a TLS_FAILURE"));

            // The log is written in batches by one thread, so the line may land a moment after the metric moved.
            await MeshRun.EventuallyAsync(
                () => Task.FromResult(MeshRun.ReadLog(nodeB).Split('\n').Any(l => l.Contains("TLS handshake from", StringComparison.Ordinal) && l.Contains(reason, StringComparison.Ordinal))),
                TimeSpan.FromSeconds(10),
                () => Task.FromResult($"{nodeB.Name}'s log does not name the reason '{reason}':\n{MeshRun.ReadLog(nodeB)}"));
        }

        // The control: same tool and flags with a mesh-issued certificate for the same identity is served. The proof is
        // the server speaking HTTP/2 (in TLS 1.3 a refusal comes after the client's handshake is done, so s_client's
        // exit says nothing): to the preface and a malformed SETTINGS it answers GOAWAY FRAME_SIZE_ERROR, to the probe
        // its SETTINGS. A refused handshake is counted before any of that, so the count is final here, no waiting.
        var accepted = await TlsFailuresAsync(nodeB);
        var (_, okOutput) = await OpenSslAsync(["s_client", "-connect", $"{hbone}", "-tls1_3", "-alpn", "h2", "-CAfile", root, "-cert", meshCert, "-key", meshKey, "-ign_eof"],
            Http2Probe.PrefaceThenMalformedSettings);
        Assert.Contains("ALPN protocol: h2", okOutput, StringComparison.Ordinal);
        Assert.Contains("Verify return code: 0 (ok)", okOutput, StringComparison.Ordinal);
        Assert.True(Http2Probe.GoAwayError(okOutput) == Http2Probe.FrameSizeError,
            $"the server did not answer HTTP/2 to a mesh-issued certificate (no GOAWAY FRAME_SIZE_ERROR):\n{okOutput}");
        Assert.Equal("settings", await Http2ProbeAsync(hbone, X509Certificate2.CreateFromPemFile(meshCert, meshKey)));
        Assert.Equal(accepted, await TlsFailuresAsync(nodeB));
    }

    private static async Task<long> TlsFailuresAsync(MeshRun.Component node) =>
        MeshRun.Sum(await MeshRun.MetricsAsync(node), "istio_tcp_connections_opened_total", "reporter=\"destination\"", "response_flags=\"TLS_FAILURE\"");

    /// <summary>openssl with <paramref name="stdin"/> as input; output read as Latin-1 so server bytes it passes through survive.</summary>
    private static async Task<(int Exit, string Output)> OpenSslAsync(List<string> args, byte[]? stdin = null)
    {
        var psi = new ProcessStartInfo(OpenSsl) { StandardOutputEncoding = Encoding.Latin1, StandardErrorEncoding = Encoding.Latin1 };
        foreach (var a in args) psi.ArgumentList.Add(a);
        return await MeshRun.RunAsync(psi, TimeSpan.FromSeconds(20), stdin);
    }

    /// <summary>A CA of the attacker's own and a client leaf from it claiming the real client's SPIFFE identity.</summary>
    private static async Task<(string Cert, string Key)> ForeignCaLeafAsync(string dir, string spiffe)
    {
        string caKey = Path.Combine(dir, "foreign-ca.key"), caCert = Path.Combine(dir, "foreign-ca.pem");
        string key = Path.Combine(dir, "foreign.key"), csr = Path.Combine(dir, "foreign.csr"), cert = Path.Combine(dir, "foreign.pem");
        var ext = Path.Combine(dir, "foreign.ext");
        File.WriteAllText(ext, $"subjectAltName=critical,URI:{spiffe}\nextendedKeyUsage=clientAuth,serverAuth\nkeyUsage=critical,digitalSignature,keyEncipherment\n");
        foreach (var step in new[]
        {
            new[] { "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-keyout", caKey, "-out", caCert, "-days", "1", "-subj", "/O=not-the-mesh/CN=foreign root" },
            ["req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-keyout", key, "-out", csr, "-subj", "/O=cluster.local"],
            ["x509", "-req", "-in", csr, "-CA", caCert, "-CAkey", caKey, "-CAcreateserial", "-out", cert, "-days", "1", "-extfile", ext],
        })
        {
            var (exit, output) = await OpenSslAsync([.. step]);
            Assert.True(exit == 0, $"openssl {string.Join(' ', step)} failed:\n{output}");
        }
        return (cert, key);
    }

    /// <summary>
    /// What a ztunnel does for a pod on its node: CreateCertificate on istiod-lite's gRPC port with the node's token and
    /// the pod's identity as ImpersonatedIdentity. Plain HttpClient gRPC framing: 1-byte flag, 4-byte length, message.
    /// </summary>
    private async Task<(string Cert, string Key)> MeshIssuedAsync(string dir, string node, string spiffe)
    {
        var state = Mesh.ReadState();
        var token = File.ReadAllText(Path.Combine(state.StateFolder, "tokens", node + ".token")).Trim();
        using var rootCert = X509Certificate2.CreateFromPem(File.ReadAllText(Mesh.RootCertPath));
        using var key = ECDsa.Create(ECCurve.NamedCurves.nistP256);
        var request = new IstioCertificateRequest { Csr = TestCertificates.CreateWorkloadCsr(key, spiffe), ValidityDuration = 3600, Metadata = new Struct() };
        request.Metadata.Fields["ImpersonatedIdentity"] = Value.ForString(spiffe);

        var handler = new SocketsHttpHandler { UseProxy = false };
        // istiod-lite's serving certificate chains to the mesh root; its name is not the loopback address we dial.
        handler.SslOptions.RemoteCertificateValidationCallback = TestCertificates.TrustOnly(rootCert);
        using var http = new HttpClient(handler) { Timeout = TimeSpan.FromSeconds(10) };
        var body = request.ToByteArray();
        var framed = new byte[5 + body.Length];
        BinaryPrimitives.WriteUInt32BigEndian(framed.AsSpan(1), (uint)body.Length);
        body.CopyTo(framed, 5);
        using var message = new HttpRequestMessage(HttpMethod.Post, $"https://{state.Components.Single(c => c.Name == "istiod").Address}:15012/istio.v1.auth.IstioCertificateService/CreateCertificate")
        {
            Version = HttpVersion.Version20,
            VersionPolicy = HttpVersionPolicy.RequestVersionExact,
            Content = new ByteArrayContent(framed) { Headers = { { "Content-Type", "application/grpc" } } },
        };
        message.Headers.TryAddWithoutValidation("te", "trailers");
        message.Headers.TryAddWithoutValidation("authorization", "Bearer " + token);
        using var response = await http.SendAsync(message, TestContext.Current.CancellationToken);
        var bytes = await response.Content.ReadAsByteArrayAsync(TestContext.Current.CancellationToken);
        var status = response.TrailingHeaders.TryGetValues("grpc-status", out var s) ? string.Join(",", s)
            : response.Headers.TryGetValues("grpc-status", out var h) ? string.Join(",", h) : "?";
        Assert.True(status == "0" && bytes.Length > 5, $"CreateCertificate failed: HTTP {(int)response.StatusCode}, grpc-status {status}, {bytes.Length} bytes");
        var chainPem = IstioCertificateResponse.Parser.ParseFrom(bytes.AsSpan(5).ToArray()).CertChain;
        string certPath = Path.Combine(dir, "mesh.pem"), keyPath = Path.Combine(dir, "mesh.key");
        File.WriteAllText(certPath, string.Join("\n", chainPem));
        File.WriteAllText(keyPath, key.ExportPkcs8PrivateKeyPem());
        return (certPath, keyPath);
    }

    /// <summary>
    /// TLS 1.3 + ALPN h2, then the HTTP/2 client preface and an empty SETTINGS: returns "settings" if the server
    /// answered with its SETTINGS frame (an HTTP/2 connection exists), otherwise how the connection ended.
    /// </summary>
    private static async Task<string> Http2ProbeAsync(IPEndPoint endpoint, X509Certificate2? clientCert)
    {
        using var tcp = new TcpClient();
        using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(10));
        await tcp.ConnectAsync(endpoint, timeout.Token);
        await using var tls = new SslStream(tcp.GetStream());
        try
        {
            await tls.AuthenticateAsClientAsync(new SslClientAuthenticationOptions
            {
                TargetHost = "hbone",
                EnabledSslProtocols = SslProtocols.Tls13,
                ApplicationProtocols = [SslApplicationProtocol.Http2],
                // Offered whatever CA names the server lists, as an attacker would.
                LocalCertificateSelectionCallback = clientCert is null ? null : (_, _, _, _, _) => clientCert,
                // The attacker does not care who the server is; the server's judgement of the client is under test.
                RemoteCertificateValidationCallback = (_, _, _, _) => true,
            }, timeout.Token);
            byte[] preface = [.. "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"u8, 0, 0, 0, 4, 0, 0, 0, 0, 0];
            await tls.WriteAsync(preface, timeout.Token);
            var header = new byte[9];
            await tls.ReadExactlyAsync(header, timeout.Token);
            return header[3] == 4 ? "settings" : $"frame type {header[3]}";
        }
        catch (Exception e) when (e is IOException or AuthenticationException or EndOfStreamException or OperationCanceledException)
        {
            return $"{e.GetType().Name}: {e.Message}";
        }
    }

    public ValueTask DisposeAsync()
    {
        _mesh?.Dispose();
        return ValueTask.CompletedTask;
    }
}

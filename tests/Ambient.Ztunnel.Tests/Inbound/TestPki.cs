using System.Formats.Asn1;
using System.Net;
using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;
using Ambient.Hbone.Server;
using Ambient.Ztunnel.Proxy;

namespace Ambient.Ztunnel.Tests.Inbound;

/// <summary>
/// A throwaway mesh CA for tests: ECDSA P-256 root, leaves shaped like Istio workload certs (empty subject, one
/// critical SPIFFE URI SAN, serverAuth+clientAuth). Test helper only; the product CA lives elsewhere.
/// </summary>
internal sealed class TestCa : IDisposable
{
    private readonly ECDsa _rootKey;
    private int _serial = 0x100;

    public TestCa(string name = "test-mesh-root")
    {
        _rootKey = ECDsa.Create(ECCurve.NamedCurves.nistP256);
        var req = new CertificateRequest("CN=" + name, _rootKey, HashAlgorithmName.SHA256);
        req.CertificateExtensions.Add(new X509BasicConstraintsExtension(true, false, 0, true));
        req.CertificateExtensions.Add(new X509KeyUsageExtension(X509KeyUsageFlags.KeyCertSign | X509KeyUsageFlags.CrlSign, true));
        req.CertificateExtensions.Add(new X509SubjectKeyIdentifierExtension(req.PublicKey, false));
        var now = DateTimeOffset.UtcNow;
        Root = req.CreateSelfSigned(now.AddDays(-30), now.AddYears(10));
    }

    public X509Certificate2 Root { get; }

    public string RootPem => Root.ExportCertificatePem();

    /// <summary>A workload cert for spiffe://cluster.local/ns/{ns}/sa/{sa}, with private key.</summary>
    public X509Certificate2 Issue(string ns, string sa, DateTimeOffset? notBefore = null, DateTimeOffset? notAfter = null)
    {
        using var key = ECDsa.Create(ECCurve.NamedCurves.nistP256);
        var req = new CertificateRequest(new X500DistinguishedName(""), key, HashAlgorithmName.SHA256);
        req.CertificateExtensions.Add(new X509BasicConstraintsExtension(false, false, 0, true));
        req.CertificateExtensions.Add(new X509KeyUsageExtension(
            X509KeyUsageFlags.DigitalSignature | X509KeyUsageFlags.KeyEncipherment, true));
        req.CertificateExtensions.Add(new X509EnhancedKeyUsageExtension(
            [new Oid("1.3.6.1.5.5.7.3.1"), new Oid("1.3.6.1.5.5.7.3.2")], false));
        var san = new SubjectAlternativeNameBuilder();
        san.AddUri(new Uri($"spiffe://cluster.local/ns/{ns}/sa/{sa}"));
        req.CertificateExtensions.Add(san.Build(critical: true));
        req.CertificateExtensions.Add(X509AuthorityKeyIdentifierExtension.CreateFromCertificate(Root, true, false));

        var now = DateTimeOffset.UtcNow;
        // Serial: positive, high byte < 0x80 so OpenSSL and .NET print the same hex.
        int serial = Interlocked.Increment(ref _serial);
        byte[] serialBytes = [0x10, (byte)(serial >> 16), (byte)(serial >> 8), (byte)serial, 0x01, 0x02, 0x03, 0x04];
        using var cert = req.Create(Root, notBefore ?? now.AddMinutes(-2), notAfter ?? now.AddHours(24), serialBytes);
        return cert.CopyWithPrivateKey(key);
    }

    /// <summary>Writes cert + key PEM files for the Python client; returns (certPath, keyPath).</summary>
    public static (string Cert, string Key) WritePem(Ambient.TestCommon.TempDir dir, string name, X509Certificate2 cert)
    {
        using var key = cert.GetECDsaPrivateKey()!;
        return (dir.Write(name + ".crt", cert.ExportCertificatePem()), dir.Write(name + ".key", key.ExportPkcs8PrivateKeyPem()));
    }

    public void Dispose()
    {
        Root.Dispose();
        _rootKey.Dispose();
    }

    /// <summary>URI SANs read with System.Formats.Asn1 (GeneralName [6] IA5String); the BCL does not enumerate them.</summary>
    public static List<string> UriSans(X509Certificate2 cert)
    {
        var uris = new List<string>();
        foreach (var ext in cert.Extensions)
        {
            if (ext.Oid?.Value != "2.5.29.17")
                continue;
            var seq = new AsnReader(ext.RawData, AsnEncodingRules.DER).ReadSequence();
            var uriTag = new Asn1Tag(TagClass.ContextSpecific, 6);
            while (seq.HasData)
            {
                if (seq.PeekTag() == uriTag)
                    uris.Add(seq.ReadCharacterString(UniversalTagNumber.IA5String, uriTag));
                else
                    seq.ReadEncodedValue();
            }
        }
        return uris;
    }
}

/// <summary>Test identity: per-listener server certs (swappable for rotation) and client validation against one root.</summary>
internal sealed class TestInboundIdentity : IInboundIdentity
{
    private readonly X509Certificate2 _root;
    private readonly Dictionary<IPAddress, X509Certificate2> _certs = new();

    public TestInboundIdentity(X509Certificate2 root) => _root = root;

    public int ServerCertRequests;

    public void SetServerCertificate(IPAddress listener, X509Certificate2 cert)
    {
        lock (_certs)
            _certs[listener] = cert;
    }

    public X509Certificate2? GetServerCertificate(IPAddress listenerAddress, out X509Certificate2Collection? chain)
    {
        Interlocked.Increment(ref ServerCertRequests);
        chain = null;
        lock (_certs)
            return _certs.GetValueOrDefault(listenerAddress);
    }

    public string? ValidateClient(X509Certificate2 clientCert, X509Chain? chain, out string? failureReason)
    {
        using var verify = new X509Chain();
        verify.ChainPolicy.TrustMode = X509ChainTrustMode.CustomRootTrust;
        verify.ChainPolicy.CustomTrustStore.Add(_root);
        verify.ChainPolicy.RevocationMode = X509RevocationMode.NoCheck;
        verify.ChainPolicy.VerificationTime = DateTime.Now;
        if (chain is not null)
            verify.ChainPolicy.ExtraStore.AddRange(chain.ChainPolicy.ExtraStore);
        if (!verify.Build(clientCert))
        {
            var statuses = new List<string>();
            foreach (var s in verify.ChainStatus)
                statuses.Add(s.Status.ToString());
            failureReason = "chain: " + string.Join(",", statuses);
            return null;
        }

        var uris = TestCa.UriSans(clientCert);
        if (uris.Count != 1 || !uris[0].StartsWith("spiffe://cluster.local/", StringComparison.Ordinal))
        {
            failureReason = "no SPIFFE URI SAN of trust domain cluster.local";
            return null;
        }
        failureReason = null;
        return uris[0];
    }
}

/// <summary>Served targets (and service hostnames) per listener plus a switchable authorization decision; the
/// server's default refusals are Istio's ztunnel ports.</summary>
internal sealed class TestTargets : IInboundTargets
{
    private readonly HashSet<(IPAddress, IPEndPoint)> _served = new();
    private readonly Dictionary<(IPAddress, string, int), IPEndPoint> _services = new();

    public Func<IPEndPoint, string?> Refuse { get; set; } = MeshEndpoints.Default.Refusal;

    public Func<string, IPEndPoint, bool> Allow { get; set; } = (_, _) => true;

    public List<(string Peer, IPEndPoint Target)> AuthorizationCalls { get; } = new();

    public void Serve(IPAddress listener, IPEndPoint target)
    {
        lock (_served)
            _served.Add((listener, target));
    }

    /// <summary>Serves <paramref name="hostname"/>:<paramref name="port"/> on <paramref name="listener"/> with <paramref name="target"/>.</summary>
    public void ServeService(IPAddress listener, string hostname, int port, IPEndPoint target)
    {
        lock (_served)
            _services[(listener, hostname, port)] = target;
    }

    public IPEndPoint? ResolveServiceTarget(IPAddress listenerAddress, string hostname, int port, out string? refusal)
    {
        lock (_served)
        {
            if (_services.TryGetValue((listenerAddress, hostname, port), out var target))
            {
                refusal = null;
                return target;
            }
        }
        refusal = $"authority {hostname} is not a known service hostname";
        return null;
    }

    public string? Refusal(IPEndPoint target) => Refuse(target);

    public bool IsServedTarget(IPAddress listenerAddress, IPEndPoint target)
    {
        lock (_served)
            return _served.Contains((listenerAddress, target));
    }

    public bool IsAllowed(string peerIdentity, IPEndPoint target)
    {
        lock (AuthorizationCalls)
            AuthorizationCalls.Add((peerIdentity, target));
        return Allow(peerIdentity, target);
    }
}

internal sealed class RecordingObserver : IInboundObserver
{
    public readonly List<InboundConnectionInfo> Opened = new();
    public readonly List<(InboundConnectionInfo Info, long In, long Out, string Flags)> Closed = new();
    public readonly List<DateTimeOffset> ClosedAt = new();
    public readonly List<(IPEndPoint Remote, string Reason)> TlsFailures = new();

    public void ConnectionOpened(InboundConnectionInfo info, string responseFlags)
    {
        lock (this)
            Opened.Add(info);
    }

    public void ConnectionClosed(InboundConnectionInfo info, long bytesIn, long bytesOut, string responseFlags)
    {
        lock (this)
        {
            ClosedAt.Add(DateTimeOffset.UtcNow);
            Closed.Add((info, bytesIn, bytesOut, responseFlags));
        }
    }

    public void TlsFailure(IPEndPoint remote, string reason)
    {
        lock (this)
            TlsFailures.Add((remote, reason));
    }

    public T Read<T>(Func<RecordingObserver, T> read)
    {
        lock (this)
            return read(this);
    }
}

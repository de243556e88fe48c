using System.Net;
using System.Security.Cryptography.X509Certificates;
using Ambient.TestCommon;
using Ambient.Hbone.Server;
using Ambient.Ztunnel.Proxy;

namespace Ambient.Ztunnel.Tests.Inbound;

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

        var uris = TestCertificates.UriSans(clientCert);
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

    public bool IsAllowed(InboundConnectionInfo info, out string? denial)
    {
        lock (AuthorizationCalls)
            AuthorizationCalls.Add((info.PeerIdentity, info.Destination));
        var allowed = Allow(info.PeerIdentity, info.Destination);
        denial = allowed ? null : "denied by the test";
        return allowed;
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

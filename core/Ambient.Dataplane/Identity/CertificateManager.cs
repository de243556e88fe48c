using System.Collections.Immutable;
using System.Diagnostics.CodeAnalysis;
using System.Security.Cryptography.X509Certificates;
using Ambient.Core.Identity;
using Ambient.Core.Protos.Ca;
using Ambient.Core.Xds;
using Ambient.Dataplane.State;
using Ambient.Dataplane.Xds;
using Grpc.Net.Client;

namespace Ambient.Dataplane.Identity;

/// <summary>
/// Holds a certificate for every identity of this node's in-mesh workloads (as ztunnel's SecretManager does):
/// fetches each from istiod's CA impersonating the pod's identity, checks the leaf carries exactly that identity
/// and chains to the mesh root, renews at half-life, retries failures with jittered exponential backoff while
/// still serving the old certificate until it expires, and drops identities that left the node.
/// </summary>
internal sealed partial class CertificateManager : IAsyncDisposable
{
    private readonly CertificateManagerOptions _options;
    private readonly ILogger _logger;
    private readonly GrpcChannel _channel;
    private readonly IstioCertificateService.IstioCertificateServiceClient _ca;
    private readonly Lock _lock = new();
    private readonly CancellationTokenSource _stop = new();
    // Replaced whole when the identity set changes (rare); lookups per connection never lock.
    private volatile Dictionary<string, IdentityWorker> _workers = new(StringComparer.Ordinal);
    private ProxyState? _state;
    // The last re-issue epoch pushed with a trust bundle; 0 is what istiod-lite sends before any rotation.
    private long _reissueEpoch;
    private bool _disposed;

    /// <param name="handler">Optional handler shared with the xDS client (the caller disposes it); by default one of
    /// our own that trusts only the mesh root.</param>
    public CertificateManager(CertificateManagerOptions options, TrustBundle trust, ILogger logger, HttpMessageHandler? handler = null)
        : this(options, new TrustBundleSource(trust), logger, handler)
    {
    }

    /// <param name="trust">The proxy's live bundle; pushes (<see cref="ApplyTrustBundle"/>) replace its content.</param>
    /// <param name="handler">Optional handler shared with the xDS client (the caller disposes it); by default one of
    /// our own that checks istiod against the live bundle.</param>
    public CertificateManager(CertificateManagerOptions options, TrustBundleSource trust, ILogger logger, HttpMessageHandler? handler = null)
    {
        ArgumentNullException.ThrowIfNull(options);
        ArgumentNullException.ThrowIfNull(trust);
        ArgumentNullException.ThrowIfNull(logger);
        _options = options;
        TrustSource = trust;
        _logger = logger;
        _channel = IstiodGrpc.Create(options.CaAddress,
            handler ?? IstiodChannel.CreateHandler(() => trust.Current.Roots, options.CaAddress, options.ServerName),
            ownsHandler: handler is null, IstiodGrpc.MaxCaMessageSize, cancelledAsOperationCanceled: true);
        _ca = new IstioCertificateService.IstioCertificateServiceClient(_channel);
    }

    /// <summary>The mesh roots peers' certificates are checked against now (read at every handshake).</summary>
    public TrustBundle Trust => TrustSource.Current;

    public TrustBundleSource TrustSource { get; }

    /// <summary>The current certificate (with its key) and chain to serve TLS as <paramref name="identity"/>; null
    /// until the first one is issued.</summary>
    public X509Certificate2? ServingCertificate(string identity, out X509Certificate2Collection? chain)
    {
        if (TryGetCertificate(identity, out var certificate, out var issued))
        {
            chain = issued;
            return certificate;
        }
        chain = null;
        return null;
    }

    /// <summary>Judges a peer's certificate chain by the current trust bundle (inbound mTLS): the peer's SPIFFE
    /// identity, or null and why not.</summary>
    public string? ValidatePeer(X509Certificate2 certificate, X509Chain? chain, out string? failureReason)
    {
        if (Trust.ValidatePresentedChain(certificate, chain, out SpiffeId peer, out var error))
        {
            failureReason = null;
            return peer.ToString();
        }
        failureReason = error;
        return null;
    }

    /// <summary>Raised (on a worker task) whenever an identity gets a new certificate.</summary>
    public event Action<SpiffeId>? CertificateChanged;

    /// <summary>True when every current local identity holds a certificate valid now (vacuously true with none).</summary>
    public bool AllReady
    {
        get
        {
            var now = _options.Time.GetUtcNow();
            foreach (var worker in _workers.Values)
            {
                if (worker.Current is not { } cert || !cert.IsValidAt(now))
                {
                    return false;
                }
            }
            return true;
        }
    }

    /// <summary>Follows <paramref name="state"/>: the identities of its local HBONE workloads, now and after every update.</summary>
    public void Attach(ProxyState state)
    {
        ArgumentNullException.ThrowIfNull(state);
        lock (_lock)
        {
            if (_state is not null)
            {
                throw new InvalidOperationException("the certificate manager already follows a proxy state");
            }
            _state = state;
        }
        state.Changed += OnStateChanged;
        OnStateChanged(state);
    }

    private void OnStateChanged(ProxyState state)
    {
        var identities = new HashSet<SpiffeId>();
        foreach (var w in state.LocalWorkloads.InMesh)
        {
            if (SpiffeId.TryParse(w.Identity, out var id, out var error))
            {
                identities.Add(id);
            }
            else
            {
                Log.BadIdentity(_logger, w.Uid, error);
            }
        }
        SetIdentities(identities);
    }

    /// <summary>Makes the set of identities held exactly <paramref name="identities"/>: starts new ones, drops the rest.</summary>
    public void SetIdentities(IEnumerable<SpiffeId> identities)
    {
        ArgumentNullException.ThrowIfNull(identities);
        var wanted = new Dictionary<string, SpiffeId>(StringComparer.Ordinal);
        foreach (var id in identities)
        {
            if (id.IsEmpty)
            {
                throw new ArgumentException("an identity is empty", nameof(identities));
            }
            wanted.TryAdd(id.ToString(), id);
        }
        List<IdentityWorker>? added = null;
        List<IdentityWorker>? removed = null;
        lock (_lock)
        {
            ObjectDisposedException.ThrowIf(_disposed, this);
            var current = _workers;
            var next = new Dictionary<string, IdentityWorker>(wanted.Count, StringComparer.Ordinal);
            foreach (var (key, id) in wanted)
            {
                if (!current.TryGetValue(key, out var worker))
                {
                    worker = new IdentityWorker(this, id, _stop.Token);
                    (added ??= []).Add(worker);
                }
                next.Add(key, worker);
            }
            foreach (var (key, worker) in current)
            {
                if (!wanted.ContainsKey(key))
                {
                    (removed ??= []).Add(worker);
                }
            }
            if (added is null && removed is null)
            {
                return;
            }
            _workers = next;
            // Started under the lock so a concurrent Dispose either sees them in _workers or prevents them.
            foreach (var worker in added ?? [])
            {
                Log.IdentityAdded(_logger, worker.Identity.ToString());
                worker.Start();
            }
        }
        foreach (var worker in removed ?? [])
        {
            Log.IdentityRemoved(_logger, worker.Identity.ToString());
            worker.Stop();
        }
    }

    /// <summary>
    /// The certificate (with its private key) and chain for <paramref name="identity"/>, if one valid now is held.
    /// The same instances come back until renewal replaces them, so callers may cache TLS contexts per instance.
    /// </summary>
    public bool TryGetCertificate(SpiffeId identity, [NotNullWhen(true)] out X509Certificate2? certificateWithKey, [NotNullWhen(true)] out X509Certificate2Collection? chain)
        => TryGetCertificate(identity.ToString(), out certificateWithKey, out chain);

    /// <inheritdoc cref="TryGetCertificate(SpiffeId, out X509Certificate2?, out X509Certificate2Collection?)"/>
    public bool TryGetCertificate(string identity, [NotNullWhen(true)] out X509Certificate2? certificateWithKey, [NotNullWhen(true)] out X509Certificate2Collection? chain)
    {
        if (TryGetWorkloadCertificate(identity, out var cert))
        {
            certificateWithKey = cert.CertificateWithKey;
            chain = cert.Chain;
            return true;
        }
        certificateWithKey = null;
        chain = null;
        return false;
    }

    /// <summary>The whole held record (serial, validity, renewal time) for <paramref name="identity"/>, if valid now.</summary>
    public bool TryGetWorkloadCertificate(string identity, [NotNullWhen(true)] out WorkloadCertificate? certificate)
    {
        certificate = null;
        if (identity is null || !_workers.TryGetValue(identity, out var worker) || worker.Current is not { } cert
            || !cert.IsValidAt(_options.Time.GetUtcNow()))
        {
            return false;
        }
        certificate = cert;
        return true;
    }

    /// <summary>Every identity held, for config_dump, in identity order.</summary>
    public ImmutableArray<CertificateStatus> Snapshot()
    {
        var workers = _workers.Values.ToArray();
        Array.Sort(workers, static (a, b) => string.CompareOrdinal(a.Identity.ToString(), b.Identity.ToString()));
        var builder = ImmutableArray.CreateBuilder<CertificateStatus>(workers.Length);
        var now = _options.Time.GetUtcNow();
        foreach (var worker in workers)
        {
            builder.Add(worker.Status(now));
        }
        return builder.MoveToImmutable();
    }

    /// <summary>
    /// A trust bundle istiod-lite pushed: validated, then made current (old + new roots during a rotation; new only
    /// once it is done). When its re-issue epoch differs from the last one seen, the CA has started signing under
    /// another root: every certificate is re-requested now rather than at its normal renewal. Returns why a bundle
    /// was refused (the xDS client NACKs it and the current bundle stays), or null.
    /// </summary>
    public string? ApplyTrustBundle(TrustBundleUpdate update)
    {
        ArgumentNullException.ThrowIfNull(update);
        var current = Trust;
        if (!string.Equals(update.TrustDomain, current.TrustDomain, StringComparison.Ordinal))
        {
            return $"trust bundle for trust domain '{update.TrustDomain}' refused: this proxy is in '{current.TrustDomain}'";
        }
        TrustBundle next;
        try
        {
            next = TrustBundle.FromRootPems(update.RootPems, current.TrustDomain, _options.Time);
        }
        catch (System.Security.Cryptography.CryptographicException ex)
        {
            return "trust bundle refused: " + ex.Message;
        }
        if (TrustSource.Replace(next))
        {
            Log.TrustBundleChanged(_logger, next.Roots.Count, next.Describe());
        }
        var previousEpoch = Interlocked.Exchange(ref _reissueEpoch, (long)update.ReissueEpoch);
        if (previousEpoch != (long)update.ReissueEpoch)
        {
            var workers = _workers;
            Log.Reissuing(_logger, workers.Count, (long)update.ReissueEpoch);
            foreach (var worker in workers.Values)
            {
                worker.RefreshNow();
            }
        }
        return null;
    }

    /// <summary>Jittered exponential backoff: base * 2^(n-1), capped, times a random factor in [0.5, 1.0].</summary>
    internal TimeSpan Backoff(int failures)
    {
        var baseMs = _options.InitialBackoff.TotalMilliseconds * Math.Pow(2, Math.Max(0, failures - 1));
        var capped = Math.Min(baseMs, _options.MaxBackoff.TotalMilliseconds);
        return TimeSpan.FromMilliseconds(capped * (0.5 + (Random.Shared.NextDouble() / 2)));
    }

    public async ValueTask DisposeAsync()
    {
        IdentityWorker[] workers;
        lock (_lock)
        {
            if (_disposed)
            {
                return;
            }
            _disposed = true;
            workers = [.. _workers.Values];
        }
        if (_state is { } state)
        {
            state.Changed -= OnStateChanged;
        }
        await _stop.CancelAsync().ConfigureAwait(false);
        foreach (var worker in workers)
        {
            await worker.StopAndWaitAsync().ConfigureAwait(false);
        }
        _stop.Dispose();
        _channel.Dispose(); // and our own handler with it; a shared one stays with its owner
    }

    private static partial class Log
    {
        [LoggerMessage(1, LogLevel.Information, "certificate for {Identity} issued: serial {Serial}, valid until {NotAfter:u}, renewal at {RefreshAt:u}")]
        public static partial void Issued(ILogger logger, string identity, string serial, DateTimeOffset notAfter, DateTimeOffset refreshAt);

        [LoggerMessage(2, LogLevel.Warning, "certificate for {Identity} not obtained (attempt {Failures}), retrying in {DelayMs:F0} ms; {Serving}: {Error}")]
        public static partial void FetchFailed(ILogger logger, string identity, int failures, double delayMs, string serving, string error);

        [LoggerMessage(3, LogLevel.Information, "identity {Identity} now on this node: fetching its certificate")]
        public static partial void IdentityAdded(ILogger logger, string identity);

        [LoggerMessage(4, LogLevel.Information, "identity {Identity} left this node: certificate dropped")]
        public static partial void IdentityRemoved(ILogger logger, string identity);

        [LoggerMessage(5, LogLevel.Warning, "workload {Uid} has an identity that is not a valid SPIFFE ID, no certificate: {Error}")]
        public static partial void BadIdentity(ILogger logger, string uid, string error);

        [LoggerMessage(6, LogLevel.Error, "certificate for {Identity} expired at {NotAfter:u} and could not be renewed")]
        public static partial void Expired(ILogger logger, string identity, DateTimeOffset notAfter);

        [LoggerMessage(7, LogLevel.Error, "a CertificateChanged subscriber threw for {Identity}; renewals continue")]
        public static partial void SubscriberFailed(ILogger logger, string identity, Exception exception);

        [LoggerMessage(8, LogLevel.Information, "trust bundle now holds {Count} root(s): {Roots}")]
        public static partial void TrustBundleChanged(ILogger logger, int count, string roots);

        [LoggerMessage(9, LogLevel.Information, "the CA signs under a new root (re-issue epoch {Epoch}): re-requesting {Count} certificate(s) now")]
        public static partial void Reissuing(ILogger logger, int count, long epoch);
    }
}

using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;
using Ambient.Core.Identity;
using Ambient.Core.Protos.Ca;
using Ambient.Dataplane.Xds;
using Google.Protobuf.WellKnownTypes;
using Grpc.Core;

namespace Ambient.Dataplane.Identity;

internal sealed partial class CertificateManager
{
    /// <summary>
    /// The fetch/renew loop of one identity. The published certificate is swapped atomically and never disposed
    /// here: a TLS handshake may still be using a replaced one, so the GC reclaims it once nothing refers to it.
    /// </summary>
    private sealed class IdentityWorker
    {
        private readonly CertificateManager _owner;
        private readonly CancellationTokenSource _cts;
        private readonly Lock _statusLock = new();
        private WorkloadCertificate? _current;
        private Task _loop = Task.CompletedTask;
        private int _failures;
        private string? _lastError;
        private DateTimeOffset? _nextAttempt;
        // Completed to cut the wait for the next renewal short (a root rotation); replaced before each fetch.
        private TaskCompletionSource _refreshNow = new(TaskCreationOptions.RunContinuationsAsynchronously);

        public IdentityWorker(CertificateManager owner, SpiffeId identity, CancellationToken stopAll)
        {
            _owner = owner;
            Identity = identity;
            _cts = CancellationTokenSource.CreateLinkedTokenSource(stopAll);
        }

        public SpiffeId Identity { get; }

        public WorkloadCertificate? Current => Volatile.Read(ref _current);

        public void Start() => _loop = Task.Run(() => RunAsync(_cts.Token));

        public void Stop() => _cts.Cancel();

        /// <summary>Fetches a new certificate now; one already in flight is followed by another.</summary>
        public void RefreshNow() => Volatile.Read(ref _refreshNow).TrySetResult();

        public async Task StopAndWaitAsync()
        {
            await _cts.CancelAsync().ConfigureAwait(false);
            try
            {
                await _loop.ConfigureAwait(false);
            }
            catch (OperationCanceledException)
            {
                // Stopping.
            }
            _cts.Dispose();
        }

        public CertificateStatus Status(DateTimeOffset now)
        {
            var cert = Current;
            lock (_statusLock)
            {
                var valid = cert is not null && cert.IsValidAt(now);
                var state = (valid, _failures > 0) switch
                {
                    (true, false) => CertificateState.Ready,
                    (true, true) => CertificateState.Retrying,
                    (false, true) => CertificateState.Failed,
                    (false, false) => cert is null ? CertificateState.Pending : CertificateState.Failed,
                };
                return new CertificateStatus(Identity.ToString(), state, cert?.SerialNumber, cert?.NotBefore, cert?.NotAfter,
                    _nextAttempt, _failures, _lastError);
            }
        }

        private async Task RunAsync(CancellationToken cancellationToken)
        {
            var time = _owner._options.Time;
            var logger = _owner._logger;
            while (!cancellationToken.IsCancellationRequested)
            {
                if (Volatile.Read(ref _refreshNow).Task.IsCompleted)
                {
                    Volatile.Write(ref _refreshNow, new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously));
                }
                var refreshNow = Volatile.Read(ref _refreshNow).Task;
                TimeSpan delay;
                try
                {
                    var cert = await FetchAsync(cancellationToken).ConfigureAwait(false);
                    Volatile.Write(ref _current, cert);
                    var now = time.GetUtcNow();
                    delay = cert.RefreshAt - now;
                    lock (_statusLock)
                    {
                        _failures = 0;
                        _lastError = null;
                        _nextAttempt = cert.RefreshAt;
                    }
                    Log.Issued(logger, Identity.ToString(), cert.SerialNumber, cert.NotAfter, cert.RefreshAt);
                    RaiseChanged();
                }
                catch (Exception ex) when (!cancellationToken.IsCancellationRequested && ex is not OperationCanceledException)
                {
                    var now = time.GetUtcNow();
                    var held = Current;
                    int failures;
                    lock (_statusLock)
                    {
                        failures = ++_failures;
                        _lastError = IstiodGrpc.Describe(ex);
                    }
                    delay = _owner.Backoff(failures);
                    if (held is not null && !held.IsValidAt(now) && now >= held.NotAfter)
                    {
                        Log.Expired(logger, Identity.ToString(), held.NotAfter);
                    }
                    var serving = held is not null && held.IsValidAt(now)
                        ? $"still serving serial {held.SerialNumber} until {held.NotAfter:u}"
                        : "no valid certificate to serve";
                    lock (_statusLock)
                    {
                        _nextAttempt = now + delay;
                    }
                    Log.FetchFailed(logger, Identity.ToString(), failures, delay.TotalMilliseconds, serving, _lastError!);
                }
                if (delay > TimeSpan.Zero && !refreshNow.IsCompleted)
                {
                    using var wait = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
                    await Task.WhenAny(Task.Delay(delay, time, wait.Token), refreshNow).ConfigureAwait(false);
                    await wait.CancelAsync().ConfigureAwait(false);
                }
            }
        }

        private void RaiseChanged()
        {
            try
            {
                _owner.CertificateChanged?.Invoke(Identity);
            }
            catch (Exception ex)
            {
                // A subscriber's bug must not stop renewals.
                Log.SubscriberFailed(_owner._logger, Identity.ToString(), ex);
            }
        }

        /// <summary>One CreateCertificate round trip; throws on any failure, including a leaf that is not what we asked for.</summary>
        private async Task<WorkloadCertificate> FetchAsync(CancellationToken cancellationToken)
        {
            var options = _owner._options;
            using var csr = WorkloadCsr.Create(Identity);
            var request = new IstioCertificateRequest
            {
                Csr = csr.CsrPem,
                ValidityDuration = (long)Math.Ceiling(options.RequestedTtl.TotalSeconds),
                Metadata = new Struct(),
            };
            request.Metadata.Fields[CertificateManagerOptions.ImpersonatedIdentityField] = Value.ForString(Identity.ToString());
            var metadata = new Metadata
            {
                { "authorization", "Bearer " + options.Token().Trim() },
                { "clusterid", options.ClusterId },
            };
            var response = await _owner._ca.CreateCertificateAsync(
                request, metadata, DateTime.UtcNow + options.RequestTimeout, cancellationToken).ConfigureAwait(false);
            var receivedAt = options.Time.GetUtcNow();
            if (response.CertChain.Count == 0)
            {
                throw new CryptographicException("the CA returned an empty certificate chain");
            }
            var leaf = csr.CombineWithLeaf(response.CertChain[0]);
            try
            {
                var chain = new X509Certificate2Collection();
                for (var i = 1; i < response.CertChain.Count; i++)
                {
                    chain.ImportFromPem(response.CertChain[i]);
                }
                if (!_owner.Trust.ValidateChain(leaf, chain, out var got, out var error))
                {
                    throw new CryptographicException("the CA returned a certificate that does not verify: " + error);
                }
                if (!got.Equals(Identity))
                {
                    throw new CryptographicException($"the CA returned a certificate for {got}, not the {Identity} asked for");
                }
                var notBefore = new DateTimeOffset(leaf.NotBefore.ToUniversalTime());
                var notAfter = new DateTimeOffset(leaf.NotAfter.ToUniversalTime());
                return new WorkloadCertificate(Identity, leaf, chain, leaf.SerialNumber, notBefore, notAfter,
                    WorkloadCertificate.ComputeRefreshAt(notBefore, notAfter, receivedAt));
            }
            catch
            {
                leaf.Dispose();
                throw;
            }
        }
    }
}

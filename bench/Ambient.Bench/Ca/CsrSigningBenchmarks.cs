using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;
using Ambient.Core.Identity;
using Ambient.Istiod.Ca;
using BenchmarkDotNet.Attributes;

namespace Ambient.Bench.Ca;

/// <summary>
/// The CA's per-request cost: verify the CSR's signature, then build and sign the leaf (what one ztunnel
/// certificate fetch costs istiod). Run: dotnet run -c Release --project bench/Ambient.Bench -- --filter '*CsrSigning*'
/// </summary>
[MemoryDiagnoser]
public class CsrSigningBenchmarks
{
    private static readonly SpiffeId Identity = SpiffeId.Parse("spiffe://cluster.local/ns/bench/sa/default");
    private string _stateDirectory = string.Empty;
    private CaSigner? _root;
    private CertificateAuthority? _ca;
    private WorkloadCsr? _csr;

    [GlobalSetup]
    public void Setup()
    {
        _stateDirectory = Path.Combine(Path.GetTempPath(), "ambient-bench-ca-" + Guid.NewGuid().ToString("N")[..12]);
        _root = CaStore.LoadOrCreate(_stateDirectory);
        _ca = new CertificateAuthority(_root);
        _csr = WorkloadCsr.Create(Identity);
    }

    [GlobalCleanup]
    public void Cleanup()
    {
        _csr?.Dispose();
        _root?.Dispose();
        Directory.Delete(_stateDirectory, recursive: true);
    }

    /// <summary>CSR parse + signature check alone, to see how the total splits.</summary>
    [Benchmark]
    public PublicKey VerifyCsr()
        => CertificateRequest.LoadSigningRequestPem(_csr!.CsrPem, HashAlgorithmName.SHA256).PublicKey;

    /// <summary>The whole issuance: CSR verify + key check + leaf build + ECDSA P-256 sign + PEM.</summary>
    [Benchmark(Baseline = true)]
    public string VerifyAndSign()
        => _ca!.IssueWorkloadCertificate(_csr!.CsrPem, Identity, TimeSpan.Zero).LeafPem;
}

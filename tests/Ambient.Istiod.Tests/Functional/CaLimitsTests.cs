using System.Net.Security;
using System.Security.Cryptography.X509Certificates;
using Ambient.Core.Grpc;
using Ambient.Core.Identity;
using Ambient.Core.Protos.Ca;
using Google.Protobuf.WellKnownTypes;

namespace Ambient.Istiod.Tests.Functional;

/// <summary>CreateCertificate through our own gRPC client against the real host: size limit, and a restart keeps the root.</summary>
public sealed class CaLimitsTests
{
    private static GrpcClient ClientFor(IstiodFixture istiod, out HttpMessageInvoker invoker)
    {
        var root = X509Certificate2.CreateFromPem(File.ReadAllText(istiod.Root));
        var handler = new SocketsHttpHandler
        {
            SslOptions = new SslClientAuthenticationOptions
            {
                TargetHost = "istiod.istio-system.svc",
                CertificateChainPolicy = new X509ChainPolicy
                {
                    TrustMode = X509ChainTrustMode.CustomRootTrust,
                    CustomTrustStore = { root },
                    RevocationMode = X509RevocationMode.NoCheck,
                },
            },
        };
        invoker = new HttpMessageInvoker(handler);
        return new GrpcClient(invoker, new Uri($"https://{istiod.Target}"));
    }

    private static IstioCertificateRequest Request(string csr, string identity) => new()
    {
        Csr = csr,
        Metadata = new Struct { Fields = { ["ImpersonatedIdentity"] = Value.ForString(identity) } },
    };

    [Fact]
    public async Task A_request_over_4_MiB_is_resource_exhausted()
    {
        await using var istiod = await IstiodFixture.StartAsync(Meshes.Demo());
        var client = ClientFor(istiod, out var invoker);
        using var _ = invoker;
        var options = new GrpcCallOptions([new("authorization", "Bearer " + istiod.TokenOf("node-2"))]);
        var huge = Request(new string('A', 5 * 1024 * 1024), "spiffe://cluster.local/ns/demo/sa/echo");
        var e = await Assert.ThrowsAsync<GrpcException>(() =>
            client.UnaryAsync(CaEndpointsPath, huge, IstioCertificateResponse.Parser, options));
        Assert.Equal(GrpcStatusCode.ResourceExhausted, e.Status);
        Assert.Contains("4194304", e.Detail);
    }

    [Fact]
    public async Task Certificates_issued_before_a_restart_still_verify_after_it()
    {
        using var dir = new Ambient.TestCommon.TempDir();
        string leafPem;
        string rootBefore;
        await using (var first = await IstiodFixture.StartAsync(Meshes.Demo(), reuse: null))
        {
            var client = ClientFor(first, out var invoker);
            using var _ = invoker;
            using var csr = WorkloadCsr.Create(SpiffeId.Parse("spiffe://cluster.local/ns/demo/sa/echo"));
            var response = await client.UnaryAsync(CaEndpointsPath, Request(csr.CsrPem, "spiffe://cluster.local/ns/demo/sa/echo"),
                IstioCertificateResponse.Parser, new GrpcCallOptions([new("authorization", "Bearer " + first.TokenOf("node-2"))]));
            leafPem = response.CertChain[0];
            rootBefore = File.ReadAllText(first.Root);
            // Keep the state folder for the second start: copy it out before the fixture deletes its scratch dir.
            CopyDirectory(first.StateFolder, Path.Combine(dir.Path, "state"));
            CopyDirectory(first.ConfigFolder, Path.Combine(dir.Path, "mesh"));
        }
        await using var second = await IstiodFixture.StartAsync(new Dictionary<string, string>(), reuse: dir);
        Assert.Equal(rootBefore, File.ReadAllText(second.Root));
        var trust = TrustBundle.FromPem(File.ReadAllText(second.Root));
        using var leaf = X509Certificate2.CreateFromPem(leafPem);
        Assert.True(trust.ValidateChain(leaf, null, out var error), error);
    }

    private const string CaEndpointsPath = "/istio.v1.auth.IstioCertificateService/CreateCertificate";

    private static void CopyDirectory(string from, string to)
    {
        Directory.CreateDirectory(to);
        foreach (var file in Directory.GetFiles(from, "*", SearchOption.AllDirectories))
        {
            var target = Path.Combine(to, Path.GetRelativePath(from, file));
            Directory.CreateDirectory(Path.GetDirectoryName(target)!);
            File.Copy(file, target);
        }
    }
}

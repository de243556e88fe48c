using System.Security.Cryptography.X509Certificates;
using Ambient.Core.Identity;
using Ambient.Core.Protos.Ca;
using Google.Protobuf.WellKnownTypes;
using Grpc.Core;

namespace Ambient.Istiod.Tests.Functional;

/// <summary>CreateCertificate through Grpc.Net.Client against the real host: size limit, and a restart keeps the root.</summary>
public sealed class CaLimitsTests
{
    private static IstioCertificateRequest Request(string csr, string identity) => new()
    {
        Csr = csr,
        Metadata = new Struct { Fields = { ["ImpersonatedIdentity"] = Value.ForString(identity) } },
    };

    [Fact]
    public async Task A_request_over_4_MiB_is_resource_exhausted()
    {
        await using var istiod = await IstiodFixture.StartAsync(Meshes.Demo());
        using var client = new IstiodGrpcClient(istiod);
        var huge = Request(new string('A', 5 * 1024 * 1024), "spiffe://cluster.local/ns/demo/sa/echo");
        var e = await Assert.ThrowsAsync<RpcException>(() => client.Invoker.AsyncUnaryCall(
            IstiodGrpcClient.CreateCertificate, null, new CallOptions(IstiodGrpcClient.BearerOf(istiod.TokenOf("node-2"))), huge).ResponseAsync);
        Assert.Equal(StatusCode.ResourceExhausted, e.StatusCode);
        Assert.Contains("maximum configured message size", e.Status.Detail, StringComparison.Ordinal);
    }

    [Fact]
    public async Task Certificates_issued_before_a_restart_still_verify_after_it()
    {
        using var dir = new Ambient.TestCommon.TempDir();
        string leafPem;
        string rootBefore;
        await using (var first = await IstiodFixture.StartAsync(Meshes.Demo(), reuse: null))
        {
            using var client = new IstiodGrpcClient(first);
            using var csr = WorkloadCsr.Create(SpiffeId.Parse("spiffe://cluster.local/ns/demo/sa/echo"));
            var response = await client.Invoker.AsyncUnaryCall(IstiodGrpcClient.CreateCertificate, null,
                new CallOptions(IstiodGrpcClient.BearerOf(first.TokenOf("node-2"))), Request(csr.CsrPem, "spiffe://cluster.local/ns/demo/sa/echo"));
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

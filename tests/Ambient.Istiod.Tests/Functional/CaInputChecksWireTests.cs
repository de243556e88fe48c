using Ambient.Core.Identity;

namespace Ambient.Istiod.Tests.Functional;

/// <summary>The CA's request checks as a gRPC peer sees them: python3-grpcio against a real istiod-lite.</summary>
public sealed class CaInputChecksWireTests : IAsyncLifetime
{
    private const string Echo = "spiffe://cluster.local/ns/demo/sa/echo";
    private IstiodFixture _istiod = null!;

    public async ValueTask InitializeAsync()
    {
        _istiod = await IstiodFixture.StartForGrpcioAsync(Meshes.Demo());
    }

    public async ValueTask DisposeAsync() => await _istiod.DisposeAsync();

    private string CsrFile(string suffix = "")
    {
        using var csr = WorkloadCsr.Create(SpiffeId.Parse(Echo));
        var path = Path.Combine(_istiod.Scratch, Guid.NewGuid().ToString("N") + ".csr");
        File.WriteAllText(path, csr.CsrPem + suffix);
        return path;
    }

    [Fact]
    public async Task Csr_followed_by_3_MB_of_junk_is_invalid_argument()
    {
        var result = await _istiod.CallCaAsync(CsrFile("\n" + new string('x', 3 * 1024 * 1024)), _istiod.TokenOf("node-2"), Echo);

        Assert.Equal("INVALID_ARGUMENT", result.GetProperty("code").GetString());
        Assert.Contains("after the PEM block", result.GetProperty("details").GetString(), StringComparison.Ordinal);
    }

    [Theory]
    [InlineData(-1)]
    [InlineData(90L * 86400 + 1)]
    public async Task Negative_or_too_long_validity_is_invalid_argument(long seconds)
    {
        var result = await _istiod.CallCaAsync(CsrFile(), _istiod.TokenOf("node-2"), Echo, seconds);

        Assert.Equal("INVALID_ARGUMENT", result.GetProperty("code").GetString());
        Assert.Contains("validity_duration", result.GetProperty("details").GetString(), StringComparison.Ordinal);
    }

    [Fact]
    public async Task Zero_validity_gets_the_default_certificate()
    {
        var result = await _istiod.CallCaAsync(CsrFile(), _istiod.TokenOf("node-2"), Echo, 0);

        Assert.Equal("OK", result.GetProperty("code").GetString());
        using var leaf = System.Security.Cryptography.X509Certificates.X509Certificate2.CreateFromPem(result.GetProperty("chain")[0].GetString());
        Assert.InRange((leaf.NotAfter.ToUniversalTime() - DateTime.UtcNow).TotalHours, 23.9, 24.1);
    }
}

using Ambient.TestCommon;

namespace Ambient.Ztunnel.Tests.Options;

public sealed class ZtunnelOptionsTests : IDisposable
{
    private readonly TempDir _dir = new();

    private string[] Args(string ttl) =>
        ["--node", "node-1", "--root", _dir.Write("root.pem", "x"), "--token-file", _dir.Write("node-1.token", "t"), "--cert-ttl", ttl];

    public void Dispose() => _dir.Dispose();

    [Fact]
    public void A_certificate_ttl_within_the_CA_maximum_is_taken()
    {
        var options = ZtunnelOptions.TryParse(Args("7776000"), out var error);
        Assert.Null(error);
        Assert.Equal(TimeSpan.FromDays(90), options!.CertificateTtl);
    }

    [Fact]
    public void A_certificate_ttl_over_the_CA_maximum_is_refused_at_start()
    {
        var options = ZtunnelOptions.TryParse(Args("7776001"), out var error);
        Assert.Null(options);
        Assert.Contains("over the CA's maximum", error, StringComparison.Ordinal);
    }
}

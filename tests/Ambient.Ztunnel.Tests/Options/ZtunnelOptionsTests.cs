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

    [Fact]
    public void The_trust_domain_is_a_flag_defaulting_to_cluster_local()
    {
        Assert.Equal("cluster.local", ZtunnelOptions.TryParse(Args("3600"), out var error)!.TrustDomain);
        Assert.Null(error);
        var options = ZtunnelOptions.TryParse([.. Args("3600"), "--trust-domain", "example.org"], out error);
        Assert.Null(error);
        Assert.Equal("example.org", options!.TrustDomain);

        Assert.Null(ZtunnelOptions.TryParse([.. Args("3600"), "--trust-domain", "Example.ORG"], out error));
        Assert.StartsWith("--trust-domain: ", error, StringComparison.Ordinal);
    }

    [Fact]
    public void The_dns_proxy_is_off_unless_a_port_is_given_and_upstreams_default_to_port_53()
    {
        var off = ZtunnelOptions.TryParse(Args("3600"), out _)!;
        Assert.Null(off.DnsPort);
        Assert.Empty(off.DnsUpstreams);

        var on = ZtunnelOptions.TryParse([.. Args("3600"), "--dns-port", "15053", "--dns-upstream", "10.0.0.2", "--dns-upstream", "[::1]:5353"],
            out var error)!;
        Assert.Null(error);
        Assert.Equal(15053, on.DnsPort);
        Assert.Equal(["10.0.0.2:53", "[::1]:5353"], on.DnsUpstreams.Select(e => e.ToString()));

        Assert.Null(ZtunnelOptions.TryParse([.. Args("3600"), "--dns-upstream", "resolver"], out error));
        Assert.StartsWith("--dns-upstream: ", error, StringComparison.Ordinal);
    }

    [Fact]
    public void In_pod_mode_is_off_unless_a_zds_socket_is_given()
    {
        Assert.Null(ZtunnelOptions.TryParse(Args("3600"), out _)!.ZdsSocket);
        var on = ZtunnelOptions.TryParse([.. Args("3600"), "--zds-socket", "/run/ambient/zds.sock"], out var error)!;
        Assert.Null(error);
        Assert.Equal("/run/ambient/zds.sock", on.ZdsSocket);
    }
}

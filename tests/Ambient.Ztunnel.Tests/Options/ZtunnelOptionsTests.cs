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

    [Fact]
    public void Kubernetes_mode_sends_the_projected_service_account_token_named_by_ca_token_file()
    {
        var root = _dir.Write("root.pem", "x");
        var projected = _dir.Write("tokens/istio-token", "eyJhbGciOiJSUzI1NiJ9.e30.c2ln");

        var kube = ZtunnelOptions.TryParse(["--node", "node-1", "--root", root, "--ca-token-file", projected], out var error);
        Assert.Null(error);
        Assert.True(kube!.ServiceAccountToken);
        Assert.Equal(projected, kube.TokenPath);

        var local = ZtunnelOptions.TryParse(Args("3600"), out error);
        Assert.Null(error);
        Assert.False(local!.ServiceAccountToken);

        Assert.Null(ZtunnelOptions.TryParse([.. Args("3600"), "--ca-token-file", projected], out error));
        Assert.Contains("exclude each other", error, StringComparison.Ordinal);
        Assert.Null(ZtunnelOptions.TryParse(["--node", "node-1", "--root", root, "--ca-token-file", projected + ".missing"], out error));
        Assert.StartsWith("--ca-token-file: file ", error, StringComparison.Ordinal);
    }

    [Fact]
    public void Without_a_node_token_the_projected_token_defaults_to_where_istio_mounts_it()
    {
        Assert.Equal("/var/run/secrets/tokens/istio-token", ZtunnelOptions.DefaultCaTokenFile);
        if (File.Exists(ZtunnelOptions.DefaultCaTokenFile))
        {
            return; // running in a pod with Istio's mount: the default is taken, nothing to refuse
        }

        Assert.Null(ZtunnelOptions.TryParse(["--node", "node-1", "--root", _dir.Write("root.pem", "x")], out var error));
        Assert.Contains("--token-file FILE (local mode) is required, or a projected service-account token at /var/run/secrets/tokens/istio-token", error, StringComparison.Ordinal);
    }
}


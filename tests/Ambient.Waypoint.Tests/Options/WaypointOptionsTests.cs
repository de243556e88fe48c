using System.Net;
using Ambient.TestCommon;

namespace Ambient.Waypoint.Tests.Options;

public sealed class WaypointOptionsTests : IDisposable
{
    private readonly TempDir _dir = new();

    public void Dispose() => _dir.Dispose();

    private string[] Args(params string[] extra) =>
    [
        "--node", "node-1", "--namespace", "shop", "--name", "waypoint", "--address", "127.10.0.5",
        "--root", _dir.Write("root.pem", "x"), "--token-file", _dir.Write("node-1.token", "t"), .. extra,
    ];

    [Fact]
    public void The_identity_is_the_gateways_service_account_in_its_namespace()
    {
        var options = WaypointOptions.TryParse(Args("--trust-domain", "example.org", "--admin", "0"), out var error);
        Assert.Null(error);
        Assert.Equal("spiffe://example.org/ns/shop/sa/waypoint", options!.Identity.ToString());
        Assert.Equal(IPAddress.Parse("127.10.0.5"), options.Address);
        Assert.Equal(15008, options.HbonePort);
        Assert.Equal(0, options.AdminPort);
        Assert.Equal(new Uri("https://127.0.0.1:15012"), options.Istiod);
    }

    [Fact]
    public void The_pod_is_named_after_the_gateway_unless_kubernetes_names_it()
    {
        Assert.Equal(Ambient.Core.Model.WaypointPlacement.PodNameFor("shop", "waypoint"), WaypointOptions.TryParse(Args(), out _)!.PodName);
        Assert.Equal("waypoint-5f7c9d8b6d-k2x7q", WaypointOptions.TryParse(Args("--pod-name", "waypoint-5f7c9d8b6d-k2x7q"), out _)!.PodName);
    }

    [Theory]
    [InlineData("--name")]
    [InlineData("--address")]
    [InlineData("--namespace")]
    public void A_missing_required_flag_is_refused_with_the_usage(string flag)
    {
        var args = Args().ToList();
        var at = args.IndexOf(flag);
        args.RemoveRange(at, 2);
        Assert.Null(WaypointOptions.TryParse([.. args], out var error));
        Assert.Contains("usage: waypoint", error, StringComparison.Ordinal);
    }

    [Fact]
    public void An_istiod_address_that_is_not_https_is_refused()
    {
        Assert.Null(WaypointOptions.TryParse(Args("--istiod", "http://127.0.0.1:15012"), out var error));
        Assert.Contains("not an https URL", error, StringComparison.Ordinal);
    }

    [Fact]
    public void Kubernetes_mode_sends_the_projected_service_account_token_named_by_ca_token_file()
    {
        var root = _dir.Write("root.pem", "x");
        var projected = _dir.Write("tokens/istio-token", "eyJhbGciOiJSUzI1NiJ9.e30.c2ln");
        string[] kubeArgs = ["--node", "node-1", "--namespace", "shop", "--name", "waypoint", "--address", "127.10.0.5", "--root", root];

        var kube = WaypointOptions.TryParse([.. kubeArgs, "--ca-token-file", projected], out var error);
        Assert.Null(error);
        Assert.True(kube!.ServiceAccountToken);
        Assert.Equal(projected, kube.TokenPath);

        var local = WaypointOptions.TryParse(Args(), out error);
        Assert.Null(error);
        Assert.False(local!.ServiceAccountToken);

        Assert.Null(WaypointOptions.TryParse([.. Args(), "--ca-token-file", projected], out error));
        Assert.Contains("exclude each other", error, StringComparison.Ordinal);
        Assert.Null(WaypointOptions.TryParse([.. kubeArgs, "--ca-token-file", projected + ".missing"], out error));
        Assert.StartsWith("--ca-token-file: file ", error, StringComparison.Ordinal);
        if (!File.Exists("/var/run/secrets/tokens/istio-token"))
        {
            // Neither token named, and none where Istio mounts it: say what is needed.
            Assert.Null(WaypointOptions.TryParse(kubeArgs, out error));
            Assert.Contains("--token-file FILE (local mode) is required, or a projected service-account token at /var/run/secrets/tokens/istio-token", error, StringComparison.Ordinal);
        }
    }
}

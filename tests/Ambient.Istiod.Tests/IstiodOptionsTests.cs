using Ambient.TestCommon;

namespace Ambient.Istiod.Tests;

public sealed class IstiodOptionsTests
{
    [Fact]
    public void Config_TakesAFileOrAFolder_StateBesideTheFolder()
    {
        using var dir = new TempDir();
        var file = dir.Write("mesh/demo.yaml", MeshYaml.Namespace("demo", dataplaneMode: null));
        var expectedState = Path.GetFullPath(Path.Combine(dir.Path, ".ambient-state"));

        var fromFile = IstiodOptions.TryParse(["--config", file], out var error);
        Assert.Null(error);
        Assert.Equal(file, fromFile!.ConfigFolder);
        Assert.Equal(expectedState, fromFile.StateFolder);

        var fromFolder = IstiodOptions.TryParse(["--config", Path.Combine(dir.Path, "mesh")], out error);
        Assert.Null(error);
        Assert.Equal(expectedState, fromFolder!.StateFolder);

        Assert.Null(IstiodOptions.TryParse(["--config", Path.Combine(dir.Path, "nope.yaml")], out error));
        Assert.Contains("neither a file nor a folder", error, StringComparison.Ordinal);
    }

    [Fact]
    public void Ca_dir_and_key_password_file_are_full_paths_and_the_password_needs_the_folder()
    {
        using var dir = new TempDir();
        var config = dir.Write("mesh/demo.yaml", MeshYaml.Namespace("demo", dataplaneMode: null));

        var defaults = IstiodOptions.TryParse(["--config", config], out var error);
        Assert.Null(error);
        Assert.Null(defaults!.CaDirectory); // the self-signed root stays the default

        var plugIn = IstiodOptions.TryParse(["--config", config, "--ca-dir", Path.Combine(dir.Path, "cacerts"), "--ca-key-password-file", Path.Combine(dir.Path, "pw")], out error);
        Assert.Null(error);
        Assert.Equal(Path.Combine(dir.Path, "cacerts"), plugIn!.CaDirectory);
        Assert.Equal(Path.Combine(dir.Path, "pw"), plugIn.CaKeyPasswordFile);

        Assert.Null(IstiodOptions.TryParse(["--config", config, "--ca-key-password-file", "pw"], out error));
        Assert.Contains("--ca-key-password-file needs --ca-dir", error, StringComparison.Ordinal);
    }

    [Fact]
    public void Network_netns_publishes_the_pod_and_service_cidrs_ambientctl_runs_with()
    {
        using var dir = new TempDir();
        var config = dir.Write("mesh/demo.yaml", MeshYaml.Namespace("demo", dataplaneMode: null));

        Assert.Equal(Ambient.Core.Model.NetworkMode.Loopback, IstiodOptions.TryParse(["--config", config], out var error)!.Addresses!.Mode); // as before
        var netns = IstiodOptions.TryParse(["--config", config, "--network", "netns", "--pod-cidr", "10.50.0.0/16", "--service-cidr", "10.60.0.0/16"], out error);
        Assert.Null(error);
        Assert.Equal(Ambient.Core.Model.NetworkMode.Netns, netns!.Addresses!.Mode);
        Assert.Equal("10.50.0.0/16", netns.Addresses.PodCidr.ToString());
        Assert.Equal("10.60.0.0/16", netns.Addresses.ServiceCidr.ToString());

        Assert.Null(IstiodOptions.TryParse(["--config", config, "--network", "bridge"], out error));
        Assert.Contains("not loopback or netns", error, StringComparison.Ordinal);
        Assert.Null(IstiodOptions.TryParse(["--config", config, "--network", "netns", "--pod-cidr", "10.50.0.0/16", "--service-cidr", "10.50.128.0/17"], out error));
        Assert.Contains("overlap", error, StringComparison.Ordinal);
    }

    [Fact]
    public void Ca_auth_is_node_tokens_unless_tokenreview_is_asked_and_trusted_accounts_come_from_flag_or_env()
    {
        using var dir = new TempDir();
        var config = dir.Write("mesh/demo.yaml", MeshYaml.Namespace("demo", dataplaneMode: null));
        Func<string, string?> env = name => name == "CA_TRUSTED_NODE_ACCOUNTS" ? "istio-system/ztunnel" : null;

        var local = IstiodOptions.TryParse(["--config", config], env, out var error);
        Assert.Null(error);
        Assert.Equal(CaAuthMode.NodeToken, local!.CaAuth);
        Assert.True(local.TrustedNodeAccounts.IsEmpty); // the variable means nothing to node tokens

        var kube = IstiodOptions.TryParse(["--config", config, "--ca-auth", "tokenreview", "--kubeconfig", "kc"], env, out error);
        Assert.Null(error);
        Assert.Equal(CaAuthMode.TokenReview, kube!.CaAuth);
        Assert.True(kube.TrustedNodeAccounts.Contains("istio-system", "ztunnel"));
        Assert.Equal(Path.GetFullPath("kc"), kube.Kubeconfig);

        var flag = IstiodOptions.TryParse(["--config", config, "--ca-auth", "tokenreview", "--ca-trusted-node-accounts", "kube-system/ztunnel"], env, out error);
        Assert.Null(error);
        Assert.False(flag!.TrustedNodeAccounts.Contains("istio-system", "ztunnel"));
        Assert.True(flag.TrustedNodeAccounts.Contains("kube-system", "ztunnel"));

        Assert.Null(IstiodOptions.TryParse(["--config", config, "--ca-auth", "jwt"], env, out error));
        Assert.Contains("not node-token or tokenreview", error, StringComparison.Ordinal);
        Assert.Null(IstiodOptions.TryParse(["--config", config, "--ca-trusted-node-accounts", "istio-system/ztunnel"], env, out error));
        Assert.Contains("needs --ca-auth tokenreview", error, StringComparison.Ordinal);
        Assert.Null(IstiodOptions.TryParse(["--config", config, "--ca-auth", "tokenreview"], _ => "ztunnel", out error));
        Assert.Contains("CA_TRUSTED_NODE_ACCOUNTS: 'ztunnel' is not namespace/serviceaccount", error, StringComparison.Ordinal);
    }
}

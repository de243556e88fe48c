using Ambient.Core.Identity;

namespace Ambient.Core.Tests.Identity;

public class SpiffeIdTests
{
    [Fact]
    public void Parse_ValidId_GivesPartsUriAndPrincipal()
    {
        var id = SpiffeId.Parse("spiffe://cluster.local/ns/demo/sa/echo-server");

        Assert.Equal("cluster.local", id.TrustDomain);
        Assert.Equal("demo", id.Namespace);
        Assert.Equal("echo-server", id.ServiceAccount);
        Assert.Equal("spiffe://cluster.local/ns/demo/sa/echo-server", id.ToString());
        Assert.Equal("cluster.local/ns/demo/sa/echo-server", id.Principal);
        Assert.False(id.IsEmpty);
    }

    [Fact]
    public void Constructor_FormatsUri_AndEqualsParsed()
    {
        var built = new SpiffeId(SpiffeId.DefaultTrustDomain, "default", SpiffeId.DefaultServiceAccount);
        var parsed = SpiffeId.Parse("spiffe://cluster.local/ns/default/sa/default");

        Assert.Equal("spiffe://cluster.local/ns/default/sa/default", built.ToString());
        Assert.Equal(parsed, built);
        Assert.Equal(parsed.GetHashCode(), built.GetHashCode());
        Assert.NotEqual(SpiffeId.Parse("spiffe://cluster.local/ns/default/sa/other"), built);
    }

    [Fact]
    public void Default_IsEmpty()
    {
        SpiffeId id = default;
        Assert.True(id.IsEmpty);
        Assert.Equal(string.Empty, id.ToString());
        Assert.Equal(string.Empty, id.Principal);
    }

    [Theory]
    [InlineData("", "empty")]
    [InlineData(null, "empty")]
    [InlineData("http://cluster.local/ns/a/sa/b", "does not start with 'spiffe://'")]
    [InlineData("SPIFFE://cluster.local/ns/a/sa/b", "lowercase")]
    [InlineData("Spiffe://cluster.local/ns/a/sa/b", "lowercase")]
    [InlineData("spiffe://cluster.local/ns/a/sa/b?x=1", "query or fragment")]
    [InlineData("spiffe://cluster.local/ns/a/sa/b#frag", "query or fragment")]
    [InlineData("spiffe://cluster.local/ns/a/sa/b/extra", "must have the form")]
    [InlineData("spiffe://cluster.local/ns/a/sa/b/", "must have the form")]
    [InlineData("spiffe://cluster.local/ns/a/sa", "must have the form")]
    [InlineData("spiffe://cluster.local/ns/a", "must have the form")]
    [InlineData("spiffe://cluster.local", "must have the form")]
    [InlineData("spiffe://cluster.local/", "must have the form")]
    [InlineData("spiffe://cluster.local/namespace/a/sa/b", "must have the form")]
    [InlineData("spiffe://cluster.local/ns/a/serviceaccount/b", "must have the form")]
    [InlineData("spiffe://cluster.local/sa/b/ns/a", "must have the form")]
    [InlineData("spiffe:///ns/a/sa/b", "trust domain is empty")]
    [InlineData("spiffe://cluster.local/ns//sa/b", "namespace is empty")]
    [InlineData("spiffe://cluster.local/ns/a/sa/", "service account is empty")]
    [InlineData("spiffe://Cluster.Local/ns/a/sa/b", "lowercase letters")]
    [InlineData("spiffe://cluster.local:443/ns/a/sa/b", "trust domain")]
    [InlineData("spiffe://user@cluster.local/ns/a/sa/b", "trust domain")]
    [InlineData("spiffe://cluster.local/ns/../sa/b", "must not be '..'")]
    [InlineData("spiffe://cluster.local/ns/a/sa/.", "must not be '.'")]
    [InlineData("spiffe://cluster.local/ns/a%2Fb/sa/b", "namespace 'a%2Fb'")]
    [InlineData("spiffe://cluster.local/ns/a b/sa/b", "namespace 'a b'")]
    [InlineData(" spiffe://cluster.local/ns/a/sa/b", "does not start")]
    public void TryParse_Malformed_FailsWithClearReason(string? input, string expectedReason)
    {
        Assert.False(SpiffeId.TryParse(input, out var id, out var error));
        Assert.True(id.IsEmpty);
        Assert.Contains(expectedReason, error, StringComparison.Ordinal);

        var ex = Assert.Throws<FormatException>(() => SpiffeId.Parse(input));
        Assert.Equal(error, ex.Message);
    }

    [Fact]
    public void Constructor_RejectsBadParts()
    {
        Assert.Throws<ArgumentException>(() => new SpiffeId("", "ns", "sa"));
        Assert.Throws<ArgumentException>(() => new SpiffeId("cluster.local", "a/b", "sa"));
        Assert.Throws<ArgumentException>(() => new SpiffeId("cluster.local", "ns", ""));
    }

    [Fact]
    public void TryParse_AcceptsSpecCharacters()
    {
        Assert.True(SpiffeId.TryParse("spiffe://my-td_1.example/ns/Team.A-b_c/sa/SA-1", out var id));
        Assert.Equal("Team.A-b_c", id.Namespace);
        Assert.Equal("SA-1", id.ServiceAccount);
    }
}

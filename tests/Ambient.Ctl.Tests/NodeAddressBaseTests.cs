using Ambient.Ctl.Local;

namespace Ambient.Ctl.Tests;

public class NodeAddressBaseTests
{
    [Theory]
    [InlineData(null, 1)]
    [InlineData("", 1)]
    [InlineData("127.0.1.0", 1)]
    [InlineData("127.0.77.0", 77)]
    [InlineData("127.0.255.0", 255)]
    public void Unset_is_the_default_range_and_127_0_N_0_moves_the_nodes(string? text, int octet)
    {
        Assert.Equal(octet, NodeAddressBase.Parse(text, out var error));
        Assert.Null(error);
    }

    [Theory]
    [InlineData("127.0.0.0")] // the control plane's range
    [InlineData("127.1.0.0")] // pods
    [InlineData("127.0.9.1")]
    [InlineData("10.0.9.0")]
    [InlineData("127.0.9")]
    [InlineData("::1")]
    [InlineData("nodes")]
    public void Anything_else_is_refused_with_the_variable_and_the_expected_form(string text)
    {
        NodeAddressBase.Parse(text, out var error);
        Assert.NotNull(error);
        Assert.Equal(NodeAddressBase.Variable, error.Field);
        Assert.Contains($"'{text}'", error.Message, StringComparison.Ordinal);
        Assert.Contains("127.0.N.0", error.Message, StringComparison.Ordinal);
    }
}

using Ambient.TestCommon;

namespace Ambient.Istiod.Tests;

public sealed class IstiodOptionsTests
{
    [Fact]
    public void Config_TakesAFileOrAFolder_StateBesideTheFolder()
    {
        using var dir = new TempDir();
        var file = dir.Write("mesh/demo.yaml", "apiVersion: v1\nkind: Namespace\nmetadata: {name: demo}\n");
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
}

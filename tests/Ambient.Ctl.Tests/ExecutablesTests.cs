using Ambient.Ctl.Local;

namespace Ambient.Ctl.Tests;

/// <summary>
/// The proxies' executables can be swapped for their native AOT publish (AMBIENT_ZTUNNEL, AMBIENT_WAYPOINT), which is
/// how the end-to-end tests and bench/run.sh l7 run the shipped builds through `ambientctl local up`.
/// </summary>
[Collection(nameof(ExecutablesTests))] // the variables are process-wide
public class ExecutablesTests
{
    [Theory]
    [InlineData(Executables.Ztunnel, "AMBIENT_ZTUNNEL")]
    [InlineData(Executables.Waypoint, "AMBIENT_WAYPOINT")]
    public void A_proxy_variable_names_the_executable_that_runs_instead(string name, string variable)
    {
        var file = Path.GetTempFileName();
        var before = Environment.GetEnvironmentVariable(variable);
        try
        {
            Environment.SetEnvironmentVariable(variable, file);
            var launcher = Executables.Find(name, out var error);
            Assert.Null(error);
            Assert.NotNull(launcher);
            Assert.Equal(file, launcher.FileName);
            Assert.Empty(launcher.PrefixArgs);
        }
        finally
        {
            Environment.SetEnvironmentVariable(variable, before);
            File.Delete(file);
        }
    }

    [Theory]
    [InlineData(Executables.Ztunnel, "AMBIENT_ZTUNNEL")]
    [InlineData(Executables.Waypoint, "AMBIENT_WAYPOINT")]
    public void A_proxy_variable_naming_no_file_is_an_error_that_names_the_variable(string name, string variable)
    {
        var missing = Path.Combine(Path.GetTempPath(), "ambient-no-such-" + Guid.NewGuid().ToString("N"));
        var before = Environment.GetEnvironmentVariable(variable);
        try
        {
            Environment.SetEnvironmentVariable(variable, missing);
            Assert.Null(Executables.Find(name, out var error));
            Assert.Contains(variable, error, StringComparison.Ordinal);
            Assert.Contains(missing, error, StringComparison.Ordinal);
        }
        finally
        {
            Environment.SetEnvironmentVariable(variable, before);
        }
    }

    [Fact]
    public void Other_programs_have_no_such_variable() =>
        Assert.Null(Executables.OverrideVariable(Executables.Istiod));
}

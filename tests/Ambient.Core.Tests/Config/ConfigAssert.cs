using System.Collections.Immutable;
using Ambient.Core.Config;

namespace Ambient.Core.Tests.Config;

internal static class ConfigAssert
{
    /// <summary>Some error names exactly this place and field and says <paramref name="message"/>; all errors shown if not.</summary>
    public static void HasError(ImmutableArray<ConfigError> errors, string file, int line, string field, string message) =>
        Assert.True(
            errors.Any(e => e.Source == new SourceLocation(file, line) && e.Field == field && e.Message.Contains(message, StringComparison.Ordinal)),
            $"expected {file}:{line}: {field}: ...{message}...; got:\n" + string.Join("\n", errors));
}

using System.Collections.Immutable;

namespace Ambient.Core.Config;

/// <summary>
/// The validated config of an <see cref="IConfigSource"/> at one point in time. <see cref="Resources"/> holds the
/// kinds we model (sorted by <see cref="Resource.Key"/>); <see cref="Ignored"/> the kinds we keep but do not act on
/// yet; <see cref="Errors"/> every problem currently present, in the order a user reads them (a folder: per file, in
/// path order).
/// Generation 0 is "nothing loaded yet"; each effective change increments it.
/// </summary>
internal sealed record ConfigSnapshot(
    long Generation,
    ImmutableArray<Resource> Resources,
    ImmutableArray<ConfigError> Errors,
    ImmutableArray<UnknownResource> Ignored)
{
    public static ConfigSnapshot Empty { get; } = new(0, [], [], []);

    /// <summary>Same resources, errors and ignored resources (generation not compared).</summary>
    public bool SameContent(ConfigSnapshot other) =>
        ValueEquality.Equal(Resources, other.Resources)
        && ValueEquality.Equal(Errors, other.Errors)
        && ValueEquality.Equal(Ignored, other.Ignored);
}

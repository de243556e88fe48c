using System.Collections.Immutable;
using Ambient.Core.Config;

namespace Ambient.Istiod.Tests.Config;

/// <summary>
/// A config source with no files and no YAML, as a Kubernetes API source will be: the test hands it resources and
/// errors and it publishes them as the next generation.
/// </summary>
internal sealed class InMemoryConfigSource(params Resource[] initial) : IConfigSource
{
    private readonly Lock _lock = new();
    private ConfigSnapshot _current = ConfigSnapshot.Empty;

    public ConfigSnapshot Current => Volatile.Read(ref _current);

    public event Action<ConfigSnapshot>? Changed;

    public Task StartAsync(CancellationToken cancellationToken)
    {
        Publish(initial);
        return Task.CompletedTask;
    }

    /// <summary>Publishes <paramref name="resources"/> (and <paramref name="errors"/>) as the next generation.</summary>
    public ConfigSnapshot Publish(Resource[] resources, params ConfigError[] errors)
    {
        ConfigSnapshot next;
        lock (_lock)
        {
            var sorted = resources.ToArray();
            Array.Sort(sorted, static (a, b) => string.CompareOrdinal(a.Key, b.Key));
            next = new ConfigSnapshot(_current.Generation + 1, [.. sorted], [.. errors], ImmutableArray<UnknownResource>.Empty);
            Volatile.Write(ref _current, next);
            // Raised under the lock: never concurrently, in generation order, as the interface promises.
            Changed?.Invoke(next);
        }
        return next;
    }

    public Task<ConfigSnapshot> WaitForGenerationAsync(long generation, CancellationToken cancellationToken) =>
        Current.Generation >= generation ? Task.FromResult(Current) : throw new NotSupportedException("publish first");

    public void Dispose()
    {
    }
}

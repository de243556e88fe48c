namespace Ambient.Core.Config;

/// <summary>
/// Where the mesh config comes from: a folder of YAML manifests today (FolderConfigSource, in Ambient.Config.Yaml),
/// the Kubernetes API later. A source reads and validates its input and publishes whole snapshots, so a consumer
/// never sees half an update and never parses anything itself.
/// </summary>
/// <remarks>
/// Problems with the input travel in the snapshot (<see cref="ConfigSnapshot.Errors"/>), not as exceptions: a
/// resource that turns bad, or an input that cannot be read for a while (a folder gone, an API server down), is
/// reported there while the source keeps publishing the last good form of what it can no longer read, so a typo or an
/// outage does not tear down running workloads. Each error names where it came from
/// (<see cref="ConfigError.Source"/>: a file and line, or for an API source the object).
/// </remarks>
internal interface IConfigSource : IDisposable
{
    /// <summary>The latest snapshot; <see cref="ConfigSnapshot.Empty"/> (generation 0) until started.</summary>
    ConfigSnapshot Current { get; }

    /// <summary>
    /// Raised after each effective change (a new generation with different content), never concurrently and in
    /// generation order. A handler that throws is logged and does not stop the source or the other handlers.
    /// </summary>
    event Action<ConfigSnapshot>? Changed;

    /// <summary>
    /// Loads the whole current config (generation 1) before completing, so the first consumer sees the mesh rather
    /// than an empty one, then follows changes until disposed. Throws when the source cannot exist at all (a folder
    /// that is missing); later problems are errors in snapshots.
    /// </summary>
    Task StartAsync(CancellationToken cancellationToken);

    /// <summary>Completes when <see cref="Current"/> reaches <paramref name="generation"/> (at once if it has).</summary>
    Task<ConfigSnapshot> WaitForGenerationAsync(long generation, CancellationToken cancellationToken);
}

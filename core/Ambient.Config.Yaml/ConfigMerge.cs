using Ambient.Hbone.Telemetry;
using System.Collections.Immutable;
using Ambient.Core.Config;
using Ambient.Core.Telemetry;

namespace Ambient.Config.Yaml;

/// <summary>The resources and errors one file currently contributes to the folder's config.</summary>
internal readonly record struct FileContribution(string File, ImmutableArray<Resource> Resources, ImmutableArray<ConfigError> Errors);

/// <summary>Merges per-file contributions into one snapshot, resolving duplicate resources.</summary>
internal static class ConfigMerge
{
    /// <summary>
    /// Files are taken in ordinal path order and documents in file order; when two resources share a
    /// kind/namespace/name the earlier one wins and the later one is dropped with an error naming both places.
    /// Order-based (rather than, say, newest-file-wins) so the outcome does not depend on timing.
    /// </summary>
    public static ConfigSnapshot Merge(long generation, IEnumerable<FileContribution> files)
    {
        var ordered = files.ToList();
        ordered.Sort(static (a, b) => string.CompareOrdinal(a.File, b.File));

        var winners = new Dictionary<string, Resource>(StringComparer.Ordinal);
        var errors = ImmutableArray.CreateBuilder<ConfigError>();
        foreach (var file in ordered)
        {
            errors.AddRange(file.Errors);
            foreach (var r in file.Resources)
            {
                if (winners.TryGetValue(r.Key, out var first))
                {
                    errors.Add(new ConfigError(r.Source, "metadata.name",
                        $"duplicate {LogText.Clip(r.Key)}: already defined at {first.Source}; this definition is ignored"));
                    continue;
                }
                winners.Add(r.Key, r);
            }
        }

        ServiceAccountReferences.RejectMissing(winners, errors);
        AddDeploymentPods(winners, errors);

        var keys = winners.Keys.ToList();
        keys.Sort(StringComparer.Ordinal);
        var resources = ImmutableArray.CreateBuilder<Resource>(keys.Count);
        var ignored = ImmutableArray.CreateBuilder<UnknownResource>();
        foreach (var key in keys)
        {
            var r = winners[key];
            if (r is UnknownResource u) ignored.Add(u);
            else resources.Add(r);
        }
        return new ConfigSnapshot(generation, resources.ToImmutable(), errors.ToImmutable(), ignored.ToImmutable());
    }

    /// <summary>
    /// A config folder has no Deployment controller: each Deployment stands for its pods, which join the resources
    /// as ordinary Pods (the Deployment stays, for display). A declared Pod of the same name wins, as the first
    /// definition always does.
    /// </summary>
    private static void AddDeploymentPods(Dictionary<string, Resource> winners, ImmutableArray<ConfigError>.Builder errors)
    {
        List<DeploymentResource>? deployments = null;
        foreach (var r in winners.Values)
        {
            if (r is DeploymentResource d) (deployments ??= []).Add(d);
        }
        if (deployments is null) return;
        deployments.Sort(static (a, b) => SourceOrder.Compare(a.Source, b.Source));
        foreach (var d in deployments)
        {
            foreach (var pod in DeploymentPods.Expand(d))
            {
                if (winners.TryGetValue(pod.Key, out var first))
                {
                    errors.Add(new ConfigError(d.Source, "metadata.name",
                        $"pod {LogText.Clip(pod.Metadata.Name)} of Deployment {d.Metadata.Namespace}/{d.Metadata.Name} is already defined at {first.Source}; this replica is left out"));
                    continue;
                }
                winners.Add(pod.Key, pod);
            }
        }
    }
}

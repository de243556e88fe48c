using System.Collections.Immutable;
using Ambient.Core.Config;

namespace Ambient.Config.Yaml;

/// <summary>
/// Kubernetes refuses a Pod whose spec.serviceAccountName names no ServiceAccount of its namespace (the service
/// account admission plugin), except "default", which exists in every namespace. We refuse it the same way, so a
/// typo does not quietly give the pod an identity nobody meant: the pod is left out and the error names it.
/// </summary>
internal static class ServiceAccountReferences
{
    public const string DefaultServiceAccount = "default";

    /// <summary>Removes from <paramref name="winners"/> every pod naming a missing service account, with an error each.</summary>
    public static void RejectMissing(Dictionary<string, Resource> winners, ImmutableArray<ConfigError>.Builder errors)
    {
        List<PodResource>? rejected = null;
        foreach (var r in winners.Values)
        {
            if (r is not PodResource pod || pod.ServiceAccountName.Length == 0 || pod.ServiceAccountName == DefaultServiceAccount) continue;
            if (winners.ContainsKey("ServiceAccount/" + pod.Metadata.Namespace + "/" + pod.ServiceAccountName)) continue;
            (rejected ??= []).Add(pod);
        }
        if (rejected is null) return;
        // Reported in file order, as the parser reports its own errors.
        rejected.Sort(static (a, b) => SourceOrder.Compare(a.Source, b.Source));
        foreach (var pod in rejected)
        {
            winners.Remove(pod.Key);
            errors.Add(new ConfigError(pod.Source, "spec.serviceAccountName",
                $"serviceaccount \"{pod.ServiceAccountName}\" not found in namespace \"{pod.Metadata.Namespace}\" " +
                $"(declare a ServiceAccount, or omit serviceAccountName for \"{DefaultServiceAccount}\"); pod {pod.Metadata.Namespace}/{pod.Metadata.Name} is ignored"));
        }
    }
}

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

    /// <summary>Removes from <paramref name="winners"/> every pod and Deployment naming a missing service account, with an error each.</summary>
    public static void RejectMissing(Dictionary<string, Resource> winners, ImmutableArray<ConfigError>.Builder errors)
    {
        List<(Resource Owner, string ServiceAccount)>? rejected = null;
        foreach (var r in winners.Values)
        {
            // A Deployment is checked before it is expanded: its pods would all fail alike.
            var serviceAccount = r switch
            {
                PodResource pod => pod.ServiceAccountName,
                DeploymentResource deployment => deployment.ServiceAccountName,
                _ => null,
            };
            if (serviceAccount is null || serviceAccount.Length == 0 || serviceAccount == DefaultServiceAccount) continue;
            if (winners.ContainsKey("ServiceAccount/" + r.Metadata.Namespace + "/" + serviceAccount)) continue;
            (rejected ??= []).Add((r, serviceAccount));
        }
        if (rejected is null) return;
        // Reported in file order, as the parser reports its own errors.
        rejected.Sort(static (a, b) => SourceOrder.Compare(a.Owner.Source, b.Owner.Source));
        foreach (var (owner, serviceAccount) in rejected)
        {
            winners.Remove(owner.Key);
            var isPod = owner is PodResource;
            errors.Add(new ConfigError(owner.Source, isPod ? "spec.serviceAccountName" : "spec.template.spec.serviceAccountName",
                $"serviceaccount \"{serviceAccount}\" not found in namespace \"{owner.Metadata.Namespace}\" " +
                $"(declare a ServiceAccount, or omit serviceAccountName for \"{DefaultServiceAccount}\"); " +
                $"{(isPod ? "pod" : "deployment")} {owner.Metadata.Namespace}/{owner.Metadata.Name} is ignored"));
        }
    }
}

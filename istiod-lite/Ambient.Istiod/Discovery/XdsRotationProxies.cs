using Ambient.Core.Identity;
using Ambient.Istiod.Ca;
using TrustBundleMessage = Ambient.Core.Protos.Security.TrustBundle;

namespace Ambient.Istiod.Discovery;

/// <summary>
/// A root rotation's view of the proxies through workload discovery: the bundle goes out as the TrustBundle xDS
/// resource, a proxy's ACK of it is its confirmation, and the leaves in use are those of the in-mesh pods on every
/// node whose proxy is subscribed.
/// </summary>
internal sealed class XdsRotationProxies(DiscoveryState discovery) : IRotationProxies
{
    public long PublishTrustBundle(TrustBundle bundle, ulong reissueEpoch)
    {
        var message = new TrustBundleMessage { TrustDomain = bundle.TrustDomain, ReissueEpoch = reissueEpoch };
        message.RootCerts.AddRange(bundle.RootPems());
        return discovery.PublishTrustBundle(message).Number;
    }

    public IReadOnlyList<string> NotAcknowledged(long version)
    {
        discovery.TrustBundleAcks.Acknowledged(version, out var pending);
        return pending;
    }

    public IReadOnlyList<(string Node, SpiffeId Identity)> LeavesInUse()
    {
        var snapshot = discovery.Current.Snapshot;
        var leaves = new List<(string, SpiffeId)>();
        foreach (var node in discovery.TrustBundleAcks.Nodes())
        {
            var seen = new HashSet<string>(StringComparer.Ordinal);
            foreach (var workload in snapshot.WorkloadsOnNode(node))
            {
                if (workload.IsInMesh && seen.Add(workload.Identity) && SpiffeId.TryParse(workload.Identity, out var id, out _))
                {
                    leaves.Add((node, id));
                }
            }
        }
        return leaves;
    }
}

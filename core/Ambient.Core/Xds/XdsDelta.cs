using System.Collections.Immutable;
using Ambient.Core.Protos.Discovery;

namespace Ambient.Core.Xds;

/// <summary>
/// What one DeltaDiscoveryResponse must carry for a type: resources to (re)send and names to remove.
/// The Resource messages are shared with the <see cref="XdsResourceSet"/> they came from: add them to a
/// response, never mutate them.
/// </summary>
internal sealed record XdsDelta(string TypeUrl, ImmutableArray<Resource> Resources, ImmutableArray<string> RemovedResources)
{
    public bool IsEmpty => Resources.IsEmpty && RemovedResources.IsEmpty;

    /// <summary>A response for this delta (nonce and system version are the transport's business).</summary>
    public DeltaDiscoveryResponse ToResponse(string nonce, string systemVersionInfo = "")
    {
        var response = new DeltaDiscoveryResponse { TypeUrl = TypeUrl, Nonce = nonce, SystemVersionInfo = systemVersionInfo };
        response.Resources.AddRange(Resources);
        response.RemovedResources.AddRange(RemovedResources);
        return response;
    }
}

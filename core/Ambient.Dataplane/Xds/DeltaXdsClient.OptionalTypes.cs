using Ambient.Core.Protos.Discovery;

namespace Ambient.Dataplane.Xds;

internal sealed partial class DeltaXdsClient
{
    /// <summary>
    /// Further resource types to subscribe to, each with the code that applies a response of that type on the read
    /// loop before the ACK (null accepts it, a reason NACKs it). Like the trust bundle they are optional: sync never
    /// waits for them, since a real istiod never sends Ambient's own types (the waypoint's HTTPRoute and
    /// ServiceProtocols). Set before <see cref="Start"/>.
    /// </summary>
    public IReadOnlyDictionary<string, Func<DeltaDiscoveryResponse, string?>> OptionalTypes { get; init; } =
        new Dictionary<string, Func<DeltaDiscoveryResponse, string?>>();

    private IEnumerable<string> SubscribedTypes()
    {
        foreach (var typeUrl in BuiltInTypes)
        {
            yield return typeUrl;
        }
        foreach (var typeUrl in OptionalTypes.Keys)
        {
            yield return typeUrl;
        }
    }

    private DeltaDiscoveryRequest ApplyOptional(DeltaDiscoveryResponse response, Func<DeltaDiscoveryResponse, string?> apply)
    {
        var reply = new DeltaDiscoveryRequest { TypeUrl = response.TypeUrl, ResponseNonce = response.Nonce };
        string? error;
        try
        {
            error = apply(response);
        }
        catch (Exception ex)
        {
            error = $"{response.TypeUrl} not applied: {ex.Message}";
        }
        if (error is not null)
        {
            Log.Nack(_logger, response.TypeUrl, response.Nonce, error);
            reply.ErrorDetail = new Ambient.Core.Protos.Rpc.Status { Code = Ambient.Core.Xds.DeltaXdsClientCache.NackCode, Message = error };
        }
        else
        {
            Log.Applied(_logger, response.TypeUrl, response.Resources.Count, response.RemovedResources.Count, response.Nonce, response.Resources.Count);
        }
        return reply;
    }
}

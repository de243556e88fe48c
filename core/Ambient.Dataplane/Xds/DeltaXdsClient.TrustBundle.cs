using Ambient.Core.Protos.Discovery;
using Ambient.Core.Xds;
using Microsoft.Extensions.Logging;
using TrustBundleMessage = Ambient.Core.Protos.Security.TrustBundle;

namespace Ambient.Dataplane.Xds;

/// <summary>A trust bundle istiod-lite pushed: the roots to trust and the re-issue epoch (see trust_bundle.proto).</summary>
internal sealed record TrustBundleUpdate(string TrustDomain, IReadOnlyList<string> RootPems, ulong ReissueEpoch);

internal sealed partial class DeltaXdsClient
{
    /// <summary>
    /// Judges each pushed trust bundle on the read loop, before the ACK: null accepts it, a reason NACKs it (the
    /// proxy keeps the bundle it has). Set before <see cref="Start"/>. Without it pushes are ACKed and ignored.
    /// </summary>
    public Func<TrustBundleUpdate, string?>? TrustBundleReceived { get; set; }

    private DeltaDiscoveryRequest ApplyTrustBundle(DeltaDiscoveryResponse response)
    {
        var reply = new DeltaDiscoveryRequest { TypeUrl = response.TypeUrl, ResponseNonce = response.Nonce };
        string? error = null;
        foreach (var resource in response.Resources)
        {
            if (resource.Name != XdsTypeUrls.TrustBundleName)
            {
                continue;
            }
            TrustBundleMessage message;
            try
            {
                message = resource.Resource_?.Unpack<TrustBundleMessage>()
                    ?? throw new InvalidDataException("the resource has no body");
            }
            catch (Exception ex) when (ex is InvalidDataException or Google.Protobuf.InvalidProtocolBufferException)
            {
                error = $"trust bundle '{resource.Name}' does not decode: {ex.Message}";
                break;
            }
            var update = new TrustBundleUpdate(message.TrustDomain, [.. message.RootCerts], message.ReissueEpoch);
            try
            {
                error = TrustBundleReceived?.Invoke(update);
            }
            catch (Exception ex)
            {
                error = "trust bundle not applied: " + ex.Message;
            }
        }
        // A removal leaves the bundle as it is: never trusting nothing is the safe reading of "no bundle".
        if (error is not null)
        {
            Log.Nack(_logger, response.TypeUrl, response.Nonce, error);
            reply.ErrorDetail = new Ambient.Core.Protos.Rpc.Status { Code = DeltaXdsClientCache.NackCode, Message = error };
        }
        return reply;
    }
}

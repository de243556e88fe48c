using Ambient.Dataplane.Xds;
using Ambient.Core.Xds;
using Ambient.Dataplane.Identity;

namespace Ambient.Ztunnel.Admin;

/// <summary>What :15021/healthz/ready answers: the node may take traffic once discovery has synced and every local
/// identity has a certificate (as Istio's ztunnel).</summary>
internal static class NodeReadiness
{
    public static bool IsReady(DeltaXdsClient discovery, CertificateManager certificates, out string reason)
    {
        if (!discovery.WaitForSyncAsync(CancellationToken.None).IsCompletedSuccessfully)
        {
            reason = "workload discovery has not synced";
            return false;
        }
        if (!certificates.AllReady)
        {
            reason = "certificates for local workloads are not all issued";
            return false;
        }
        reason = "";
        return true;
    }
}

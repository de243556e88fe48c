using System.Security.Authentication;
using System.Security.Cryptography.X509Certificates;
using Ambient.Hbone;
using Ambient.Core.Identity;

namespace Ambient.Dataplane.Identity;

/// <summary>The HBONE client's identity seam: the source pod's certificate out, the exact destination identity in.</summary>
internal sealed class MeshTls(CertificateManager certificates) : IHboneTlsProvider
{
    public (X509Certificate2 Certificate, X509Certificate2Collection? Chain) GetClientCertificate(string sourceIdentity)
    {
        if (certificates.TryGetCertificate(sourceIdentity, out var cert, out var chain))
        {
            return (cert, chain);
        }
        // Fail the dial rather than connect without the source's identity.
        throw new AuthenticationException($"no certificate yet for {sourceIdentity} (istiod not reachable, or the pod is not on this node)");
    }

    public bool ValidateServer(X509Certificate2 serverCert, X509Chain? chain, string expectedIdentity, out string? failure)
    {
        // The expected identity comes from the control plane; one that does not parse can match no certificate.
        if (!SpiffeId.TryParse(expectedIdentity, out var expected, out var invalid))
        {
            failure = $"the expected identity {expectedIdentity} is not a SPIFFE ID: {invalid}";
            return false;
        }
        // Several URI SANs are fine as long as one of them is the identity we dialed (Istio's ztunnel does the same).
        if (!certificates.Trust.ValidatePresentedChain(serverCert, chain, expected, out var error))
        {
            failure = error;
            return false;
        }
        failure = null;
        return true;
    }
}

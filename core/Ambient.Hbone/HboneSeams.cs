using System.Net;
using System.Security.Cryptography.X509Certificates;

namespace Ambient.Hbone;

/// <summary>
/// One pooled connection serves exactly one (source identity, destination identity, destination address) triple
/// (Istio ztunnel's HBONE): the client cert presented and the server identity checked are part of the connection.
/// </summary>
internal readonly record struct HbonePoolKey(string SourceIdentity, string DestinationIdentity, IPEndPoint Destination)
{
    public override string ToString() => $"{SourceIdentity} -> {DestinationIdentity} @ {Destination}";
}

/// <summary>Identity material and server verification for HBONE dials. The product implementation lives with the
/// workload cert manager; this seam keeps the transport free of identity code.</summary>
internal interface IHboneTlsProvider
{
    /// <summary>Client cert (with private key) + intermediate chain to present for the source identity.</summary>
    (X509Certificate2 Certificate, X509Certificate2Collection? Chain) GetClientCertificate(string sourceIdentity);

    /// <summary>Decide on the server's certificate: must chain to the mesh root and carry exactly the expected SPIFFE
    /// identity. On false, <paramref name="failure"/> says why (naming the identity found).</summary>
    bool ValidateServer(X509Certificate2 serverCert, X509Chain? chain, string expectedIdentity, out string? failure);
}

/// <summary>Opens one authenticated HTTP/2 connection for a pool key. The pool's only dependency, so tests and later
/// transports (e.g. dialing from inside a pod network namespace) can swap it.</summary>
internal interface IHboneConnector
{
    Task<Http2Connection> ConnectAsync(HbonePoolKey key, CancellationToken cancellationToken);
}

using System.Net;
using System.Security.Cryptography.X509Certificates;
using Ambient.Core.Identity;
using Ambient.Core.Model;
using Ambient.Dataplane.Identity;
using Ambient.Dataplane.State;
using Ambient.Hbone.Server;

namespace Ambient.Waypoint.Inbound;

/// <summary>
/// The HBONE server's seams for a waypoint: it presents the waypoint's own certificate, judges peers by the mesh
/// trust bundle, and accepts a CONNECT only for a Service it serves (by VIP:port, or hostname:port for a Service
/// with a VIP) or a workload that names it as waypoint. AuthorizationPolicies are decided per request
/// (<c>WaypointAuthorization</c>), not per tunnel.
/// </summary>
internal sealed class WaypointInbound : IInboundIdentity, IInboundTargets
{
    private readonly ProxyState _state;
    private readonly CertificateManager _certificates;
    private readonly ServedServices _served;
    private readonly string _identity;
    private readonly IPAddress _ownAddress;

    public WaypointInbound(ProxyState state, CertificateManager certificates, ServedServices served, SpiffeId identity, IPAddress ownAddress)
    {
        _state = state;
        _certificates = certificates;
        _served = served;
        _identity = identity.ToString();
        _ownAddress = ownAddress;
    }

    public X509Certificate2? GetServerCertificate(IPAddress listenerAddress, out X509Certificate2Collection? chain) =>
        _certificates.ServingCertificate(_identity, out chain);

    public string? ValidateClient(X509Certificate2 clientCert, X509Chain? chain, out string? failureReason) =>
        _certificates.ValidatePeer(clientCert, chain, out failureReason);

    public IPEndPoint? ResolveServiceTarget(IPAddress listenerAddress, string hostname, int port, out string? refusal)
    {
        var snapshot = _state.Snapshot;
        var service = snapshot.FindServiceByHostname(hostname);
        if (service is null || !Serves(snapshot, service))
        {
            refusal = $"authority {hostname} is not a service this waypoint serves";
            return null;
        }
        if (service.Vips.IsEmpty)
        {
            refusal = $"service {hostname} has no VIP (not supported by the waypoint yet)";
            return null;
        }
        refusal = null;
        return new IPEndPoint(service.Vips[0], port);
    }

    public string? Refusal(IPEndPoint target) =>
        target.Address.Equals(_ownAddress) ? "the target is the waypoint itself" : null;

    public bool IsServedTarget(IPAddress listenerAddress, IPEndPoint target)
    {
        var snapshot = _state.Snapshot;
        if (snapshot.FindServiceByVip(target.Address) is { } service)
        {
            return service.TryGetPort(target.Port, out _) && Serves(snapshot, service);
        }
        return snapshot.FindWorkloadByAddress(target.Address) is { } workload && _served.Serves(snapshot, workload);
    }

    // L4 policy is the destination ztunnel's to enforce; the waypoint's own (L7) policies apply per request.
    public bool IsAllowed(InboundConnectionInfo info, out string? denial)
    {
        denial = null;
        return true;
    }

    private bool Serves(MeshSnapshot snapshot, ServiceInfo service) => _served.Serves(snapshot, service);
}

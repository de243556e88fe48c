using System.Net;
using System.Net.Sockets;
using Ambient.Core;

namespace Ambient.Ztunnel.Proxy;

/// <summary>
/// The mesh's own endpoints, which no tunnel may reach: every ztunnel listener port (Istio's numbers, and the ports
/// this ztunnel was started with) on any address, and istiod (its address: the port we were pointed at, 15012 and
/// 15014). A tunnel into them lets one workload act as another - a pod's SOCKS5 port sends with that pod's identity -
/// and reaches the CA and the admin ports from inside the mesh. Both directions ask it: the inbound side before it
/// dials a CONNECT target, the outbound side before it dials a SOCKS5 destination.
/// </summary>
internal sealed class MeshEndpoints
{
    private readonly int[] _configuredPorts;
    private readonly IPAddress[] _istiod;
    private readonly int _istiodPort;

    /// <summary>Istio's ztunnel port numbers only, no istiod: what a server started without a node's options refuses.</summary>
    public static MeshEndpoints Default { get; } = new([], [], 0);

    public MeshEndpoints(IEnumerable<int> configuredPorts, IEnumerable<IPAddress> istiod, int istiodPort)
    {
        ArgumentNullException.ThrowIfNull(configuredPorts);
        ArgumentNullException.ThrowIfNull(istiod);
        var ports = new List<int>();
        foreach (int port in configuredPorts)
        {
            // Port 0 (tests) binds a free port: there is no number to refuse.
            if (port > 0 && MeshPorts.ListenerOn(port) is null && !ports.Contains(port))
            {
                ports.Add(port);
            }
        }
        _configuredPorts = [.. ports];
        _istiod = [.. istiod.Select(Canonical)];
        _istiodPort = istiodPort;
    }

    /// <summary>The node proxy's: its own listener ports and the istiod it was pointed at (a host name is resolved once, here).</summary>
    public static MeshEndpoints For(ZtunnelOptions options)
    {
        ArgumentNullException.ThrowIfNull(options);
        var host = options.Istiod.IdnHost;
        IPAddress[] istiod = IPAddress.TryParse(host, out var literal) ? [literal] : ResolveOrNone(host);
        return new MeshEndpoints(
            [options.HbonePort, options.SocksPort, options.AdminPorts.Admin, options.AdminPorts.Metrics, options.AdminPorts.Readiness],
            istiod, options.Istiod.Port);
    }

    /// <summary>Null when a tunnel may go to <paramref name="target"/>; otherwise why not (for the refusal and its log line).</summary>
    public string? Refusal(IPEndPoint target)
    {
        int port = target.Port;
        if (MeshPorts.ListenerOn(port) is { } listener)
        {
            return $"port {port} is a ztunnel port ({listener}); tunnels never reach the mesh's own listeners";
        }
        foreach (int configured in _configuredPorts)
        {
            if (port == configured)
            {
                return $"port {port} is a ztunnel port (a listener of this ztunnel); tunnels never reach the mesh's own listeners";
            }
        }
        if (port == _istiodPort || port is MeshPorts.IstiodGrpc or MeshPorts.IstiodMonitoring)
        {
            // A connect to the unspecified address reaches this host's loopback (Linux), so it counts as loopback.
            var address = Canonical(target.Address) switch
            {
                var any when any.Equals(IPAddress.Any) => IPAddress.Loopback,
                var any when any.Equals(IPAddress.IPv6Any) => IPAddress.IPv6Loopback,
                var other => other,
            };
            foreach (var istiod in _istiod)
            {
                if (address.Equals(istiod) || istiod.Equals(IPAddress.Any) || istiod.Equals(IPAddress.IPv6Any))
                {
                    return $"{target} is the control plane (istiod); tunnels never reach it";
                }
            }
        }
        return null;
    }

    private static IPAddress Canonical(IPAddress address) => address.IsIPv4MappedToIPv6 ? address.MapToIPv4() : address;

    private static IPAddress[] ResolveOrNone(string host)
    {
        try
        {
            return Dns.GetHostAddresses(host);
        }
        catch (SocketException)
        {
            // istiod unreachable by name: discovery reports that; the own ports are refused regardless.
            return [];
        }
    }
}

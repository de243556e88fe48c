using System.Net.Sockets;
using Ambient.Dataplane.State;
using Ambient.Hbone;

namespace Ambient.Waypoint.Forwarding;

/// <summary>
/// Opens the waypoint's side of a connection to a picked endpoint: an HBONE stream over the shared pool, presenting
/// the waypoint's own certificate and requiring the destination workload's identity (<c>:authority</c> =
/// podIP:targetPort), or plain TCP to a workload that is not in the mesh.
/// </summary>
internal sealed class UpstreamConnector(HboneConnectionPool pool, string ownIdentity)
{
    public async ValueTask<Stream> ConnectAsync(ResolvedDestination destination, CancellationToken cancellationToken)
    {
        if (destination.UseHbone)
        {
            var key = new HbonePoolKey(ownIdentity, destination.ExpectedIdentity!, destination.TunnelEndpoint!);
            return await pool.OpenAsync(key, destination.Authority, headers: null, cancellationToken).ConfigureAwait(false);
        }
        var socket = new Socket(destination.Target.AddressFamily, SocketType.Stream, ProtocolType.Tcp) { NoDelay = true };
        try
        {
            await socket.ConnectAsync(destination.Target, cancellationToken).ConfigureAwait(false);
            return new NetworkStream(socket, ownsSocket: true);
        }
        catch
        {
            socket.Dispose();
            throw;
        }
    }
}

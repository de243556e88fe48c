using System.Net;
using System.Net.Sockets;

namespace Ambient.TestCommon;

/// <summary>Real connected TCP sockets on 127.0.0.1, for tests that need a socket at each end of something.</summary>
public static class LoopbackSockets
{
    /// <summary>A connected loopback socket pair: the connecting end and the accepted end.</summary>
    public static async Task<(Socket Left, Socket Right)> PairAsync()
    {
        using var listener = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
        listener.Bind(new IPEndPoint(IPAddress.Loopback, 0));
        listener.Listen(1);
        var left = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
        var accept = listener.AcceptAsync();
        await left.ConnectAsync(listener.LocalEndPoint!);
        return (left, await accept);
    }
}

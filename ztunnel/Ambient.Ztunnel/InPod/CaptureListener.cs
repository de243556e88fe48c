using System.Buffers.Binary;
using System.Collections.Concurrent;
using System.Net;
using System.Net.Sockets;

namespace Ambient.Ztunnel.InPod;

/// <summary>
/// An accept loop on a listening socket made inside a pod's namespace (15001 outbound capture, 15006 plaintext
/// inbound): each accepted connection goes to the handler off the loop; removing the pod closes the socket and cuts
/// every connection still open on it. An upgrade stops the accepting alone (<see cref="StopAcceptingAsync"/>): the
/// socket may be shared with the next ztunnel, so it is closed only once no accept is in flight (the runtime would
/// otherwise disconnect a socket that is in use, and with it the next ztunnel's accept queue), and a connection the
/// last accept returned is served, never dropped.
/// </summary>
internal sealed class CaptureListener : IAsyncDisposable
{
    private readonly Socket _socket;
    private readonly Func<Socket, CancellationToken, Task> _handler;
    private readonly CancellationTokenSource _stopping = new();
    private readonly CancellationTokenSource _accepting = new();
    private readonly ConcurrentDictionary<Socket, byte> _connections = new();
    private readonly Task _acceptLoop;

    public CaptureListener(Socket listeningSocket, Func<Socket, CancellationToken, Task> handler)
    {
        _socket = listeningSocket;
        _handler = handler;
        LocalEndPoint = (IPEndPoint)listeningSocket.LocalEndPoint!;
        _acceptLoop = AcceptLoopAsync();
    }

    public IPEndPoint LocalEndPoint { get; }

    public int LiveConnections => _connections.Count;

    private async Task AcceptLoopAsync()
    {
        try
        {
            await AcceptUntilStoppedAsync().ConfigureAwait(false);
        }
        finally
        {
            _socket.Dispose();
        }
    }

    private async Task AcceptUntilStoppedAsync()
    {
        var token = _stopping.Token;
        var accepting = _accepting.Token;
        while (!accepting.IsCancellationRequested)
        {
            Socket client;
            try
            {
                client = await _socket.AcceptAsync(accepting).ConfigureAwait(false);
            }
            catch (Exception e) when (accepting.IsCancellationRequested || e is ObjectDisposedException)
            {
                return;
            }
            catch (SocketException)
            {
                // Transient (the peer gave up before accept, fd pressure): keep accepting after a breath.
                await Task.Delay(50, CancellationToken.None).ConfigureAwait(false);
                continue;
            }
            client.NoDelay = true;
            _connections[client] = 0;
            _ = ServeAsync(client, token);
        }
    }

    private async Task ServeAsync(Socket client, CancellationToken token)
    {
        await Task.Yield();
        try
        {
            await _handler(client, token).ConfigureAwait(false);
        }
        catch (Exception e) when (e is IOException or SocketException or OperationCanceledException or ObjectDisposedException)
        {
            // The connection ended badly; the handler has logged what it knew.
        }
        finally
        {
            _connections.TryRemove(client, out _);
            client.Dispose();
        }
    }

    /// <summary>
    /// The destination the app dialled before the pod's nat rules redirected it here (SO_ORIGINAL_DST); IPv4 only,
    /// as the rules are. Null when the socket was not redirected or the option is unavailable.
    /// </summary>
    public static IPEndPoint? OriginalDestination(Socket accepted)
    {
        const int solIp = 0, soOriginalDst = 80;
        Span<byte> address = stackalloc byte[16]; // struct sockaddr_in
        try
        {
            if (accepted.GetRawSocketOption(solIp, soOriginalDst, address) < 8)
            {
                return null;
            }
        }
        catch (SocketException)
        {
            return null;
        }
        var port = BinaryPrimitives.ReadUInt16BigEndian(address[2..]);
        return new IPEndPoint(new IPAddress(address.Slice(4, 4)), port);
    }

    /// <summary>Closes <paramref name="socket"/> with a TCP reset (linger 0): the app sees the refusal at once, and no byte it sent is delivered anywhere.</summary>
    public static void Reset(Socket socket)
    {
        try
        {
            socket.LingerState = new LingerOption(true, 0);
        }
        catch (Exception e) when (e is SocketException or ObjectDisposedException)
        {
        }
        socket.Dispose();
    }

    /// <summary>Stops accepting (the socket is closed once the loop has ended); open connections go on.</summary>
    public async Task StopAcceptingAsync()
    {
        await _accepting.CancelAsync().ConfigureAwait(false);
        await _acceptLoop.ConfigureAwait(false);
    }

    public async ValueTask DisposeAsync()
    {
        if (_stopping.IsCancellationRequested)
        {
            return;
        }
        await _stopping.CancelAsync().ConfigureAwait(false);
        await StopAcceptingAsync().ConfigureAwait(false);
        foreach (var connection in _connections.Keys)
        {
            connection.Dispose();
        }
    }
}

using System.Net;
using System.Net.Sockets;

namespace Ambient.TestCommon;

/// <summary>A TCP echo server bound at a pod's address (the pod's "container").</summary>
public sealed class TcpEcho : IDisposable
{
    private readonly Socket _listener;
    private readonly CancellationTokenSource _stop = new();
    private int _accepted;
    private long _bytesReceived;

    private TcpEcho(Socket listener)
    {
        _listener = listener;
        _ = AcceptLoopAsync();
    }

    /// <summary>Echoes on <paramref name="listening"/>, already bound and listening (e.g. made inside a pod's namespace); owns it.</summary>
    public static TcpEcho Start(Socket listening) => new(listening);

    public static TcpEcho Start(IPEndPoint endpoint)
    {
        var s = new Socket(endpoint.AddressFamily, SocketType.Stream, ProtocolType.Tcp);
        s.Bind(endpoint);
        s.Listen(512);
        return new TcpEcho(s);
    }

    private async Task AcceptLoopAsync()
    {
        while (!_stop.IsCancellationRequested)
        {
            Socket c;
            try { c = await _listener.AcceptAsync(_stop.Token); }
            catch (Exception) { return; }
            Interlocked.Increment(ref _accepted);
            _ = EchoAsync(c);
        }
    }

    private async Task EchoAsync(Socket c)
    {
        using (c)
        {
            var buf = new byte[64 * 1024];
            try
            {
                while (true)
                {
                    var n = await c.ReceiveAsync(buf, _stop.Token);
                    if (n == 0) { c.Shutdown(SocketShutdown.Send); return; }
                    Interlocked.Add(ref _bytesReceived, n);
                    await c.SendAsync(buf.AsMemory(0, n), _stop.Token);
                }
            }
            catch (Exception) { }
        }
    }

    /// <summary>Connections accepted so far.</summary>
    public int Accepted => Volatile.Read(ref _accepted);

    /// <summary>Bytes received so far, over all connections.</summary>
    public long BytesReceived => Interlocked.Read(ref _bytesReceived);

    public void Dispose()
    {
        _stop.Cancel();
        _listener.Dispose();
    }
}

using System.Buffers;
using System.Collections.Concurrent;
using System.Net;
using System.Net.Sockets;
using System.Text;
using Ambient.Core.Telemetry;
using Ambient.Hbone.Telemetry;
using Ambient.Ztunnel.Proxy.Outbound;
using Ambient.Ztunnel.Proxy.Relay;
using Ambient.Ztunnel.Proxy.Socks5;

namespace Ambient.Ztunnel.Tests.Socks5;

/// <summary>Builds sequences split into the given pieces, so parsers are exercised across segment boundaries.</summary>
internal sealed class TestSegment : ReadOnlySequenceSegment<byte>
{
    private TestSegment(ReadOnlyMemory<byte> memory, long runningIndex)
    {
        Memory = memory;
        RunningIndex = runningIndex;
    }

    public static ReadOnlySequence<byte> Split(byte[] data, params int[] cuts)
    {
        var first = new TestSegment(data.AsMemory(0, cuts.Length == 0 ? data.Length : cuts[0]), 0);
        var last = first;
        for (int i = 0; i < cuts.Length; i++)
        {
            int start = cuts[i];
            int end = i + 1 < cuts.Length ? cuts[i + 1] : data.Length;
            var next = new TestSegment(data.AsMemory(start, end - start), start);
            last.Next = next;
            last = next;
        }

        return new ReadOnlySequence<byte>(first, 0, last, last.Memory.Length);
    }

    public static ReadOnlySequence<byte> OneBytePerSegment(byte[] data) =>
        Split(data, Enumerable.Range(1, Math.Max(0, data.Length - 1)).ToArray());
}

/// <summary>A TCP echo server on loopback: echoes until the client's FIN, then half-closes back.</summary>
internal sealed class EchoServer : IAsyncDisposable
{
    private readonly Socket _listener;
    private readonly CancellationTokenSource _stop = new();
    private readonly Task _loop;

    public EchoServer(IPAddress address)
    {
        _listener = new Socket(address.AddressFamily, SocketType.Stream, ProtocolType.Tcp);
        _listener.Bind(new IPEndPoint(address, 0));
        _listener.Listen(16);
        EndPoint = (IPEndPoint)_listener.LocalEndPoint!;
        _loop = AcceptAsync();
    }

    public IPEndPoint EndPoint { get; }

    private async Task AcceptAsync()
    {
        var tasks = new List<Task>();
        try
        {
            while (true)
            {
                var socket = await _listener.AcceptAsync(_stop.Token);
                tasks.Add(EchoAsync(socket));
            }
        }
        catch (Exception) when (_stop.IsCancellationRequested)
        {
        }

        await Task.WhenAll(tasks);
    }

    private async Task EchoAsync(Socket socket)
    {
        using (socket)
        {
            var buffer = new byte[16 * 1024];
            try
            {
                int read;
                while ((read = await socket.ReceiveAsync(buffer, _stop.Token)) > 0)
                {
                    await socket.SendAsync(buffer.AsMemory(0, read), _stop.Token);
                }

                socket.Shutdown(SocketShutdown.Send);
            }
            catch (Exception ex) when (ex is SocketException or OperationCanceledException)
            {
            }
        }
    }

    public async ValueTask DisposeAsync()
    {
        _stop.Cancel();
        _listener.Dispose();
        await _loop;
        _stop.Dispose();
    }
}

/// <summary>
/// An outbound proxy minus the mesh: map the destination to a local endpoint, connect a socket and relay. Records
/// every call so tests can check what the front door passed in.
/// </summary>
internal sealed class TestOutboundProxy : IOutboundProxy
{
    private readonly Func<OriginalDestination, IPEndPoint?> _route;

    public TestOutboundProxy(Func<OriginalDestination, IPEndPoint?> route) => _route = route;

    public ConcurrentQueue<(IPAddress Source, IPEndPoint Client, OriginalDestination Destination)> Calls { get; } = new();

    public OutboundError? FailWith { get; init; }

    public bool Throw { get; init; }

    public async ValueTask<OutboundResult> ProxyAsync(IPAddress source, OutboundClient client, OriginalDestination destination, CancellationToken ct)
    {
        Calls.Enqueue((source, client.RemoteEndPoint, destination));
        if (Throw)
        {
            throw new InvalidOperationException("handler exploded");
        }

        if (FailWith is { } error)
        {
            return new OutboundResult(error, ResponseFlags.None, 0, 0);
        }

        var target = _route(destination);
        if (target is null)
        {
            return new OutboundResult(OutboundError.NoRoute, ResponseFlags.NoRoute, 0, 0);
        }

        var socket = new Socket(target.AddressFamily, SocketType.Stream, ProtocolType.Tcp);
        try
        {
            await socket.ConnectAsync(target, ct);
        }
        catch (SocketException)
        {
            socket.Dispose();
            return new OutboundResult(OutboundError.ConnectionRefused, ResponseFlags.Connect, 0, 0);
        }

        await using var upstream = new NetworkStream(socket, ownsSocket: true);
        await client.ConnectedAsync(upstream, (IPEndPoint)socket.LocalEndPoint!, ct);
        var relay = await BidirectionalRelay.RunAsync(client.Stream, upstream, client.CompleteWrites, null, cancellationToken: ct);
        return new OutboundResult(OutboundError.None, relay.Error is null ? ResponseFlags.None : ResponseFlags.UpstreamReset, relay.BytesAToB, relay.BytesBToA);
    }
}

/// <summary>Raw-byte SOCKS5 client pieces, so tests control every byte on the wire.</summary>
internal static class Socks5Wire
{
    public static readonly byte[] Greeting = [5, 1, 0];

    public static byte[] Request(byte command, byte addressType, byte[] address, int port)
    {
        var bytes = new List<byte> { 5, command, 0, addressType };
        if (addressType == 3)
        {
            bytes.Add((byte)address.Length);
        }

        bytes.AddRange(address);
        bytes.Add((byte)(port >> 8));
        bytes.Add((byte)port);
        return bytes.ToArray();
    }

    public static byte[] ConnectIPv4(IPEndPoint target) => Request(1, 1, target.Address.GetAddressBytes(), target.Port);

    public static byte[] ConnectIPv6(IPEndPoint target) => Request(1, 4, target.Address.GetAddressBytes(), target.Port);

    public static byte[] ConnectDomain(string host, int port) => Request(1, 3, Encoding.ASCII.GetBytes(host), port);

    public static async Task<Socket> OpenAsync(IPEndPoint listener)
    {
        var socket = new Socket(listener.AddressFamily, SocketType.Stream, ProtocolType.Tcp) { NoDelay = true };
        await socket.ConnectAsync(listener);
        return socket;
    }

    /// <summary>Reads exactly <paramref name="count"/> bytes, failing the test on early EOF or after 10 s.</summary>
    public static async Task<byte[]> ReadExactlyAsync(Socket socket, int count)
    {
        var buffer = new byte[count];
        using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(10));
        int filled = 0;
        while (filled < count)
        {
            int read = await socket.ReceiveAsync(buffer.AsMemory(filled), timeout.Token);
            Assert.True(read > 0, $"connection closed after {filled} of {count} expected bytes");
            filled += read;
        }

        return buffer;
    }

    /// <summary>Reads until the peer closes; returns the bytes read and whether the close was a clean FIN.</summary>
    public static async Task<(byte[] Data, bool CleanClose)> ReadToEndAsync(Socket socket, TimeSpan limit)
    {
        using var timeout = new CancellationTokenSource(limit);
        var data = new MemoryStream();
        var buffer = new byte[4096];
        try
        {
            int read;
            while ((read = await socket.ReceiveAsync(buffer, timeout.Token)) > 0)
            {
                data.Write(buffer, 0, read);
            }

            return (data.ToArray(), true);
        }
        catch (SocketException)
        {
            return (data.ToArray(), false);
        }
    }

    /// <summary>Greeting, method reply check, request; returns the reply.</summary>
    public static async Task<byte[]> HandshakeAsync(Socket socket, byte[] request)
    {
        await socket.SendAsync(Greeting);
        Assert.Equal(new byte[] { 5, 0 }, await ReadExactlyAsync(socket, 2));
        await socket.SendAsync(request);
        return await ReadReplyAsync(socket);
    }

    /// <summary>Reads one reply of either address family.</summary>
    public static async Task<byte[]> ReadReplyAsync(Socket socket)
    {
        var head = await ReadExactlyAsync(socket, 4);
        Assert.Equal(5, head[0]);
        int rest = head[3] switch { 1 => 4 + 2, 4 => 16 + 2, _ => throw new Xunit.Sdk.XunitException($"unexpected reply ATYP {head[3]}") };
        return [.. head, .. await ReadExactlyAsync(socket, rest)];
    }
}

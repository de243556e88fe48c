using System.Buffers.Binary;
using System.Net;
using System.Net.Sockets;
using System.Text;

namespace Ambient.LoadGen.Client;

/// <summary>
/// Where the generator connects: straight to <see cref="Endpoint"/>, or (when <see cref="SocksHost"/> is set) to the
/// SOCKS5 proxy at <see cref="Endpoint"/> asking it for <c>SocksHost:SocksPort</c> (RFC 1928 CONNECT, domain name).
/// Sockets are bound to <see cref="Bind"/> (the client pod's address) when given, and created inside the network
/// namespace <see cref="Netns"/> (a pod's <c>/run/netns/NAME</c>) when given, so the connection starts in that pod.
/// </summary>
internal sealed record Target(IPEndPoint Endpoint, IPAddress? Bind, string? SocksHost, int SocksPort, string? Netns = null)
{
    // Linux IP_BIND_ADDRESS_NO_PORT: bind() to the pod address without reserving an ephemeral port, so the port is
    // picked at connect() per 4-tuple and thousands of short connections do not run the pod address out of ports.
    private const int IpBindAddressNoPort = 24;
    private const int IpProtoIp = 0;

    public override string ToString() =>
        (SocksHost is null ? $"{Endpoint}" : $"socks5://{Endpoint} -> {SocksHost}:{SocksPort}") + (Netns is null ? "" : $" (from netns {Path.GetFileName(Netns)})");

    public async Task<Socket> ConnectAsync(CancellationToken ct)
    {
        var socket = Netns is null
            ? new Socket(Endpoint.AddressFamily, SocketType.Stream, ProtocolType.Tcp) { NoDelay = true }
            : NetnsSocketSource.For(Netns, Endpoint.AddressFamily).Take();
        try
        {
            if (Bind is not null)
            {
                if (OperatingSystem.IsLinux())
                {
                    socket.SetRawSocketOption(IpProtoIp, IpBindAddressNoPort, BitConverter.GetBytes(1));
                }
                socket.Bind(new IPEndPoint(Bind, 0));
            }
            await socket.ConnectAsync(Endpoint, ct).ConfigureAwait(false);
            if (SocksHost is not null)
            {
                await SocksConnectAsync(socket, ct).ConfigureAwait(false);
            }
            return socket;
        }
        catch
        {
            socket.Dispose();
            throw;
        }
    }

    /// <summary>
    /// Greeting (VER=5, NMETHODS=1, NO AUTH) and CONNECT request (VER, CMD=1, RSV, ATYP=3, LEN, host, port) go in one
    /// write; then the method selection (2 bytes) and the reply (VER, REP, RSV, ATYP, BND.ADDR, BND.PORT) are read.
    /// </summary>
    private async Task SocksConnectAsync(Socket socket, CancellationToken ct)
    {
        var host = Encoding.ASCII.GetBytes(SocksHost!);
        var request = new byte[3 + 5 + host.Length + 2];
        request[0] = 5; request[1] = 1; request[2] = 0;
        request[3] = 5; request[4] = 1; request[5] = 0; request[6] = 3; request[7] = (byte)host.Length;
        host.CopyTo(request, 8);
        BinaryPrimitives.WriteUInt16BigEndian(request.AsSpan(8 + host.Length), (ushort)SocksPort);
        await socket.SendAsync(request, SocketFlags.None, ct).ConfigureAwait(false);
        var reply = new byte[2 + 4 + 18];
        await ReadExactlyAsync(socket, reply.AsMemory(0, 6), ct).ConfigureAwait(false);
        if (reply[0] != 5 || reply[1] != 0)
        {
            throw new IOException($"SOCKS5 method selection refused: {reply[0]} {reply[1]}");
        }
        if (reply[3] != 0)
        {
            throw new IOException($"SOCKS5 CONNECT {SocksHost}:{SocksPort} refused with reply code {reply[3]}");
        }
        var rest = reply[5] switch { 1 => 4 + 2, 4 => 16 + 2, _ => throw new IOException($"SOCKS5 reply with address type {reply[5]}") };
        await ReadExactlyAsync(socket, reply.AsMemory(6, rest), ct).ConfigureAwait(false);
    }

    internal static async ValueTask ReadExactlyAsync(Socket socket, Memory<byte> buffer, CancellationToken ct)
    {
        while (!buffer.IsEmpty)
        {
            var n = await socket.ReceiveAsync(buffer, SocketFlags.None, ct).ConfigureAwait(false);
            if (n == 0)
            {
                throw new IOException("connection closed early");
            }
            buffer = buffer[n..];
        }
    }
}

using System.Buffers;
using System.Buffers.Binary;
using System.Globalization;
using System.Net;
using System.Net.Sockets;

namespace Ambient.Ztunnel.DnsProxy;

/// <summary>
/// Sends a query the mesh does not answer to the upstream resolvers, in order, each for <see cref="Timeout"/>, and
/// returns the first real response: over UDP for a UDP client, over TCP for a TCP one (so a large answer that a UDP
/// upstream truncates comes whole to a client that asked again over TCP). The query goes out as the client sent it,
/// so the response already carries the client's ID.
/// </summary>
/// <remarks>
/// Each UDP exchange uses a new socket, connected to the upstream: the kernel picks a random source port and drops
/// datagrams from anyone but the upstream, which with the ID check is the defence against forged answers (RFC 5452);
/// one shared socket would have to rebuild both. Forwarded names are not the hot path (mesh names are answered
/// locally), so one socket per forwarded query is a cost worth its safety.
/// </remarks>
internal sealed class DnsForwarder
{
    public DnsForwarder(IReadOnlyList<IPEndPoint> upstreams, TimeSpan? timeout = null)
    {
        Upstreams = upstreams;
        Timeout = timeout ?? TimeSpan.FromSeconds(2);
    }

    public IReadOnlyList<IPEndPoint> Upstreams { get; }

    /// <summary>How long one upstream gets to answer before the next is tried.</summary>
    public TimeSpan Timeout { get; }

    /// <summary>
    /// Forwards <paramref name="query"/>; returns the response's length in <paramref name="response"/>, or 0 when no
    /// upstream answered (the caller answers SERVFAIL). <paramref name="failure"/> says why the last attempt failed.
    /// </summary>
    public async ValueTask<(int Length, string? Failure)> ForwardAsync(ReadOnlyMemory<byte> query, Memory<byte> response, bool overTcp,
        CancellationToken cancellationToken)
    {
        string? failure = Upstreams.Count == 0 ? "no upstream resolver is configured" : null;
        foreach (var upstream in Upstreams)
        {
            using var timeout = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
            timeout.CancelAfter(Timeout);
            try
            {
                var length = overTcp
                    ? await ExchangeTcpAsync(upstream, query, response, timeout.Token).ConfigureAwait(false)
                    : await ExchangeUdpAsync(upstream, query, response, timeout.Token).ConfigureAwait(false);
                if (length > 0)
                {
                    return (length, null);
                }
                failure = $"{upstream} closed the connection without a response";
            }
            catch (OperationCanceledException) when (!cancellationToken.IsCancellationRequested)
            {
                failure = $"{upstream} did not answer within {Timeout.TotalSeconds.ToString(CultureInfo.InvariantCulture)} s";
            }
            catch (SocketException e)
            {
                failure = $"{upstream}: {e.SocketErrorCode}";
            }
            catch (IOException e)
            {
                failure = $"{upstream}: {e.Message}";
            }
        }
        return (0, failure);
    }

    private static async ValueTask<int> ExchangeUdpAsync(IPEndPoint upstream, ReadOnlyMemory<byte> query, Memory<byte> response, CancellationToken cancellationToken)
    {
        using var socket = new Socket(upstream.AddressFamily, SocketType.Dgram, ProtocolType.Udp);
        await socket.ConnectAsync(upstream, cancellationToken).ConfigureAwait(false);
        await socket.SendAsync(query, SocketFlags.None, cancellationToken).ConfigureAwait(false);
        while (true)
        {
            var length = await socket.ReceiveAsync(response, SocketFlags.None, cancellationToken).ConfigureAwait(false);
            if (IsResponseTo(query.Span, response.Span[..length]))
            {
                return length;
            }
            // A stale or forged datagram: keep waiting for the real one until the timeout.
        }
    }

    private static async ValueTask<int> ExchangeTcpAsync(IPEndPoint upstream, ReadOnlyMemory<byte> query, Memory<byte> response, CancellationToken cancellationToken)
    {
        using var socket = new Socket(upstream.AddressFamily, SocketType.Stream, ProtocolType.Tcp) { NoDelay = true };
        await socket.ConnectAsync(upstream, cancellationToken).ConfigureAwait(false);
        var framed = ArrayPool<byte>.Shared.Rent(query.Length + 2);
        try
        {
            BinaryPrimitives.WriteUInt16BigEndian(framed, (ushort)query.Length);
            query.CopyTo(framed.AsMemory(2));
            await socket.SendAsync(framed.AsMemory(0, query.Length + 2), SocketFlags.None, cancellationToken).ConfigureAwait(false);
        }
        finally
        {
            ArrayPool<byte>.Shared.Return(framed);
        }
        using var stream = new NetworkStream(socket, ownsSocket: false);
        if (!await ReadFullyAsync(stream, response[..2], cancellationToken).ConfigureAwait(false))
        {
            return 0;
        }
        var length = BinaryPrimitives.ReadUInt16BigEndian(response.Span);
        if (length > response.Length || !await ReadFullyAsync(stream, response[..length], cancellationToken).ConfigureAwait(false))
        {
            return 0;
        }
        return IsResponseTo(query.Span, response.Span[..length]) ? length : 0;
    }

    /// <summary>False on a clean end of stream before <paramref name="buffer"/> is full.</summary>
    internal static async ValueTask<bool> ReadFullyAsync(Stream stream, Memory<byte> buffer, CancellationToken cancellationToken)
    {
        var read = 0;
        while (read < buffer.Length)
        {
            var n = await stream.ReadAsync(buffer[read..], cancellationToken).ConfigureAwait(false);
            if (n == 0)
            {
                return false;
            }
            read += n;
        }
        return true;
    }

    private static bool IsResponseTo(ReadOnlySpan<byte> query, ReadOnlySpan<byte> response) =>
        response.Length >= DnsWire.HeaderLength
        && DnsWire.ReadId(response) == DnsWire.ReadId(query)
        && (DnsWire.ReadFlags(response) & DnsWire.QrFlag) != 0;

    /// <summary>
    /// The <c>nameserver</c> lines of a resolv.conf (port 53), as glibc reads them; 127.0.0.1 when there are none
    /// (glibc's default as well). Unreadable file: the same default.
    /// </summary>
    public static IReadOnlyList<IPEndPoint> ReadResolvConf(string path = "/etc/resolv.conf")
    {
        var servers = new List<IPEndPoint>();
        string[] lines;
        try
        {
            lines = File.ReadAllLines(path);
        }
        catch (IOException)
        {
            lines = [];
        }
        catch (UnauthorizedAccessException)
        {
            lines = [];
        }
        foreach (var line in lines)
        {
            var fields = line.Split((char[]?)null, StringSplitOptions.RemoveEmptyEntries);
            if (fields.Length >= 2 && fields[0] == "nameserver" && IPAddress.TryParse(fields[1], out var address))
            {
                servers.Add(new IPEndPoint(address, 53));
            }
        }
        if (servers.Count == 0)
        {
            servers.Add(new IPEndPoint(IPAddress.Loopback, 53));
        }
        return servers;
    }
}

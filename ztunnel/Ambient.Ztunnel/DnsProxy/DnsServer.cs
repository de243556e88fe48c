using System.Buffers;
using System.Buffers.Binary;
using System.Net;
using System.Net.Sockets;

namespace Ambient.Ztunnel.DnsProxy;

/// <summary>Tunables of a <see cref="DnsServer"/>; the defaults are the production values.</summary>
internal sealed record DnsServerOptions
{
    /// <summary>A TCP client must send its next query within this time or is disconnected (Istio's ztunnel: 5 s).</summary>
    public TimeSpan TcpIdleTimeout { get; init; } = TimeSpan.FromSeconds(5);

    /// <summary>TCP connections served at once; more are closed on accept.</summary>
    public int MaxTcpConnections { get; init; } = 128;

    /// <summary>Forwarded UDP queries in flight at once; more are dropped (the client retries).</summary>
    public int MaxForwardsInFlight { get; init; } = 256;
}

/// <summary>
/// The ztunnel's DNS proxy (Istio: port 15053) on one address, over UDP and TCP (RFC 1035 section 4.2, RFC 7766). Each
/// message goes to the <see cref="DnsAnswerer"/>; what it does not answer goes to the <see cref="DnsForwarder"/> and
/// the upstream's response is relayed. The UDP loop answers mesh names inline, from two buffers it owns; a forwarded
/// query gets its own rented buffers and runs beside the loop so a slow upstream never holds up local answers.
/// Malformed messages cost a FORMERR or nothing, never the loop: every receive is parsed by the bounds-checked
/// <see cref="DnsQueryParser"/>, and a TCP client that sends a bad length is disconnected.
/// </summary>
/// <remarks>
/// <see cref="Start(Socket, Socket, DnsAnswerer, DnsForwarder, ILogger, DnsServerOptions?, IPAddress?)"/> takes bound sockets, so
/// whoever opens them chooses where: on the node address (loopback mode), or inside a pod's network namespace.
/// </remarks>
internal sealed partial class DnsServer : IAsyncDisposable
{
    private readonly Socket _udp;
    private readonly Socket _tcp;
    private readonly DnsAnswerer _answerer;
    private readonly DnsForwarder _forwarder;
    private readonly ILogger _logger;
    private readonly DnsServerOptions _options;
    private readonly IPAddress? _client;
    private readonly CancellationTokenSource _stopping = new();
    private Task _udpLoop = Task.CompletedTask;
    private Task _acceptLoop = Task.CompletedTask;
    private int _tcpConnections;
    private int _forwardsInFlight;
    private int _disposed;

    private DnsServer(Socket udp, Socket tcp, DnsAnswerer answerer, DnsForwarder forwarder, ILogger logger, DnsServerOptions options, IPAddress? client)
    {
        _client = client;
        _udp = udp;
        _tcp = tcp;
        _answerer = answerer;
        _forwarder = forwarder;
        _logger = logger;
        _options = options;
        UdpEndPoint = (IPEndPoint)udp.LocalEndPoint!;
        TcpEndPoint = (IPEndPoint)tcp.LocalEndPoint!;
    }

    public IPEndPoint UdpEndPoint { get; }
    public IPEndPoint TcpEndPoint { get; }
    public DnsCounters Counters => _answerer.Counters;

    /// <summary>Binds UDP and TCP on <paramref name="endpoint"/> (port 0: one free port for both) and starts serving.</summary>
    public static DnsServer Start(IPEndPoint endpoint, DnsAnswerer answerer, DnsForwarder forwarder, ILogger logger, DnsServerOptions? options = null)
    {
        var (udp, tcp) = Bind(endpoint);
        return Start(udp, tcp, answerer, forwarder, logger, options);
    }

    /// <summary>Serves on sockets bound elsewhere (a UDP socket and a listening TCP socket); the server owns them from now on.</summary>
    /// <param name="client">
    /// Set for a proxy that serves one pod (in-pod mode): every query is that workload's, whatever its source address
    /// (after a REDIRECT it may be any address of the pod, or 127.0.0.1). Null: the query's source names the client.
    /// </param>
    public static DnsServer Start(Socket udp, Socket tcp, DnsAnswerer answerer, DnsForwarder forwarder, ILogger logger, DnsServerOptions? options = null,
        IPAddress? client = null)
    {
        foreach (var upstream in forwarder.Upstreams)
        {
            if (upstream.Equals(udp.LocalEndPoint) || upstream.Equals(tcp.LocalEndPoint))
            {
                // Forwarding to ourselves would send every unknown name round in a circle until the timeout.
                udp.Dispose();
                tcp.Dispose();
                throw new ArgumentException($"the DNS upstream {upstream} is this DNS proxy itself", nameof(forwarder));
            }
        }
        var server = new DnsServer(udp, tcp, answerer, forwarder, logger, options ?? new DnsServerOptions(), client);
        server._udpLoop = server.ServeUdpAsync();
        server._acceptLoop = server.AcceptTcpAsync();
        Log.Started(logger, server.UdpEndPoint, string.Join(", ", forwarder.Upstreams));
        return server;
    }

    private static (Socket Udp, Socket Tcp) Bind(IPEndPoint endpoint)
    {
        // With port 0 the UDP port is picked first and TCP must get the same number; another process may hold it on
        // TCP, so try a few times.
        for (var attempt = 0; ; attempt++)
        {
            var udp = new Socket(endpoint.AddressFamily, SocketType.Dgram, ProtocolType.Udp);
            Socket? tcp = null;
            try
            {
                udp.Bind(endpoint);
                tcp = new Socket(endpoint.AddressFamily, SocketType.Stream, ProtocolType.Tcp);
                tcp.Bind(new IPEndPoint(endpoint.Address, ((IPEndPoint)udp.LocalEndPoint!).Port));
                tcp.Listen(128);
                return (udp, tcp);
            }
            catch (SocketException) when (endpoint.Port == 0 && attempt < 10)
            {
                udp.Dispose();
                tcp?.Dispose();
            }
            catch
            {
                udp.Dispose();
                tcp?.Dispose();
                throw;
            }
        }
    }

    private async Task ServeUdpAsync()
    {
        await Task.Yield();
        // One byte more than any query we take, so an oversize datagram shows as such instead of as a shorter one.
        var receive = ArrayPool<byte>.Shared.Rent(DnsWire.MaxQueryLength + 1);
        var send = ArrayPool<byte>.Shared.Rent(DnsWire.MaxUdpPayload);
        var from = new SocketAddress(_udp.AddressFamily);
        var sources = new SourceAddressCache();
        try
        {
            while (!_stopping.IsCancellationRequested)
            {
                int received;
                try
                {
                    received = await _udp.ReceiveFromAsync(receive.AsMemory(0, DnsWire.MaxQueryLength + 1), SocketFlags.None, from, _stopping.Token)
                        .ConfigureAwait(false);
                }
                catch (OperationCanceledException)
                {
                    break;
                }
                catch (ObjectDisposedException)
                {
                    break;
                }
                catch (SocketException e)
                {
                    // A datagram bigger than the buffer, or an ICMP error for an earlier send: the socket is still fine.
                    Log.ReceiveFailed(_logger, UdpEndPoint, e.SocketErrorCode);
                    continue;
                }
                if (received > DnsWire.MaxQueryLength)
                {
                    _answerer.Counters.CountMalformed();
                    continue;
                }
                DnsAction action;
                int length;
                DnsQuery query;
                try
                {
                    action = _answerer.Answer(receive.AsSpan(0, received), _client ?? sources.AddressOf(from), overTcp: false,
                        send.AsSpan(0, DnsWire.MaxUdpPayload), out length, out query);
                }
                catch (Exception e)
                {
                    // A bug in answering one message must not end DNS for every pod of the node: log it, drop the message.
                    Log.AnswerFailed(_logger, e);
                    continue;
                }
                if (action == DnsAction.Respond)
                {
                    await SendUdpAsync(send.AsMemory(0, length), from).ConfigureAwait(false);
                }
                else if (action == DnsAction.Forward)
                {
                    StartUdpForward(receive.AsSpan(0, received), from, query);
                }
            }
        }
        finally
        {
            ArrayPool<byte>.Shared.Return(receive);
            ArrayPool<byte>.Shared.Return(send);
        }
    }

    private async ValueTask SendUdpAsync(ReadOnlyMemory<byte> datagram, SocketAddress to)
    {
        try
        {
            await _udp.SendToAsync(datagram, SocketFlags.None, to, _stopping.Token).ConfigureAwait(false);
        }
        catch (Exception e) when (e is SocketException or OperationCanceledException or ObjectDisposedException)
        {
            // The client is gone or we are stopping; DNS clients retry.
        }
    }

    private void StartUdpForward(ReadOnlySpan<byte> message, SocketAddress from, in DnsQuery query)
    {
        if (Interlocked.Increment(ref _forwardsInFlight) > _options.MaxForwardsInFlight)
        {
            Interlocked.Decrement(ref _forwardsInFlight);
            Log.ForwardShed(_logger, _options.MaxForwardsInFlight);
            return;
        }
        var copy = ArrayPool<byte>.Shared.Rent(message.Length);
        message.CopyTo(copy);
        var client = new SocketAddress(from.Family, from.Size);
        from.Buffer.Span[..from.Size].CopyTo(client.Buffer.Span);
        _ = ForwardUdpAsync(copy, message.Length, client, query);
    }

    private async Task ForwardUdpAsync(byte[] message, int length, SocketAddress client, DnsQuery query)
    {
        // Room for any datagram an upstream sends; more than the client takes means a truncated reply (below).
        var response = ArrayPool<byte>.Shared.Rent(DnsWire.MaxQueryLength);
        try
        {
            var (received, failure) = await _forwarder.ForwardAsync(message.AsMemory(0, length), response.AsMemory(0, DnsWire.MaxQueryLength),
                overTcp: false, _stopping.Token).ConfigureAwait(false);
            int reply;
            if (received == 0)
            {
                _answerer.Counters.CountForwardFailure();
                Log.ForwardFailed(_logger, failure);
                reply = DnsAnswerer.WriteNoRecords(response, message.AsSpan(0, length), query, DnsWire.ServerFailure, authoritative: false, truncated: false);
            }
            else if (received > query.MaxUdpResponse)
            {
                // The upstream sent more than this client takes over UDP (or more than we read): TC sends it to TCP.
                reply = DnsAnswerer.WriteNoRecords(response, message.AsSpan(0, length), query, DnsWire.NoError, authoritative: false, truncated: true);
            }
            else
            {
                reply = received;
            }
            await SendUdpAsync(response.AsMemory(0, reply), client).ConfigureAwait(false);
        }
        catch (OperationCanceledException)
        {
            // Stopping.
        }
        finally
        {
            ArrayPool<byte>.Shared.Return(response);
            ArrayPool<byte>.Shared.Return(message);
            Interlocked.Decrement(ref _forwardsInFlight);
        }
    }

    private async Task AcceptTcpAsync()
    {
        await Task.Yield();
        while (!_stopping.IsCancellationRequested)
        {
            Socket connection;
            try
            {
                connection = await _tcp.AcceptAsync(_stopping.Token).ConfigureAwait(false);
            }
            catch (Exception e) when (e is OperationCanceledException or ObjectDisposedException)
            {
                break;
            }
            catch (SocketException e)
            {
                Log.ReceiveFailed(_logger, TcpEndPoint, e.SocketErrorCode);
                continue;
            }
            if (Interlocked.Increment(ref _tcpConnections) > _options.MaxTcpConnections)
            {
                Interlocked.Decrement(ref _tcpConnections);
                connection.Dispose();
                continue;
            }
            _ = ServeTcpAsync(connection);
        }
    }

    /// <summary>Queries one after another on one connection, each with its 2-byte length, until the client closes,
    /// idles past the timeout, or sends a length no query has.</summary>
    private async Task ServeTcpAsync(Socket connection)
    {
        await Task.Yield();
        var receive = ArrayPool<byte>.Shared.Rent(DnsWire.MaxQueryLength);
        var send = ArrayPool<byte>.Shared.Rent(2 + DnsWire.MaxTcpMessage);
        using var idle = CancellationTokenSource.CreateLinkedTokenSource(_stopping.Token);
        var stream = new NetworkStream(connection, ownsSocket: true);
        try
        {
            var source = _client ?? (connection.RemoteEndPoint as IPEndPoint)?.Address;
            while (true)
            {
                idle.CancelAfter(_options.TcpIdleTimeout);
                if (!await DnsForwarder.ReadFullyAsync(stream, receive.AsMemory(0, 2), idle.Token).ConfigureAwait(false))
                {
                    break;
                }
                var length = BinaryPrimitives.ReadUInt16BigEndian(receive);
                if (length < DnsWire.HeaderLength || length > DnsWire.MaxQueryLength)
                {
                    // A runt or an oversize message: the stream cannot be trusted to be in step any more.
                    _answerer.Counters.CountMalformed();
                    break;
                }
                if (!await DnsForwarder.ReadFullyAsync(stream, receive.AsMemory(0, length), idle.Token).ConfigureAwait(false))
                {
                    break;
                }
                var action = _answerer.Answer(receive.AsSpan(0, length), source, overTcp: true, send.AsSpan(2, DnsWire.MaxTcpMessage),
                    out var responseLength, out var query);
                if (action == DnsAction.Drop)
                {
                    break;
                }
                if (action == DnsAction.Forward)
                {
                    var (received, failure) = await _forwarder.ForwardAsync(receive.AsMemory(0, length), send.AsMemory(2, DnsWire.MaxTcpMessage),
                        overTcp: true, _stopping.Token).ConfigureAwait(false);
                    responseLength = received;
                    if (received == 0)
                    {
                        _answerer.Counters.CountForwardFailure();
                        Log.ForwardFailed(_logger, failure);
                        responseLength = DnsAnswerer.WriteNoRecords(send.AsSpan(2), receive.AsSpan(0, length), query, DnsWire.ServerFailure,
                            authoritative: false, truncated: false);
                    }
                }
                BinaryPrimitives.WriteUInt16BigEndian(send, (ushort)responseLength);
                await stream.WriteAsync(send.AsMemory(0, 2 + responseLength), _stopping.Token).ConfigureAwait(false);
                if (!idle.TryReset())
                {
                    break;
                }
            }
        }
        catch (Exception e) when (e is OperationCanceledException or IOException or SocketException or ObjectDisposedException)
        {
            // Idle, reset by the client, or stopping: the connection simply ends.
        }
        finally
        {
            await stream.DisposeAsync().ConfigureAwait(false);
            ArrayPool<byte>.Shared.Return(receive);
            ArrayPool<byte>.Shared.Return(send);
            Interlocked.Decrement(ref _tcpConnections);
        }
    }

    public async ValueTask DisposeAsync()
    {
        if (Interlocked.Exchange(ref _disposed, 1) != 0)
        {
            return;
        }
        await _stopping.CancelAsync().ConfigureAwait(false);
        _udp.Dispose();
        _tcp.Dispose();
        try
        {
            await Task.WhenAll(_udpLoop, _acceptLoop).ConfigureAwait(false);
        }
        catch (Exception e) when (e is OperationCanceledException or ObjectDisposedException or SocketException)
        {
        }
        // _stopping is not disposed: forwards and TCP connections still winding down hold its token.
        Log.Stopped(_logger, UdpEndPoint);
    }

    /// <summary>
    /// The IP address of the last datagram's sender, kept while the sender stays the same (the port may change), so a
    /// pod that keeps asking costs no new <see cref="IPAddress"/> per query. Compares the raw socket address without
    /// its port bytes (2-3 in both sockaddr_in and sockaddr_in6).
    /// </summary>
    private sealed class SourceAddressCache
    {
        private readonly byte[] _raw = new byte[64];
        private int _rawLength;
        private IPAddress? _address;
        private readonly IPEndPoint _factory = new(IPAddress.Any, 0);

        public IPAddress? AddressOf(SocketAddress from)
        {
            var raw = from.Buffer.Span[..from.Size];
            if (_address is not null && raw.Length == _rawLength && raw[..2].SequenceEqual(_raw.AsSpan(0, 2))
                && raw[4..].SequenceEqual(_raw.AsSpan(4, _rawLength - 4)))
            {
                return _address;
            }
            if (raw.Length > _raw.Length || raw.Length < 4)
            {
                return null;
            }
            raw.CopyTo(_raw);
            _rawLength = raw.Length;
            _address = ((IPEndPoint)_factory.Create(from)).Address;
            return _address;
        }
    }

    private static partial class Log
    {
        [LoggerMessage(1, LogLevel.Information, "DNS proxy listening on {Endpoint} (UDP and TCP), forwarding other names to {Upstreams}")]
        public static partial void Started(ILogger logger, IPEndPoint endpoint, string upstreams);

        [LoggerMessage(2, LogLevel.Information, "DNS proxy on {Endpoint} stopped")]
        public static partial void Stopped(ILogger logger, IPEndPoint endpoint);

        [LoggerMessage(3, LogLevel.Debug, "DNS receive on {Endpoint} failed: {Error}")]
        public static partial void ReceiveFailed(ILogger logger, IPEndPoint endpoint, SocketError error);

        [LoggerMessage(4, LogLevel.Warning, "DNS query forwarding failed, answered SERVFAIL: {Failure}")]
        public static partial void ForwardFailed(ILogger logger, string? failure);

        [LoggerMessage(5, LogLevel.Warning, "DNS query dropped: {Limit} forwarded queries already in flight")]
        public static partial void ForwardShed(ILogger logger, int limit);

        [LoggerMessage(6, LogLevel.Error, "DNS proxy failed to answer a message; dropped it")]
        public static partial void AnswerFailed(ILogger logger, Exception exception);
    }
}

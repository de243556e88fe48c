using System.Buffers;
using System.IO.Pipelines;
using System.Threading.Channels;
using Ambient.Hbone;
using Ambient.Hbone.Http2;
using static Ambient.Core.Tests.Hbone.HboneTestSupport;

namespace Ambient.Core.Tests.Hbone;

/// <summary>The server role of <see cref="Http2Connection"/> (the ztunnel's inbound HBONE), against a scripted client.</summary>
public sealed class Http2ServerConnectionTests
{
    private sealed class Server : IAsyncDisposable
    {
        public required Http2Connection Connection { get; init; }

        public required ScriptedPeer Client { get; init; }

        public Channel<(HboneStream Stream, HboneRequest Request)> Requests { get; } = Channel.CreateUnbounded<(HboneStream, HboneRequest)>();

        public async Task<(HboneStream Stream, HboneRequest Request)> NextRequestAsync() =>
            await Requests.Reader.ReadAsync().AsTask().WaitAsync(TestTimeout);

        public ValueTask DisposeAsync() => Connection.DisposeAsync();
    }

    private static async Task<Server> StartAsync(HboneClientOptions? options = null, bool handshake = true, Func<Stream, Stream>? wrapTransport = null)
    {
        (Stream transport, ScriptedPeer client) = ScriptedPeer.Create();
        transport = wrapTransport?.Invoke(transport) ?? transport;
        Channel<(HboneStream, HboneRequest)>? requests = null;
        var connection = Http2Connection.CreateServer(transport, options ?? new HboneClientOptions { MaxStreamsPerConnection = 200 }, "scripted-client",
            (stream, request) => requests!.Writer.TryWrite((stream, request)));
        var server = new Server { Connection = connection, Client = client };
        requests = server.Requests;
        await connection.StartAsync();
        if (handshake)
        {
            await client.SendClientPrefaceAsync();
            await client.ReadFrameAsync(Http2FrameType.SETTINGS); // the server's SETTINGS (its preface)
        }
        return server;
    }

    private static Task SendConnectAsync(ScriptedPeer client, int streamId, string authority = "10.0.0.1:80") =>
        client.SendRequestAsync(streamId, false, (":method", "CONNECT"), (":authority", authority));

    private static async Task<(Http2ErrorCode Code, int LastStreamId)> ReadGoAwayAsync(ScriptedPeer client)
    {
        (_, byte[] payload) = await client.ReadFrameAsync(Http2FrameType.GOAWAY);
        Http2FrameReader.ReadGoAway(new ReadOnlySequence<byte>(payload), out int last, out Http2ErrorCode code);
        return (code, last);
    }

    private static async Task<(int StreamId, Http2ErrorCode Code)> ReadRstAsync(ScriptedPeer client)
    {
        (Http2Frame frame, byte[] payload) = await client.ReadFrameAsync(Http2FrameType.RST_STREAM);
        return (frame.StreamId, Http2FrameReader.ReadRstStreamErrorCode(new ReadOnlySequence<byte>(payload)));
    }

    [Fact]
    public async Task Server_preface_advertises_its_limits()
    {
        await using var server = await StartAsync(handshake: false);
        await server.Client.SendClientPrefaceAsync();
        (_, byte[] payload) = await server.Client.ReadFrameAsync(Http2FrameType.SETTINGS);
        var settings = new Dictionary<Http2SettingsParameter, uint>();
        foreach (Http2Setting s in Http2FrameReader.ReadSettings(new ReadOnlySequence<byte>(payload)))
        {
            settings[s.Parameter] = s.Value;
        }
        Assert.Equal(200u, settings[Http2SettingsParameter.SETTINGS_MAX_CONCURRENT_STREAMS]);
        Assert.Equal(1024u * 1024, settings[Http2SettingsParameter.SETTINGS_INITIAL_WINDOW_SIZE]);
        Assert.Equal(16u * 1024, settings[Http2SettingsParameter.SETTINGS_MAX_HEADER_LIST_SIZE]);
        // A server never speaks about push (RFC 9113 section 6.5.2).
        Assert.False(settings.ContainsKey(Http2SettingsParameter.SETTINGS_ENABLE_PUSH));
    }

    [Fact]
    public async Task Connect_reaches_the_handler_and_bytes_flow_both_ways_with_half_close()
    {
        await using var server = await StartAsync();
        await server.Client.SendRequestAsync(1, false, (":method", "CONNECT"), (":authority", "10.0.0.1:80"),
            ("forwarded", "for=\"10.0.0.2:4000\""), ("baggage", "k8s.pod.name=a"));
        (HboneStream stream, HboneRequest request) = await server.NextRequestAsync();
        Assert.Equal("CONNECT", request.Method);
        Assert.Equal("10.0.0.1:80", request.Authority);
        Assert.Null(request.Path);
        Assert.Null(request.Scheme);
        Assert.Equal("for=\"10.0.0.2:4000\"", request.Header("forwarded"));
        Assert.Equal("k8s.pod.name=a", request.Header("baggage"));

        await stream.RespondAsync(200);
        (Http2Frame headers, byte[] block) = await server.Client.ReadFrameAsync(Http2FrameType.HEADERS);
        Assert.Equal([(":status", "200")], server.Client.Decode(block, headers.StreamId));
        Assert.False(headers.EndStream);

        await server.Client.SendDataAsync(1, 100, endStream: true);
        var buffer = new byte[1000];
        int total = 0, n;
        while ((n = await stream.ReadAsync(buffer).AsTask().WaitAsync(TestTimeout)) > 0)
        {
            total += n;
        }
        Assert.Equal(100, total);

        // The client half-closed; our direction still works until we end it.
        await stream.WriteAsync(new byte[50]);
        Assert.Equal(50, (await server.Client.ReadFrameAsync(Http2FrameType.DATA)).Frame.PayloadLength);
        await stream.CompleteWritesAsync();
        Assert.True((await server.Client.ReadFrameAsync(Http2FrameType.DATA)).Frame.EndStream);
        await WaitUntilAsync(() => server.Connection.ActiveStreams == 0, TestTimeout, "the stream released once both sides ended");
        await stream.DisposeAsync();
    }

    [Fact]
    public async Task Error_answer_carries_its_reason_and_then_stops_the_client_with_NO_ERROR()
    {
        await using var server = await StartAsync();
        await server.Client.SendRequestAsync(1, false, (":method", "GET"), (":scheme", "https"), (":path", "/"), (":authority", "x"));
        (HboneStream stream, HboneRequest request) = await server.NextRequestAsync();
        Assert.Equal("/", request.Path);
        await stream.RespondAsync(400, "HBONE expects CONNECT without :path", endStream: true);
        await stream.DisposeAsync();

        (Http2Frame headers, byte[] block) = await server.Client.ReadFrameAsync(Http2FrameType.HEADERS);
        List<(string, string)> fields = server.Client.Decode(block, headers.StreamId);
        Assert.Equal((":status", "400"), fields[0]);
        (Http2Frame data, byte[] body) = await server.Client.ReadFrameAsync(Http2FrameType.DATA);
        Assert.Equal("HBONE expects CONNECT without :path", System.Text.Encoding.UTF8.GetString(body));
        if (!data.EndStream)
        {
            Assert.True((await server.Client.ReadFrameAsync(Http2FrameType.DATA)).Frame.EndStream);
        }
        // The request side was still open: RST_STREAM NO_ERROR tells the client to stop sending (RFC 9113 section 8.1).
        Assert.Equal((1, Http2ErrorCode.NO_ERROR), await ReadRstAsync(server.Client));
    }

    [Fact]
    public async Task Malformed_request_is_reset_and_never_reaches_the_handler()
    {
        await using var server = await StartAsync();
        await server.Client.SendRequestAsync(1, false, (":method", "CONNECT"), (":authority", "10.0.0.1:80"), ("X-Upper", "1"));
        Assert.Equal((1, Http2ErrorCode.PROTOCOL_ERROR), await ReadRstAsync(server.Client));
        await server.Client.SendRequestAsync(3, false, (":method", "CONNECT"), (":authority", "10.0.0.1:80"), ("connection", "close"));
        Assert.Equal((3, Http2ErrorCode.PROTOCOL_ERROR), await ReadRstAsync(server.Client));
        await server.Client.SendRequestAsync(5, false, ("x", "1"), (":method", "CONNECT"), (":authority", "10.0.0.1:80"));
        Assert.Equal((5, Http2ErrorCode.PROTOCOL_ERROR), await ReadRstAsync(server.Client));

        // The connection itself is fine: the next good request gets through.
        await SendConnectAsync(server.Client, 7);
        (HboneStream stream, HboneRequest request) = await server.NextRequestAsync();
        Assert.Equal(7, stream.StreamId);
        Assert.False(server.Requests.Reader.TryRead(out _));
        await stream.DisposeAsync();
    }

    [Fact]
    public async Task Streams_beyond_the_limit_are_refused()
    {
        await using var server = await StartAsync(new HboneClientOptions { MaxStreamsPerConnection = 1 });
        await SendConnectAsync(server.Client, 1);
        (HboneStream first, _) = await server.NextRequestAsync();
        await SendConnectAsync(server.Client, 3);
        Assert.Equal((3, Http2ErrorCode.REFUSED_STREAM), await ReadRstAsync(server.Client));
        Assert.Equal(1, server.Connection.ActiveStreams);
        await first.DisposeAsync();
    }

    [Fact]
    public async Task Header_list_over_the_limit_is_answered_431_and_the_connection_stays()
    {
        await using var server = await StartAsync(new HboneClientOptions { MaxHeaderListSize = 1024 });
        await server.Client.SendRequestAsync(1, false, (":method", "CONNECT"), (":authority", "10.0.0.1:80"), ("x-big", new string('a', 2000)));
        (Http2Frame headers, byte[] block) = await server.Client.ReadFrameAsync(Http2FrameType.HEADERS);
        Assert.Equal(1, headers.StreamId);
        Assert.True(headers.EndStream);
        Assert.Equal([(":status", "431")], server.Client.Decode(block, 1));

        await SendConnectAsync(server.Client, 3);
        (HboneStream stream, _) = await server.NextRequestAsync();
        Assert.Equal(3, stream.StreamId);
        await stream.DisposeAsync();
    }

    [Fact]
    public async Task Rapid_reset_ends_the_connection_with_ENHANCE_YOUR_CALM()
    {
        await using var server = await StartAsync(new HboneClientOptions { MaxStreamsPerConnection = 200, MaxPrematureResets = 5 });
        for (int i = 0; i < 5; i++)
        {
            int id = 1 + (2 * i);
            await SendConnectAsync(server.Client, id);
            await server.Client.SendRstStreamAsync(id, Http2ErrorCode.CANCEL);
        }
        (Http2ErrorCode code, int last) = await ReadGoAwayAsync(server.Client);
        Assert.Equal(Http2ErrorCode.ENHANCE_YOUR_CALM, code);
        Assert.Equal(9, last);
        await server.Connection.Closed.WaitAsync(TestTimeout);
        Assert.Contains("(rapid reset)", server.Connection.CloseReason!.Message, StringComparison.Ordinal);
    }

    [Fact]
    public async Task Resets_after_the_answer_and_occasional_cancellations_are_not_a_flood()
    {
        await using var server = await StartAsync(new HboneClientOptions { MaxStreamsPerConnection = 200, MaxPrematureResets = 3 });
        // Six answered tunnels, each later reset by the client, and three cancelled before their answer: 3 of 9 is
        // not more than half, so the connection stays.
        for (int i = 0; i < 6; i++)
        {
            int id = 1 + (2 * i);
            await SendConnectAsync(server.Client, id);
            (HboneStream stream, _) = await server.NextRequestAsync();
            await stream.RespondAsync(200);
            await server.Client.ReadFrameAsync(Http2FrameType.HEADERS);
            await server.Client.SendRstStreamAsync(id, Http2ErrorCode.CANCEL);
        }
        for (int i = 0; i < 3; i++)
        {
            int id = 13 + (2 * i);
            await SendConnectAsync(server.Client, id);
            await server.Client.SendRstStreamAsync(id, Http2ErrorCode.CANCEL);
        }
        await SendConnectAsync(server.Client, 19);
        await WaitUntilAsync(() => server.Requests.Reader.Count == 4, TestTimeout, "the last request reached the handler");
        Assert.False(server.Connection.IsClosed);
    }

    [Fact]
    public async Task Wrong_preface_is_a_PROTOCOL_ERROR()
    {
        await using var server = await StartAsync(handshake: false);
        await server.Client.SendBytesAsync("GET / HTTP/1.1\r\nHost: x\r\n\r\n"u8.ToArray());
        Assert.Equal(Http2ErrorCode.PROTOCOL_ERROR, (await ReadGoAwayAsync(server.Client)).Code);
        await server.Connection.Closed.WaitAsync(TestTimeout);
    }

    [Fact]
    public async Task First_frame_other_than_SETTINGS_is_a_PROTOCOL_ERROR()
    {
        await using var server = await StartAsync(handshake: false);
        await server.Client.SendBytesAsync(Http2Frame.ClientPreface.ToArray());
        await SendConnectAsync(server.Client, 1);
        Assert.Equal(Http2ErrorCode.PROTOCOL_ERROR, (await ReadGoAwayAsync(server.Client)).Code);
        Assert.False(server.Requests.Reader.TryRead(out _));
    }

    [Fact]
    public async Task Frames_on_streams_the_client_never_opened_are_a_PROTOCOL_ERROR()
    {
        await using var server = await StartAsync();
        await server.Client.SendDataAsync(5, 10);
        Assert.Equal(Http2ErrorCode.PROTOCOL_ERROR, (await ReadGoAwayAsync(server.Client)).Code);
    }

    [Fact]
    public async Task Drain_sends_GOAWAY_with_the_last_stream_and_waits_for_open_tunnels()
    {
        await using var server = await StartAsync();
        await SendConnectAsync(server.Client, 1);
        (HboneStream stream, _) = await server.NextRequestAsync();
        await stream.RespondAsync(200);

        Task drain = server.Connection.DrainAsync(TimeSpan.FromSeconds(30));
        (Http2ErrorCode code, int last) = await ReadGoAwayAsync(server.Client);
        Assert.Equal((Http2ErrorCode.NO_ERROR, 1), (code, last));
        Assert.False(drain.IsCompleted, "the drain must wait for the open tunnel");

        // A stream opened after the GOAWAY is refused; the open tunnel still works and, once both sides end, the
        // connection closes by itself.
        await SendConnectAsync(server.Client, 3);
        Assert.Equal((3, Http2ErrorCode.REFUSED_STREAM), await ReadRstAsync(server.Client));
        await stream.WriteAsync(new byte[10]);
        await stream.CompleteWritesAsync();
        await server.Client.SendDataAsync(1, 0, endStream: true);
        await drain.WaitAsync(TestTimeout);
        await server.Connection.Closed.WaitAsync(TestTimeout);
        await stream.DisposeAsync();
        // The closing GOAWAY repeats the first one's last stream: the refused stream 3 must not raise it (RFC 9113
        // section 6.8: the value never increases).
        Assert.Equal((Http2ErrorCode.NO_ERROR, 1), await ReadGoAwayAsync(server.Client));
    }

    [Fact]
    public async Task Drain_ends_within_its_timeout_when_the_client_stopped_reading_before_the_GOAWAY()
    {
        // A client that stopped reading (its socket buffer full) must not hold the drain, and so the HBONE server's
        // dispose, forever: the GOAWAY write itself is bounded by the drain timeout, then the connection is cut.
        StalledWritesStream? transport = null;
        await using var server = await StartAsync(wrapTransport: t => transport = new StalledWritesStream(t));
        await SendConnectAsync(server.Client, 1);
        (HboneStream stream, _) = await server.NextRequestAsync();
        await stream.RespondAsync(200);

        transport!.StallWrites();
        Task drain = server.Connection.DrainAsync(TimeSpan.FromMilliseconds(300));
        await drain.WaitAsync(TimeSpan.FromSeconds(10), TestContext.Current.CancellationToken);
        await server.Connection.Closed.WaitAsync(TimeSpan.FromSeconds(10), TestContext.Current.CancellationToken);
        await Assert.ThrowsAnyAsync<Exception>(async () => await stream.WriteAsync(new byte[1]));
        await stream.DisposeAsync();
    }

    /// <summary>A transport whose peer stopped reading, as a socket with a full send buffer: once stalled, a write
    /// waits until it is canceled or the transport is disposed (which fails it, as closing a socket does).</summary>
    private sealed class StalledWritesStream(Stream inner) : Stream
    {
        private readonly TaskCompletionSource _disposed = new(TaskCreationOptions.RunContinuationsAsynchronously);
        private volatile bool _stalled;

        public void StallWrites() => _stalled = true;

        public override bool CanRead => true;
        public override bool CanWrite => true;
        public override bool CanSeek => false;
        public override long Length => throw new NotSupportedException();
        public override long Position { get => throw new NotSupportedException(); set => throw new NotSupportedException(); }

        public override ValueTask<int> ReadAsync(Memory<byte> buffer, CancellationToken cancellationToken = default) => inner.ReadAsync(buffer, cancellationToken);

        public override async ValueTask WriteAsync(ReadOnlyMemory<byte> buffer, CancellationToken cancellationToken = default)
        {
            if (_stalled)
            {
                await _disposed.Task.WaitAsync(cancellationToken);
                throw new ObjectDisposedException(nameof(StalledWritesStream));
            }
            await inner.WriteAsync(buffer, cancellationToken);
        }

        public override Task FlushAsync(CancellationToken cancellationToken) => _stalled ? Task.CompletedTask : inner.FlushAsync(cancellationToken);
        public override int Read(byte[] buffer, int offset, int count) => throw new NotSupportedException();
        public override void Write(byte[] buffer, int offset, int count) => throw new NotSupportedException();
        public override void Flush() => throw new NotSupportedException();
        public override long Seek(long offset, SeekOrigin origin) => throw new NotSupportedException();
        public override void SetLength(long value) => throw new NotSupportedException();

        protected override void Dispose(bool disposing)
        {
            _disposed.TrySetResult();
            inner.Dispose();
            base.Dispose(disposing);
        }
    }

    [Fact]
    public async Task Padding_is_given_back_to_the_stream_window_too()
    {
        await using var server = await StartAsync(new HboneClientOptions { InitialStreamWindowSize = 65_535 });
        await SendConnectAsync(server.Client, 1);
        (HboneStream stream, _) = await server.NextRequestAsync();
        await stream.RespondAsync(200);
        // 200 frames of 1 data byte + 255 bytes of padding: 51,200 flow-controlled bytes, 200 of them readable.
        byte[] padded = new byte[1 + 1 + 255];
        padded[0] = 255;
        padded[1] = 7;
        for (int i = 0; i < 200; i++)
        {
            await server.Client.SendRawAsync(Http2FrameType.DATA, Http2Flags.PADDED, 1, padded);
        }
        var buffer = new byte[256];
        int total = 0;
        while (total < 200)
        {
            total += await stream.ReadAsync(buffer).AsTask().WaitAsync(TestTimeout);
        }
        // Half the stream window used: a WINDOW_UPDATE for stream 1 must come (only the connection's would without
        // the padding credit, and the stream window would shrink for good).
        while (true)
        {
            (Http2Frame frame, byte[] payload) = await server.Client.ReadFrameAsync(Http2FrameType.WINDOW_UPDATE);
            if (frame.StreamId == 1)
            {
                Assert.True(Http2FrameReader.ReadWindowUpdateIncrement(new ReadOnlySequence<byte>(payload)) >= 32_768);
                break;
            }
        }
        await stream.DisposeAsync();
    }

    /// <param name="peerStreamWindow">The client's SETTINGS_INITIAL_WINDOW_SIZE: how much we may send on the stream
    /// before its WINDOW_UPDATE (a small one holds a flush in progress).</param>
    private static async Task<(Server Server, HboneStream Stream)> StartTunnelAsync(int streamWindow = 65_535, uint? peerStreamWindow = null)
    {
        var server = await StartAsync(new HboneClientOptions { InitialStreamWindowSize = streamWindow });
        if (peerStreamWindow is { } window)
        {
            await server.Client.SendSettingsAsync(new Http2Setting(Http2SettingsParameter.SETTINGS_INITIAL_WINDOW_SIZE, window));
        }
        await SendConnectAsync(server.Client, 1);
        (HboneStream stream, _) = await server.NextRequestAsync();
        await stream.RespondAsync(200);
        await server.Client.ReadFrameAsync(Http2FrameType.HEADERS);
        return (server, stream);
    }

    /// <summary>Reads frames up to the ACK of a PING sent now; returns the stream WINDOW_UPDATE increments seen before it.</summary>
    private static async Task<List<uint>> StreamWindowUpdatesBeforePingAckAsync(ScriptedPeer client, int streamId)
    {
        await client.SendRawAsync(Http2FrameType.PING, Http2Flags.NONE, 0, new byte[8]);
        var increments = new List<uint>();
        while (true)
        {
            (Http2Frame frame, byte[] payload) = await client.ReadFrameAsync().WaitAsync(TestTimeout);
            if (frame.Type == Http2FrameType.PING)
            {
                return increments;
            }
            if (frame.Type == Http2FrameType.WINDOW_UPDATE && frame.StreamId == streamId)
            {
                increments.Add(Http2FrameReader.ReadWindowUpdateIncrement(new ReadOnlySequence<byte>(payload)));
            }
        }
    }

    /// <summary>Sends DATA frames of these lengths on stream 1 and reads, consuming nothing, until all of them are
    /// buffered; returns that read, not advanced yet.</summary>
    private static async Task<ReadResult> SendAndBufferUnconsumedAsync(Server server, PipeReader reader, params int[] frames)
    {
        long total = 0;
        foreach (int length in frames)
        {
            await server.Client.SendDataAsync(1, length);
            total += length;
        }
        ReadResult read;
        while ((read = await reader.ReadAsync().AsTask().WaitAsync(TestTimeout)).Buffer.Length < total)
        {
            reader.AdvanceTo(read.Buffer.Start, read.Buffer.End);
        }
        return read;
    }

    [Fact]
    public async Task Receive_reader_returns_window_for_consumed_bytes_only()
    {
        (Server server, HboneStream stream) = await StartTunnelAsync();
        await using var owner = server;
        PipeReader reader = stream.CreateReceiveReader();
        // 40,000 bytes: past half the 65,535 window, so consuming them would send a stream WINDOW_UPDATE at once.
        ReadResult read = await SendAndBufferUnconsumedAsync(server, reader, 16_000, 16_000, 8_000);
        // Examined, not consumed (a parser waiting for the rest of a request head): no window back yet.
        reader.AdvanceTo(read.Buffer.Start, read.Buffer.End);
        Assert.Empty(await StreamWindowUpdatesBeforePingAckAsync(server.Client, 1));

        // A canceled read (Kestrel stopping the connection) still carries every unread byte, and returns no window either.
        reader.CancelPendingRead();
        read = await reader.ReadAsync().AsTask().WaitAsync(TestTimeout);
        Assert.True(read.IsCanceled);
        Assert.Equal(40_000, read.Buffer.Length);
        reader.AdvanceTo(read.Buffer.Start, read.Buffer.End);
        Assert.Empty(await StreamWindowUpdatesBeforePingAckAsync(server.Client, 1));

        await server.Client.SendDataAsync(1, 1);
        read = await reader.ReadAsync().AsTask().WaitAsync(TestTimeout);
        Assert.Equal(40_001, read.Buffer.Length);
        // Consume all but the last byte: exactly that much comes back.
        reader.AdvanceTo(read.Buffer.GetPosition(40_000));
        Assert.Equal([40_000u], await StreamWindowUpdatesBeforePingAckAsync(server.Client, 1));
        await reader.CompleteAsync();
        await stream.DisposeAsync();
    }

    [Fact]
    public async Task Receive_reader_completes_at_END_STREAM()
    {
        (Server server, HboneStream stream) = await StartTunnelAsync();
        await using var owner = server;
        PipeReader reader = stream.CreateReceiveReader();
        await server.Client.SendDataAsync(1, 100, endStream: true);
        long total = 0;
        while (true)
        {
            ReadResult read = await reader.ReadAsync().AsTask().WaitAsync(TestTimeout);
            total += read.Buffer.Length;
            reader.AdvanceTo(read.Buffer.End);
            if (read.IsCompleted)
            {
                break;
            }
        }
        Assert.Equal(100, total);
        await reader.CompleteAsync();
        await stream.DisposeAsync();
    }

    [Fact]
    public async Task Receive_reader_surfaces_a_reset_as_the_streams_exception()
    {
        (Server server, HboneStream stream) = await StartTunnelAsync();
        await using var owner = server;
        PipeReader reader = stream.CreateReceiveReader();
        ValueTask<ReadResult> pending = reader.ReadAsync();
        await server.Client.SendRstStreamAsync(1, Http2ErrorCode.CANCEL);
        await Assert.ThrowsAnyAsync<HboneException>(async () => await pending.AsTask().WaitAsync(TestTimeout));
        await stream.DisposeAsync();
    }

    [Fact]
    public async Task Send_writer_sends_nothing_before_a_flush_and_then_one_DATA_frame_per_frame_size()
    {
        (Server server, HboneStream stream) = await StartTunnelAsync();
        await using var owner = server;
        PipeWriter writer = stream.CreateSendWriter();
        byte[] body = new byte[20_000];
        new Random(7).NextBytes(body);
        // Written in pieces, as Kestrel writes a response head and body.
        for (int offset = 0; offset < body.Length; offset += 3_000)
        {
            int n = Math.Min(3_000, body.Length - offset);
            body.AsSpan(offset, n).CopyTo(writer.GetSpan(n));
            writer.Advance(n);
        }
        Assert.Equal(20_000, writer.UnflushedBytes);
        FlushResult flushed = await writer.FlushAsync().AsTask().WaitAsync(TestTimeout);
        Assert.False(flushed.IsCanceled);

        // The peer's maximum frame size is 16 KiB: two frames, the bytes in order, no END_STREAM.
        (Http2Frame first, byte[] firstPayload) = await server.Client.ReadFrameAsync(Http2FrameType.DATA);
        (Http2Frame second, byte[] secondPayload) = await server.Client.ReadFrameAsync(Http2FrameType.DATA);
        Assert.Equal(16_384, first.PayloadLength);
        Assert.Equal(20_000 - 16_384, second.PayloadLength);
        Assert.False(second.EndStream);
        Assert.Equal(body, firstPayload.Concat(secondPayload).ToArray());

        // Completing the writer does not end the stream; CompleteWritesAsync does.
        await writer.CompleteAsync();
        await stream.CompleteWritesAsync();
        (Http2Frame end, _) = await server.Client.ReadFrameAsync(Http2FrameType.DATA);
        Assert.True(end.EndStream);
        Assert.Equal(0, end.PayloadLength);
        await stream.DisposeAsync();
    }

    [Fact]
    public async Task Send_writer_flush_throws_once_the_peer_reset_the_stream()
    {
        (Server server, HboneStream stream) = await StartTunnelAsync();
        await using var owner = server;
        PipeWriter writer = stream.CreateSendWriter();
        await server.Client.SendRstStreamAsync(1, Http2ErrorCode.CANCEL);
        await WaitUntilAsync(() => stream.Aborted.IsCancellationRequested, TestTimeout, "the reset reached the stream");
        writer.GetSpan(10);
        writer.Advance(10);
        await Assert.ThrowsAnyAsync<HboneException>(async () => await writer.FlushAsync());
        writer.Complete();
        await stream.DisposeAsync();
    }

    // ---- The pipe writer's completion and cancellation: no byte it accepted is lost (Kestrel completes its output
    // synchronously, cancels flushes, and may complete while a flush waits for window). ----

    private static byte[] RandomBytes(int count, int seed)
    {
        byte[] bytes = new byte[count];
        new Random(seed).NextBytes(bytes);
        return bytes;
    }

    /// <summary>Writes <paramref name="bytes"/> with GetSpan/Advance in uneven pieces, without flushing.</summary>
    private static void Advance(PipeWriter writer, ReadOnlySpan<byte> bytes)
    {
        while (!bytes.IsEmpty)
        {
            int n = Math.Min(bytes.Length, 700);
            bytes[..n].CopyTo(writer.GetSpan(n));
            writer.Advance(n);
            bytes = bytes[n..];
        }
    }

    /// <summary>On a tunnel whose peer allows 100 bytes (<see cref="StartTunnelAsync"/>'s peerStreamWindow), writes
    /// <paramref name="bytes"/> and starts a flush; returns it once its first 100 bytes arrived and it waits for window.</summary>
    private static async Task<(ValueTask<FlushResult> Flushing, byte[] FirstBytes)> FlushHeldByTheWindowAsync(
        Server server, PipeWriter writer, ReadOnlyMemory<byte> bytes, CancellationToken cancellationToken = default)
    {
        Advance(writer, bytes.Span);
        ValueTask<FlushResult> flushing = writer.FlushAsync(cancellationToken);
        (Http2Frame first, byte[] payload) = await server.Client.ReadFrameAsync(Http2FrameType.DATA);
        Assert.Equal(100, first.PayloadLength);
        Assert.False(flushing.IsCompleted);
        return (flushing, payload);
    }

    /// <summary>What the waypoint's tunnel does once Kestrel lets go of it: completes the writer (which waits for what
    /// it still holds), then ends the stream unless it died.</summary>
    private static async Task EndLikeTheTunnelAsync(PipeWriter writer, HboneStream stream)
    {
        await writer.CompleteAsync();
        if (!stream.Aborted.IsCancellationRequested)
        {
            await stream.CompleteWritesAsync();
        }
    }

    /// <summary>The stream's DATA bytes from here on, up to how it ended: END_STREAM (null) or RST_STREAM's code.</summary>
    private static async Task<(byte[] Data, Http2ErrorCode? Reset)> ReadStreamToEndAsync(ScriptedPeer client, int streamId)
    {
        var data = new MemoryStream();
        while (true)
        {
            (Http2Frame frame, byte[] payload) = await client.ReadFrameAsync();
            if (frame.StreamId != streamId)
            {
                continue;
            }
            if (frame.Type == Http2FrameType.DATA)
            {
                data.Write(payload);
                if (frame.EndStream)
                {
                    return (data.ToArray(), null);
                }
            }
            else if (frame.Type == Http2FrameType.RST_STREAM)
            {
                return (data.ToArray(), Http2FrameReader.ReadRstStreamErrorCode(new ReadOnlySequence<byte>(payload)));
            }
        }
    }

    /// <summary>Ends the tunnel as the waypoint does (<paramref name="ending"/> if already started) and asserts that the
    /// peer got exactly <paramref name="expected"/> (after <paramref name="received"/>), each byte once, then END_STREAM.</summary>
    private static async Task AssertPeerGetsAllThenEndAsync(Server server, PipeWriter writer, HboneStream stream, byte[] expected,
        byte[]? received = null, Task? ending = null)
    {
        await (ending ?? EndLikeTheTunnelAsync(writer, stream)).WaitAsync(TestTimeout);
        (byte[] rest, Http2ErrorCode? reset) = await ReadStreamToEndAsync(server.Client, 1);
        Assert.Null(reset);
        Assert.Equal(expected, (received ?? []).Concat(rest).ToArray());
        await stream.DisposeAsync();
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public async Task Send_writer_Complete_sends_bytes_advanced_without_a_flush_before_the_end(bool flushedBefore)
    {
        (Server server, HboneStream stream) = await StartTunnelAsync();
        await using var owner = server;
        PipeWriter writer = stream.CreateSendWriter();
        byte[] body = RandomBytes(3_000, 11);
        int unflushedFrom = 0;
        if (flushedBefore)
        {
            // A response head flushed, then a body advanced and never flushed.
            Advance(writer, body.AsSpan(0, 1_000));
            Assert.False((await writer.FlushAsync()).IsCanceled);
            unflushedFrom = 1_000;
        }
        // The oversized-headers 431: Kestrel writes its answer and completes the output synchronously.
        Advance(writer, body.AsSpan(unflushedFrom));
        writer.Complete();
        await AssertPeerGetsAllThenEndAsync(server, writer, stream, body);
    }

    [Theory]
    [InlineData(true)]
    [InlineData(false)]
    public async Task Send_writer_Complete_with_an_exception_sends_the_buffered_bytes_then_resets_the_stream(bool synchronous)
    {
        (Server server, HboneStream stream) = await StartTunnelAsync();
        await using var owner = server;
        PipeWriter writer = stream.CreateSendWriter();
        byte[] body = RandomBytes(2_000, 12);
        Advance(writer, body);
        var failure = new InvalidOperationException("the producer failed");
        if (synchronous)
        {
            writer.Complete(failure);
        }
        else
        {
            await writer.CompleteAsync(failure).AsTask().WaitAsync(TestTimeout);
        }
        await EndLikeTheTunnelAsync(writer, stream).WaitAsync(TestTimeout);

        // Everything the producer wrote, then a reset: the peer can tell a failed answer from a complete one.
        (byte[] data, Http2ErrorCode? reset) = await ReadStreamToEndAsync(server.Client, 1);
        Assert.Equal(body, data);
        Assert.Equal(Http2ErrorCode.CANCEL, reset);
        Assert.True(stream.Aborted.IsCancellationRequested);
        await stream.DisposeAsync();
    }

    [Fact]
    public async Task Send_writer_CancelPendingFlush_during_a_flush_keeps_the_unsent_bytes_for_the_next_flush()
    {
        (Server server, HboneStream stream) = await StartTunnelAsync(peerStreamWindow: 100);
        await using var owner = server;
        PipeWriter writer = stream.CreateSendWriter();
        byte[] body = RandomBytes(1_000, 13);
        (ValueTask<FlushResult> flushing, byte[] firstBytes) = await FlushHeldByTheWindowAsync(server, writer, body);

        writer.CancelPendingFlush();
        Assert.True((await flushing.AsTask().WaitAsync(TestTimeout)).IsCanceled);
        Assert.Equal(900, writer.UnflushedBytes);

        // The window opens; the next flush sends the rest, each byte once.
        await server.Client.SendWindowUpdateAsync(1, 100_000);
        Assert.False((await writer.FlushAsync().AsTask().WaitAsync(TestTimeout)).IsCanceled);
        await AssertPeerGetsAllThenEndAsync(server, writer, stream, body, firstBytes);
    }

    [Fact]
    public async Task Send_writer_flush_canceled_by_its_token_keeps_the_unsent_bytes_ahead_of_later_writes()
    {
        (Server server, HboneStream stream) = await StartTunnelAsync(peerStreamWindow: 100);
        await using var owner = server;
        PipeWriter writer = stream.CreateSendWriter();
        byte[] body = RandomBytes(7_000, 16);
        using var deadline = new CancellationTokenSource();
        (ValueTask<FlushResult> flushing, byte[] firstBytes) = await FlushHeldByTheWindowAsync(server, writer, body.AsMemory(0, 1_000), deadline.Token);

        deadline.Cancel();
        await Assert.ThrowsAnyAsync<OperationCanceledException>(async () => await flushing.AsTask().WaitAsync(TestTimeout));
        Assert.Equal(900, writer.UnflushedBytes);

        // More than the buffer holds: it grows and keeps the unsent 900 bytes first.
        Advance(writer, body.AsSpan(1_000));
        await server.Client.SendWindowUpdateAsync(1, 100_000);
        Assert.False((await writer.FlushAsync().AsTask().WaitAsync(TestTimeout)).IsCanceled);
        await AssertPeerGetsAllThenEndAsync(server, writer, stream, body, firstBytes);
    }

    [Fact]
    public async Task Send_writer_CancelPendingFlush_before_a_flush_cancels_it_and_Complete_still_sends_the_bytes()
    {
        (Server server, HboneStream stream) = await StartTunnelAsync();
        await using var owner = server;
        PipeWriter writer = stream.CreateSendWriter();
        byte[] body = RandomBytes(3_000, 14);
        Advance(writer, body.AsSpan(0, 1_000));
        Assert.False((await writer.FlushAsync()).IsCanceled);

        // No flush pending: the next one is canceled (the PipeWriter contract), and what it would have sent stays.
        Advance(writer, body.AsSpan(1_000));
        writer.CancelPendingFlush();
        Assert.True((await writer.FlushAsync().AsTask().WaitAsync(TestTimeout)).IsCanceled);
        Assert.Equal(2_000, writer.UnflushedBytes);

        writer.Complete();
        await AssertPeerGetsAllThenEndAsync(server, writer, stream, body);
    }

    [Theory]
    [InlineData(true)]
    [InlineData(false)]
    public async Task Send_writer_Complete_while_a_flush_waits_for_window_sends_everything_before_the_end(bool synchronous)
    {
        (Server server, HboneStream stream) = await StartTunnelAsync(peerStreamWindow: 100);
        await using var owner = server;
        PipeWriter writer = stream.CreateSendWriter();
        byte[] body = RandomBytes(1_000, 15);
        (ValueTask<FlushResult> flushing, byte[] firstBytes) = await FlushHeldByTheWindowAsync(server, writer, body);

        byte[]? recycled = null;
        Task ending;
        if (synchronous)
        {
            // Kestrel completes its output while its flush still waits; the tunnel then ends as usual.
            writer.Complete();
            // The writer's buffer is still being sent: had it gone back to the pool, this rent would get it and scribble on it.
            recycled = ArrayPool<byte>.Shared.Rent(4_096);
            recycled.AsSpan().Fill(0xEE);
            ending = EndLikeTheTunnelAsync(writer, stream);
        }
        else
        {
            // The tunnel is disposed (CompleteAsync) while Kestrel's flush still waits.
            ending = Task.Run(() => EndLikeTheTunnelAsync(writer, stream));
        }

        await server.Client.SendWindowUpdateAsync(1, 100_000);
        Assert.False((await flushing.AsTask().WaitAsync(TestTimeout)).IsCanceled);
        // Each byte once and intact, then END_STREAM after the last of them.
        await AssertPeerGetsAllThenEndAsync(server, writer, stream, body, firstBytes, ending);
        if (recycled is not null)
        {
            ArrayPool<byte>.Shared.Return(recycled);
        }
    }

    [Fact]
    public async Task Receive_reader_Complete_credits_what_was_consumed_and_not_what_was_left_unread()
    {
        (Server server, HboneStream stream) = await StartTunnelAsync();
        await using var owner = server;
        PipeReader reader = stream.CreateReceiveReader();
        ReadResult read = await SendAndBufferUnconsumedAsync(server, reader, 16_000, 16_000, 16_000);
        // 40,000 consumed (past half the window: a WINDOW_UPDATE for exactly them), 8,000 left when Kestrel lets go.
        reader.AdvanceTo(read.Buffer.GetPosition(40_000));
        await reader.CompleteAsync();
        Assert.Equal([40_000u], await StreamWindowUpdatesBeforePingAckAsync(server.Client, 1));

        // The unread bytes stay uncredited on the stream (nobody will read them); disposing it stops the peer.
        await stream.DisposeAsync();
        Assert.Equal((1, Http2ErrorCode.CANCEL), await ReadRstAsync(server.Client));
    }
}

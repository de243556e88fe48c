using System.Buffers;
using System.IO.Pipelines;
using Ambient.Hbone.Http2;
using Microsoft.Extensions.Logging;

namespace Ambient.Hbone;

/// <summary>
/// A request as the server side of an HBONE connection received it: pseudo-headers and the regular fields, already
/// checked for HTTP/2 well-formedness (RFC 9113 section 8.2-8.3). Whether it is a valid HBONE CONNECT is the
/// handler's call, so it can answer 400 with a reason instead of a bare reset.
/// </summary>
internal sealed record HboneRequest(string? Method, string? Authority, string? Scheme, string? Path, string? Protocol,
    IReadOnlyList<KeyValuePair<string, string>> Headers)
{
    /// <summary>A regular field (lowercase name), repeated lines joined with ", " as HTTP does (RFC 9110 section 5.3), or null.</summary>
    public string? Header(string name)
    {
        string? value = null;
        for (int i = 0; i < Headers.Count; i++)
        {
            if (Headers[i].Key == name)
            {
                value = value is null ? Headers[i].Value : value + ", " + Headers[i].Value;
            }
        }
        return value;
    }
}

/// <summary>The server side's entry points: creation with a request handler, answers, and the graceful drain.</summary>
internal sealed partial class Http2Connection
{
    /// <summary>
    /// A server connection over an authenticated duplex stream. <paramref name="onRequest"/> runs on the thread pool,
    /// once per stream the peer opens; it owns the stream (answers it with <see cref="HboneStream.RespondAsync"/> and
    /// disposes it).
    /// </summary>
    public static Http2Connection CreateServer(Stream transport, HboneClientOptions options, string peer,
        Action<HboneStream, HboneRequest> onRequest, ILogger? logger = null, TimeProvider? timeProvider = null)
    {
        ArgumentNullException.ThrowIfNull(onRequest);
        return new Http2Connection(transport, options, peer, logger, timeProvider, onRequest);
    }

    /// <summary>The highest stream id we accepted (server role): what our GOAWAY reports as possibly processed.</summary>
    public int LastAcceptedStreamId => _role.LastAcceptedStreamId;

    /// <summary>
    /// Graceful shutdown (server role): GOAWAY NO_ERROR naming the last stream we took, so the client opens new
    /// tunnels elsewhere; open tunnels may finish. The connection closes when the last one ends or when
    /// <paramref name="timeout"/> passes, whichever is first.
    /// </summary>
    public async Task DrainAsync(TimeSpan timeout)
    {
        if (!_streams.BeginDrain(out bool idle))
        {
            return;
        }
        // One deadline for everything, the GOAWAY write included: a writer stuck on a client that stopped reading
        // must not hold the drain past it.
        Task deadline = Task.Delay(timeout);
        await SendGoAwayAsync(Http2ErrorCode.NO_ERROR, timeout).ConfigureAwait(false);
        if (idle)
        {
            await CloseAsync(Http2ErrorCode.NO_ERROR, "drained").ConfigureAwait(false);
            return;
        }
        if (await Task.WhenAny(Closed, deadline).ConfigureAwait(false) != Closed)
        {
            await CloseAsync(Http2ErrorCode.NO_ERROR, $"drain timeout ({timeout.TotalSeconds:0.#} s) with tunnels still open").ConfigureAwait(false);
        }
    }

    private async ValueTask SendGoAwayAsync(Http2ErrorCode code, TimeSpan timeout)
    {
        // The flush is bounded too, not just the wait for the lock: a client that stopped reading (its socket buffer
        // full) would otherwise hold the GOAWAY write, and the drain with it, until it reads again.
        using var deadline = new CancellationTokenSource(timeout);
        try
        {
            await _writeLock.WaitAsync(deadline.Token).ConfigureAwait(false);
        }
        catch (OperationCanceledException)
        {
            return;
        }
        try
        {
            if (IsClosed)
            {
                return;
            }
            Http2FrameWriter.WriteGoAway(_output, LastAcceptedStreamId, code);
            await FlushOrAbortAsync(deadline.Token).ConfigureAwait(false);
        }
        catch (HboneException)
        {
            // The write failure already closed the connection.
        }
        finally
        {
            _writeLock.Release();
        }
    }

    /// <summary>Answers a request: <c>:status</c>, then the body if any, then END_STREAM when <paramref name="endStream"/>.</summary>
    internal async ValueTask RespondAsync(HboneStream stream, int status, ReadOnlyMemory<byte> textBody, bool endStream, CancellationToken cancellationToken)
    {
        bool headersEndStream = endStream && textBody.IsEmpty;
        await _writeLock.WaitAsync(cancellationToken).ConfigureAwait(false);
        try
        {
            ThrowIfClosed();
            stream.ThrowIfCannotWrite();
            stream.Answered = true;
            WriteResponseHeaders(stream.StreamId, status, textBody: !textBody.IsEmpty, headersEndStream);
            await FlushOrAbortAsync().ConfigureAwait(false);
        }
        finally
        {
            _writeLock.Release();
        }
        if (headersEndStream)
        {
            if (stream.OnLocalEnd())
            {
                ReleaseStream(stream, requireBothEnded: true);
            }
            return;
        }
        if (!textBody.IsEmpty)
        {
            await WriteDataAsync(stream, textBody, cancellationToken).ConfigureAwait(false);
        }
        if (endStream)
        {
            await WriteEndStreamAsync(stream, cancellationToken).ConfigureAwait(false);
        }
    }

    /// <summary>Encodes and writes a response HEADERS block (not flushed). Call under the write lock: the HPACK encoder's
    /// state must reach the wire in order.</summary>
    private void WriteResponseHeaders(int streamId, int status, bool textBody, bool endStream)
    {
        _headerScratch.ResetWrittenCount();
        _encoder.EncodeResponseStatus(_headerScratch, status);
        if (textBody)
        {
            _encoder.EncodeHeader(_headerScratch, "content-type"u8, "text/plain; charset=utf-8"u8);
        }
        Http2FrameWriter.WriteHeaders(_output, streamId, _headerScratch.WrittenSpan, endStream, _peerMaxFrameSize);
    }


    /// <summary>
    /// The server role: the peer opens odd-numbered CONNECT streams, we answer them. The read loop decodes the request,
    /// registers the stream and hands it to the request handler on the thread pool (a handler dials the workload, which
    /// must not hold up other streams' frames). From then on the tunnel's bytes flow exactly as on the client side:
    /// DATA from the read loop into the stream's pipe, whose reader runs on the read loop's thread. It also keeps the
    /// server's guards: the preface and SETTINGS first, the stream-error budget and the rapid-reset ratio.
    /// </summary>
    private sealed class ServerRole(Http2Connection connection, Action<HboneStream, HboneRequest> onRequest) : Role(connection)
    {
        // Stream errors we originate (refusals, malformed requests, 431s) over a connection's life before it counts as
        // abuse: each costs us a write while the peer pays almost nothing (the h2 crate's limit).
        private const int MaxStreamErrors = 1024;

        // A client that connects and never finishes its preface holds a connection for nothing.
        private static readonly TimeSpan PrefaceTimeout = TimeSpan.FromSeconds(10);

        private readonly Action<HboneStream, HboneRequest> _onRequest = onRequest;
        // What the peer opened (for frame checks) vs what we took on (what a GOAWAY reports, so it never grows).
        private int _lastPeerStreamId;
        private int _lastAcceptedStreamId;
        private int _requestsSeen;
        private int _prematureResets;
        private int _streamErrors;
        private bool _settingsReceived;

        public override void WritePreface(PipeWriter output, HboneClientOptions options)
        {
            // RFC 9113 section 3.4: the server preface is its SETTINGS; servers say nothing about push.
            Http2FrameWriter.WriteSettings(output,
            [
                new(Http2SettingsParameter.SETTINGS_MAX_CONCURRENT_STREAMS, (uint)options.MaxStreamsPerConnection),
                new(Http2SettingsParameter.SETTINGS_INITIAL_WINDOW_SIZE, (uint)options.InitialStreamWindowSize),
                new(Http2SettingsParameter.SETTINGS_MAX_FRAME_SIZE, (uint)options.MaxFrameSize),
                new(Http2SettingsParameter.SETTINGS_MAX_HEADER_LIST_SIZE, (uint)options.MaxHeaderListSize),
            ]);
        }

        public override ValueTask ReadPrefaceAsync() => ReadClientPrefaceAsync();

        public override void OnFrameRead(in Http2Frame frame)
        {
            if (_settingsReceived)
            {
                return;
            }
            // RFC 9113 section 3.4: the client preface ends with a SETTINGS frame; anything else first is an error.
            if (frame.Type != Http2FrameType.SETTINGS || frame.Ack)
            {
                throw new Http2ConnectionException(Http2ErrorCode.PROTOCOL_ERROR, $"the peer's first frame is {frame.Type}, not SETTINGS");
            }
            _settingsReceived = true;
        }

        public override bool WasOpened(int streamId) => (streamId & 1) == 1 && streamId <= _lastPeerStreamId;

        public override void CheckHeaderStream(in Http2Frame frame)
        {
            // HEADERS on a new odd id opens a stream (the continuation tracker keeps CONTINUATIONs on their HEADERS' id).
            if ((frame.StreamId & 1) == 0)
            {
                throw new Http2ConnectionException(Http2ErrorCode.PROTOCOL_ERROR, $"{frame.Type} on stream {frame.StreamId}, which a client cannot open");
            }
        }

        public override ValueTask OnHeaderBlock(int streamId, ReadOnlySpan<byte> block, bool endStream)
        {
            var request = new RequestHeaderHandler();
            try
            {
                Connection._decoder.Decode(block, streamId, ref request);
            }
            catch (Http2HeaderListTooLargeException) when (streamId > _lastPeerStreamId)
            {
                // Decoded in full, so HPACK is in step; only this request is refused, with an answer saying why.
                Volatile.Write(ref _lastPeerStreamId, streamId);
                HboneLog.StreamError(Connection._logger, Connection.Peer, streamId, $"request header list over {Connection._options.MaxHeaderListSize} bytes; answered 431");
                CountStreamError();
                return RespondToUnopenedAsync(streamId, 431);
            }
            return OnRequestHeaders(streamId, ref request, endStream);
        }

        public override async ValueTask OnStreamErrorWithoutStreamAsync(Http2StreamException error)
        {
            if (error.StreamId <= _lastPeerStreamId)
            {
                // A request we never took (or already forgot) still gets its RST_STREAM: the client may think it open.
                HboneLog.StreamError(Connection._logger, Connection.Peer, error.StreamId, error.Message);
                CountStreamError();
                await Connection.SendRstStreamAsync(error.StreamId, error.ErrorCode).ConfigureAwait(false);
            }
        }

        public override void OnPeerReset(HboneStream stream) => CountPrematureReset(stream);

        public override bool AcceptsEnablePush(uint value) => value <= 1;

        // The streams a client opened are never "unprocessed" by its GOAWAY, which counts pushed streams only.
        public override bool IsUnprocessed(HboneStream stream, int lastStreamId) => false;

        public override int LastAcceptedStreamId => Volatile.Read(ref _lastAcceptedStreamId);

        public override bool ClosesWhenIdle => true;

        // A graceful server close: the client closes once it has read our GOAWAY and the last tunnel's end.
        public override bool WaitsForPeerCloseAfterGoAway => true;

        /// <summary>Server role: the 24-byte client preface comes before any frame (RFC 9113 section 3.4). Anything else,
        /// say an HTTP/1.1 request inside the TLS session, is a PROTOCOL_ERROR, found at the first differing byte.</summary>
        private async ValueTask ReadClientPrefaceAsync()
        {
            int length = Http2Frame.ClientPreface.Length;
            using var timeout = CancellationTokenSource.CreateLinkedTokenSource(Connection._shutdown.Token);
            timeout.CancelAfter(PrefaceTimeout);
            while (true)
            {
                ReadResult result;
                try
                {
                    result = await Connection._input.ReadAsync(timeout.Token).ConfigureAwait(false);
                }
                catch (OperationCanceledException) when (!Connection._shutdown.IsCancellationRequested)
                {
                    throw new HboneException($"HBONE peer {Connection.Peer} sent no HTTP/2 preface within {PrefaceTimeout.TotalSeconds:0} s");
                }
                ReadOnlySequence<byte> buffer = result.Buffer;
                int matched = MatchPreface(buffer);
                if (matched < 0)
                {
                    Connection._input.AdvanceTo(buffer.Start, buffer.End);
                    throw new Http2ConnectionException(Http2ErrorCode.PROTOCOL_ERROR, "the client did not start with the HTTP/2 connection preface");
                }
                if (matched == length)
                {
                    Connection._input.AdvanceTo(buffer.GetPosition(length));
                    return;
                }
                Connection._input.AdvanceTo(buffer.Start, buffer.End);
                if (result.IsCompleted || result.IsCanceled)
                {
                    throw new HboneException($"HBONE peer {Connection.Peer} closed the connection before the HTTP/2 preface");
                }
            }
        }

        /// <summary>How many preface bytes <paramref name="buffer"/> starts with (up to 24), or -1 at the first mismatch.</summary>
        private static int MatchPreface(in ReadOnlySequence<byte> buffer)
        {
            ReadOnlySpan<byte> preface = Http2Frame.ClientPreface;
            int n = (int)Math.Min(buffer.Length, preface.Length);
            Span<byte> head = stackalloc byte[preface.Length];
            buffer.Slice(0, n).CopyTo(head);
            return head[..n].SequenceEqual(preface[..n]) ? n : -1;
        }

        /// <summary>Server role: HEADERS on a new odd stream id open a request; on an open stream they are trailers. A
        /// refusal is written before the read loop goes on, so a peer that floods refusable requests while not reading
        /// its socket stalls only itself.</summary>
        private ValueTask OnRequestHeaders(int streamId, ref RequestHeaderHandler headers, bool endStream)
        {
            if (streamId <= _lastPeerStreamId)
            {
                HboneStream? open = Connection.FindStream(streamId);
                if (open is null)
                {
                    // A stream that already ended or that we reset (RFC 9113 section 5.1: closed).
                    throw new Http2StreamException(streamId, Http2ErrorCode.STREAM_CLOSED, "HEADERS on a closed stream");
                }
                if (!endStream)
                {
                    throw new Http2StreamException(streamId, Http2ErrorCode.PROTOCOL_ERROR, "trailers without END_STREAM");
                }
                if (open.TryReceiveData(ReadOnlySequence<byte>.Empty, 0, endStream: true) && open.IsRemoteEndedAndLocalEnded)
                {
                    Connection.ReleaseStream(open, requireBothEnded: true);
                }
                return default;
            }

            Volatile.Write(ref _lastPeerStreamId, streamId);
            if (headers.Error is not null)
            {
                return RefuseAsync(streamId, Http2ErrorCode.PROTOCOL_ERROR, $"malformed request: {headers.Error}");
            }

            HboneStream? stream = null;
            string? refusal = null;
            lock (Connection._flow.Lock)
            {
                lock (Connection._streams.Lock)
                {
                    if (Connection._streams.IsClosedLocked)
                    {
                        return default;
                    }
                    refusal = Connection._streams.AcceptRefusalLocked(Connection._options.MaxStreamsPerConnection);
                    if (refusal is null)
                    {
                        stream = new HboneStream(Connection, headers.Authority ?? "", Connection._flow.PeerInitialWindowSizeLocked, Connection._options.InitialStreamWindowSize, accepted: true) { StreamId = streamId };
                        Connection._streams.AddAcceptedLocked(stream);
                        Volatile.Write(ref _lastAcceptedStreamId, streamId);
                    }
                }
            }
            if (stream is null)
            {
                // REFUSED_STREAM: nothing was done, the client may retry elsewhere (RFC 9113 section 8.7).
                return RefuseAsync(streamId, Http2ErrorCode.REFUSED_STREAM, refusal!);
            }
            // Only requests that reached a handler count towards the rapid-reset ratio: padding it with refusable
            // requests would otherwise keep a flood under the half mark.
            _requestsSeen++;
            if (endStream)
            {
                stream.TryReceiveData(ReadOnlySequence<byte>.Empty, 0, endStream: true);
            }
            var request = new HboneRequest(headers.Method, headers.Authority, headers.Scheme, headers.Path, headers.Protocol,
                (IReadOnlyList<KeyValuePair<string, string>>?)headers.Headers ?? []);
            ThreadPool.UnsafeQueueUserWorkItem(static s => s.Handler(s.Stream, s.Request), (Handler: _onRequest, Stream: stream, Request: request), preferLocal: false);
            return default;
        }

        private ValueTask RefuseAsync(int streamId, Http2ErrorCode code, string reason)
        {
            HboneLog.StreamError(Connection._logger, Connection.Peer, streamId, reason);
            CountStreamError();
            return Connection.SendRstStreamAsync(streamId, code);
        }

        /// <summary>Read loop, server role: one more stream error of our making; past <see cref="MaxStreamErrors"/> the
        /// peer is abusing us and the connection ends with ENHANCE_YOUR_CALM.</summary>
        private void CountStreamError()
        {
            if (++_streamErrors > MaxStreamErrors)
            {
                throw new Http2ConnectionException(Http2ErrorCode.ENHANCE_YOUR_CALM,
                    $"the client caused more than {MaxStreamErrors} stream errors (refused, malformed or oversized requests)");
            }
        }

        /// <summary>Answers a request that never became a stream (its header list was too large) and ends it.</summary>
        private async ValueTask RespondToUnopenedAsync(int streamId, int status)
        {
            await Connection._writeLock.WaitAsync().ConfigureAwait(false);
            try
            {
                if (Connection.IsClosed)
                {
                    return;
                }
                Connection.WriteResponseHeaders(streamId, status, textBody: false, endStream: true);
                // The request's own END_STREAM may never come: NO_ERROR tells the client to stop sending (RFC 9113 section 8.1).
                Http2FrameWriter.WriteRstStream(Connection._output, streamId, Http2ErrorCode.NO_ERROR);
                await Connection.FlushOrAbortAsync().ConfigureAwait(false);
            }
            finally
            {
                Connection._writeLock.Release();
            }
        }

        /// <summary>
        /// Server role, read loop: the client reset <paramref name="stream"/>. One reset before our answer is a client
        /// changing its mind; at least <see cref="HboneClientOptions.MaxPrematureResets"/> of them that are also more than
        /// half of all the connection's requests is a rapid-reset flood (CVE-2023-44487): every reset stream still cost
        /// us a dispatch, so the connection ends with GOAWAY ENHANCE_YOUR_CALM. The half rule is Envoy's: a busy pooled
        /// connection with occasional cancellations never trips it.
        /// </summary>
        private void CountPrematureReset(HboneStream stream)
        {
            if (stream.Answered)
            {
                return;
            }
            _prematureResets++;
            if (_prematureResets >= Connection._options.MaxPrematureResets && _prematureResets * 2L > _requestsSeen)
            {
                throw new Http2ConnectionException(Http2ErrorCode.ENHANCE_YOUR_CALM,
                    $"the client reset {_prematureResets} of its {_requestsSeen} streams before their answer (rapid reset)");
            }
        }

        /// <summary>
        /// Collects a request's fields and checks what RFC 9113 section 8.2-8.3 require of every request: lowercase names,
        /// known pseudo-headers once each and before regular fields, no connection-specific fields, no NUL/CR/LF in
        /// values. The first violation is kept as <see cref="Error"/> (the stream is then reset, PROTOCOL_ERROR).
        /// </summary>
        private struct RequestHeaderHandler : IHPackHeaderHandler
        {
            public string? Method;
            public string? Authority;
            public string? Scheme;
            public string? Path;
            public string? Protocol;
            public List<KeyValuePair<string, string>>? Headers;
            public string? Error;
            private bool _regularSeen;

            public void OnHeader(int staticIndex, ReadOnlySpan<byte> name, ReadOnlySpan<byte> value)
            {
                if (Error is not null)
                {
                    return;
                }
                if (value.IndexOfAny((byte)0, (byte)'\r', (byte)'\n') >= 0)
                {
                    Error = "a field value contains NUL, CR or LF";
                    return;
                }
                if (!name.IsEmpty && name[0] == (byte)':')
                {
                    if (_regularSeen)
                    {
                        Error = "a pseudo-header after a regular field";
                        return;
                    }
                    ref string? slot = ref Method;
                    if (name.SequenceEqual(":method"u8))
                    {
                        slot = ref Method;
                    }
                    else if (name.SequenceEqual(":authority"u8))
                    {
                        slot = ref Authority;
                    }
                    else if (name.SequenceEqual(":scheme"u8))
                    {
                        slot = ref Scheme;
                    }
                    else if (name.SequenceEqual(":path"u8))
                    {
                        slot = ref Path;
                    }
                    else if (name.SequenceEqual(":protocol"u8))
                    {
                        slot = ref Protocol;
                    }
                    else
                    {
                        Error = "an unknown pseudo-header";
                        return;
                    }
                    if (slot is not null)
                    {
                        Error = "a repeated pseudo-header";
                        return;
                    }
                    slot = Latin1(value);
                    return;
                }

                _regularSeen = true;
                if (name.IsEmpty)
                {
                    Error = "an empty field name";
                    return;
                }
                foreach (byte b in name)
                {
                    if (b is >= (byte)'A' and <= (byte)'Z' || b <= (byte)' ' || b >= 0x7f)
                    {
                        Error = "a field name with an uppercase letter or a character outside a token";
                        return;
                    }
                }
                if (name.SequenceEqual("connection"u8) || name.SequenceEqual("keep-alive"u8) || name.SequenceEqual("proxy-connection"u8)
                    || name.SequenceEqual("transfer-encoding"u8) || name.SequenceEqual("upgrade"u8)
                    || (name.SequenceEqual("te"u8) && !value.SequenceEqual("trailers"u8)))
                {
                    Error = "a connection-specific field";
                    return;
                }
                (Headers ??= []).Add(new(Latin1(name), Latin1(value)));
            }

            private static string Latin1(ReadOnlySpan<byte> bytes) => System.Text.Encoding.Latin1.GetString(bytes);
        }
    }
}

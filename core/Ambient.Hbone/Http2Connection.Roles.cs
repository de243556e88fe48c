using System.Buffers;
using System.IO.Pipelines;
using Ambient.Hbone.Http2;

namespace Ambient.Hbone;

/// <summary>
/// The two roles of a connection as collaborators, chosen at construction (as Kestrel keeps its server-only logic out
/// of the frame loop): the shared core (framing, HPACK, flow control, keepalive, GOAWAY) asks the role wherever client
/// and server differ, and never which role it plays.
/// </summary>
internal sealed partial class Http2Connection
{
    private abstract class Role(Http2Connection connection)
    {
        protected Http2Connection Connection { get; } = connection;

        /// <summary>The preface and first SETTINGS (RFC 9113 section 3.4), written under the write lock.</summary>
        public abstract void WritePreface(PipeWriter output, HboneClientOptions options);

        /// <summary>What must arrive before the first frame (the server reads the client's 24-byte preface).</summary>
        public abstract ValueTask ReadPrefaceAsync();

        /// <summary>Every frame the reader completes, before it is processed (the server checks that SETTINGS comes first).</summary>
        public abstract void OnFrameRead(in Http2Frame frame);

        /// <summary>Whether <paramref name="streamId"/> is a stream id that was ever opened (RFC 9113 section 5.1, "idle" state).</summary>
        public abstract bool WasOpened(int streamId);

        /// <summary>HEADERS or CONTINUATION arrived on <paramref name="frame"/>'s stream: a connection error if no such
        /// block may come there.</summary>
        public abstract void CheckHeaderStream(in Http2Frame frame);

        /// <summary>Decodes a complete header block (a request for the server, a response for the client) and acts on it.</summary>
        public abstract ValueTask OnHeaderBlock(int streamId, ReadOnlySpan<byte> block, bool endStream);

        /// <summary>A stream error on a stream we no longer track: whether and how to tell the peer.</summary>
        public abstract ValueTask OnStreamErrorWithoutStreamAsync(Http2StreamException error);

        /// <summary>The peer reset <paramref name="stream"/> (the server guards against rapid resets).</summary>
        public abstract void OnPeerReset(HboneStream stream);

        /// <summary>SETTINGS_ENABLE_PUSH: 0 or 1 from a client, only 0 from a server (we are then the client).</summary>
        public abstract bool AcceptsEnablePush(uint value);

        /// <summary>After the peer's GOAWAY naming <paramref name="lastStreamId"/>: did the peer never process <paramref name="stream"/>?</summary>
        public abstract bool IsUnprocessed(HboneStream stream, int lastStreamId);

        /// <summary>The highest stream id the peer opened that we took on: what our GOAWAY reports.</summary>
        public abstract int LastAcceptedStreamId { get; }

        /// <summary>The server closes a connection its client left without a tunnel for the idle timeout; the client's
        /// pool reaps its own.</summary>
        public abstract bool ClosesWhenIdle { get; }

        /// <summary>After a graceful GOAWAY, wait (briefly) for the peer to close first (see <see cref="FinishCloseAsync"/>).</summary>
        public abstract bool WaitsForPeerCloseAfterGoAway { get; }
    }

    /// <summary>The client role: we open odd streams with CONNECT and read the responses.</summary>
    private sealed class ClientRole(Http2Connection connection) : Role(connection)
    {
        public override void WritePreface(PipeWriter output, HboneClientOptions options)
        {
            Http2FrameWriter.WritePreface(output);
            Http2FrameWriter.WriteSettings(output,
            [
                new(Http2SettingsParameter.SETTINGS_ENABLE_PUSH, 0),
                new(Http2SettingsParameter.SETTINGS_INITIAL_WINDOW_SIZE, (uint)options.InitialStreamWindowSize),
                new(Http2SettingsParameter.SETTINGS_MAX_FRAME_SIZE, (uint)options.MaxFrameSize),
                new(Http2SettingsParameter.SETTINGS_MAX_HEADER_LIST_SIZE, (uint)options.MaxHeaderListSize),
            ]);
        }

        public override ValueTask ReadPrefaceAsync() => default;

        // Lenient: a server that skips its SETTINGS only means default settings.
        public override void OnFrameRead(in Http2Frame frame)
        {
        }

        public override bool WasOpened(int streamId) => (streamId & 1) == 1 && streamId < Volatile.Read(ref Connection._nextStreamId);

        public override void CheckHeaderStream(in Http2Frame frame) => Connection.ThrowIfNeverOpened(frame);

        public override ValueTask OnHeaderBlock(int streamId, ReadOnlySpan<byte> block, bool endStream)
        {
            var response = new ResponseHeaderHandler();
            Connection._decoder.Decode(block, streamId, ref response);
            Connection.OnResponseHeaders(streamId, response, endStream);
            return default;
        }

        // Nothing to tell a server about a stream we already forgot.
        public override ValueTask OnStreamErrorWithoutStreamAsync(Http2StreamException error) => default;

        public override void OnPeerReset(HboneStream stream)
        {
        }

        public override bool AcceptsEnablePush(uint value) => value == 0;

        // A client's last-stream-id counts pushed streams; the streams we opened beyond it were never processed.
        public override bool IsUnprocessed(HboneStream stream, int lastStreamId) => stream.StreamId > lastStreamId;

        public override int LastAcceptedStreamId => 0;

        public override bool ClosesWhenIdle => false;

        public override bool WaitsForPeerCloseAfterGoAway => false;
    }
}

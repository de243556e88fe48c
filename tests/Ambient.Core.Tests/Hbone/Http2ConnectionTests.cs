using System.Buffers;
using System.Buffers.Binary;
using Ambient.Hbone;
using System.Net.Sockets;
using Ambient.Hbone.Http2;
using Ambient.Hbone.Relay;
using Ambient.TestCommon;
using static Ambient.Core.Tests.Hbone.HboneTestSupport;

namespace Ambient.Core.Tests.Hbone;

/// <summary>Protocol behaviour of <see cref="Http2Connection"/> against a scripted in-memory peer.</summary>
public sealed class Http2ConnectionTests
{
    private static async Task<(Http2Connection Connection, ScriptedPeer Peer)> StartAsync(HboneClientOptions? options = null, params Http2Setting[] peerSettings)
    {
        (Stream transport, ScriptedPeer peer) = ScriptedPeer.Create();
        var connection = new Http2Connection(transport, options ?? new HboneClientOptions(), "scripted-peer");
        await connection.StartAsync();
        await peer.ReadPrefaceAsync();
        await peer.SendSettingsAsync(peerSettings);
        await peer.ReadFrameAsync(Http2FrameType.SETTINGS); // our ACK
        return (connection, peer);
    }

    private static async Task<HboneStream> OpenAsync(Http2Connection connection, ScriptedPeer peer, int expectedStreamId = 1)
    {
        Task<HboneStream> open = connection.OpenConnectAsync("10.0.0.1:80", null, CancellationToken.None);
        (Http2Frame headers, _) = await peer.ReadFrameAsync(Http2FrameType.HEADERS);
        Assert.Equal(expectedStreamId, headers.StreamId);
        await peer.SendResponseAsync(headers.StreamId, 200);
        return await open.WaitAsync(TestTimeout);
    }

    [Fact]
    public async Task PrefaceSettingsAndConnectHeaders_AreHbonesOnTheWire()
    {
        (Stream transport, ScriptedPeer peer) = ScriptedPeer.Create();
        await using var connection = new Http2Connection(transport, new HboneClientOptions(), "scripted-peer");
        await connection.StartAsync();
        (Dictionary<Http2SettingsParameter, uint> settings, uint increment) = await peer.ReadPrefaceAsync();
        Assert.Equal(0u, settings[Http2SettingsParameter.SETTINGS_ENABLE_PUSH]);
        Assert.Equal(1024u * 1024, settings[Http2SettingsParameter.SETTINGS_INITIAL_WINDOW_SIZE]);
        Assert.Equal(1024u * 1024, settings[Http2SettingsParameter.SETTINGS_MAX_FRAME_SIZE]);
        Assert.Equal(16u * 1024, settings[Http2SettingsParameter.SETTINGS_MAX_HEADER_LIST_SIZE]);
        Assert.Equal(16u * 1024 * 1024 - 65_535, increment);

        Task<HboneStream> open = connection.OpenConnectAsync("[fd00::1]:8080",
            [("baggage", "k8s.pod.name=a"), ("forwarded", "for=\"10.0.0.2:4000\""), ("traceparent", "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01")],
            CancellationToken.None);
        (Http2Frame headers, byte[] block) = await peer.ReadFrameAsync(Http2FrameType.HEADERS);
        Assert.True(headers.EndHeaders);
        Assert.False(headers.EndStream);
        Assert.Equal(
            [(":method", "CONNECT"), (":authority", "[fd00::1]:8080"), ("baggage", "k8s.pod.name=a"),
             ("forwarded", "for=\"10.0.0.2:4000\""), ("traceparent", "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01")],
            peer.Decode(block, headers.StreamId));
        await peer.SendResponseAsync(headers.StreamId, 200);
        await using HboneStream stream = await open.WaitAsync(TestTimeout);
        Assert.Equal(1, connection.ActiveStreams);
        Assert.Equal(100, connection.MaxConcurrentStreams);
    }

    [Fact]
    public async Task Writer_WaitsForWindow_AndFollowsInitialWindowSizeChanges()
    {
        (Http2Connection connection, ScriptedPeer peer) = await StartAsync(null, new Http2Setting(Http2SettingsParameter.SETTINGS_INITIAL_WINDOW_SIZE, 100));
        await using (connection)
        {
            HboneStream stream = await OpenAsync(connection, peer);
            Task write = stream.WriteAsync(new byte[400]).AsTask();
            Assert.Equal(100, (await peer.ReadFrameAsync(Http2FrameType.DATA)).Frame.PayloadLength);
            await Task.Delay(100);
            Assert.False(write.IsCompleted, "the writer must wait while the stream window is empty");

            await peer.SendWindowUpdateAsync(stream.StreamId, 150);
            Assert.Equal(150, (await peer.ReadFrameAsync(Http2FrameType.DATA)).Frame.PayloadLength);

            // RFC 9113 section 6.9.2: raising SETTINGS_INITIAL_WINDOW_SIZE by 150 opens 150 more on the open stream.
            await peer.SendSettingsAsync(new Http2Setting(Http2SettingsParameter.SETTINGS_INITIAL_WINDOW_SIZE, 250));
            Assert.Equal(150, (await peer.ReadFrameAsync(Http2FrameType.DATA)).Frame.PayloadLength);
            await write.WaitAsync(TestTimeout);
        }
    }

    [Fact]
    public async Task Reader_ReturnsWindowAsTheAppConsumes()
    {
        var options = new HboneClientOptions { InitialStreamWindowSize = 65_535 };
        (Http2Connection connection, ScriptedPeer peer) = await StartAsync(options);
        await using (connection)
        {
            HboneStream stream = await OpenAsync(connection, peer);
            await peer.SendDataAsync(stream.StreamId, 40_000);
            byte[] buffer = new byte[40_000];
            await stream.ReadExactlyAsync(buffer).AsTask().WaitAsync(TestTimeout);
            (Http2Frame update, byte[] payload) = await peer.ReadFrameAsync(Http2FrameType.WINDOW_UPDATE);
            Assert.Equal(stream.StreamId, update.StreamId);
            Assert.Equal(40_000u, Http2FrameReader.ReadWindowUpdateIncrement(new ReadOnlySequence<byte>(payload)));

            await peer.SendDataAsync(stream.StreamId, 0, endStream: true);
            Assert.Equal(0, await stream.ReadAsync(buffer).AsTask().WaitAsync(TestTimeout));
        }
    }

    [Fact]
    public async Task PeerOverrunningTheStreamWindow_GetsRstStreamFlowControlError()
    {
        var options = new HboneClientOptions { InitialStreamWindowSize = 65_535 };
        (Http2Connection connection, ScriptedPeer peer) = await StartAsync(options);
        await using (connection)
        {
            HboneStream stream = await OpenAsync(connection, peer);
            await peer.SendDataAsync(stream.StreamId, 65_535);
            await peer.SendDataAsync(stream.StreamId, 1);
            (Http2Frame rst, byte[] payload) = await peer.ReadFrameAsync(Http2FrameType.RST_STREAM);
            Assert.Equal(stream.StreamId, rst.StreamId);
            Assert.Equal(Http2ErrorCode.FLOW_CONTROL_ERROR, (Http2ErrorCode)BinaryPrimitives.ReadUInt32BigEndian(payload));
            HboneException error = await Assert.ThrowsAsync<HboneException>(() => stream.ReadAsync(new byte[10]).AsTask().WaitAsync(TestTimeout));
            Assert.Equal(Http2ErrorCode.FLOW_CONTROL_ERROR, error.ErrorCode);
            Assert.False(connection.IsClosed, "a stream error leaves the connection up");
            Assert.Equal(0, connection.ActiveStreams);
        }
    }

    [Fact]
    public async Task NoErrorResetAfterTheWholeAnswer_StopsOnlyOurSending_AndTheAnswerIsStillReadToItsEnd()
    {
        // RFC 9113 section 8.1: a server that answered in full before reading all of the request may reset with NO_ERROR;
        // "clients MUST NOT discard responses as a result of receiving such a RST_STREAM".
        (Http2Connection connection, ScriptedPeer peer) = await StartAsync();
        await using (connection)
        {
            HboneStream stream = await OpenAsync(connection, peer);
            CancellationToken aborted = stream.Aborted;
            await peer.SendDataAsync(stream.StreamId, 1000, endStream: true);
            await peer.SendRstStreamAsync(stream.StreamId, Http2ErrorCode.NO_ERROR);

            HboneSendStoppedException stopped = await Assert.ThrowsAsync<HboneSendStoppedException>(async () =>
            {
                while (true)
                {
                    await stream.WriteAsync(new byte[10]).AsTask().WaitAsync(TestTimeout);
                    await peer.ReadFrameAsync(Http2FrameType.DATA); // accepted before the reset was read
                }
            });
            Assert.Contains("NO_ERROR", stopped.Message, StringComparison.Ordinal);
            Assert.False(aborted.IsCancellationRequested, "a NO_ERROR reset after the whole answer aborted the stream");
            byte[] answer = new byte[1000];
            await stream.ReadExactlyAsync(answer).AsTask().WaitAsync(TestTimeout);
            Assert.Equal(0, await stream.ReadAsync(new byte[1]).AsTask().WaitAsync(TestTimeout));
            Assert.Equal(0, connection.ActiveStreams);
            await stream.DisposeAsync();
            Assert.False(connection.IsClosed);
        }
    }

    [Fact]
    public async Task NoErrorResetAfterTheWholeAnswer_RelayCarriesTheAnswerToTheClientAndEndsCleanly()
    {
        // What the waypoint does after answering 431 to oversized headers the client is still sending: END_STREAM, then
        // RST_STREAM NO_ERROR. The client's relay must still deliver the answer and a FIN, not a TCP reset.
        (Http2Connection connection, ScriptedPeer peer) = await StartAsync();
        await using (connection)
        {
            HboneStream stream = await OpenAsync(connection, peer);
            (Socket client, Socket accepted) = await LoopbackSockets.PairAsync();
            using (client)
            using (accepted)
            {
                ValueTask<RelayResult> relay = DuplexRelay<SocketRelayEnd, HboneRelayEnd>.RunAsync(new SocketRelayEnd(accepted), new HboneRelayEnd(stream));
                await client.SendAsync(new byte[100]);
                await peer.ReadFrameAsync(Http2FrameType.DATA);

                await peer.SendDataAsync(stream.StreamId, 1000, endStream: true);
                await peer.SendRstStreamAsync(stream.StreamId, Http2ErrorCode.NO_ERROR);
                // The client goes on sending (the rest of its oversized request) while the answer comes back.
                Task sending = Task.Run(async () =>
                {
                    for (int i = 0; i < 50; i++)
                    {
                        await client.SendAsync(new byte[1000]);
                        await Task.Delay(5);
                    }
                });

                var received = new MemoryStream();
                byte[] buffer = new byte[4096];
                using var timeout = new CancellationTokenSource(TestTimeout);
                int n;
                while ((n = await client.ReceiveAsync(buffer, SocketFlags.None, timeout.Token)) > 0)
                {
                    received.Write(buffer, 0, n);
                }
                Assert.Equal(1000, received.Length);
                await sending.WaitAsync(TestTimeout);
                client.Shutdown(SocketShutdown.Send);

                RelayResult result = await relay.AsTask().WaitAsync(TestTimeout);
                Assert.True(result.Completed, $"the relay failed: {result.Error}");
                Assert.Equal(1000, result.BytesBToA);
            }
        }
    }

    [Fact]
    public async Task PushPromise_IsAConnectionProtocolError()
    {
        (Http2Connection connection, ScriptedPeer peer) = await StartAsync();
        await using (connection)
        {
            HboneStream stream = await OpenAsync(connection, peer);
            await peer.SendRawAsync(Http2FrameType.PUSH_PROMISE, Http2Flags.END_HEADERS, stream.StreamId, [0, 0, 0, 2, 0x82]);
            (_, byte[] goAway) = await peer.ReadFrameAsync(Http2FrameType.GOAWAY);
            Assert.Equal(Http2ErrorCode.PROTOCOL_ERROR, (Http2ErrorCode)BinaryPrimitives.ReadUInt32BigEndian(goAway.AsSpan(4)));
            HboneException error = await Assert.ThrowsAsync<HboneException>(() => stream.ReadAsync(new byte[10]).AsTask().WaitAsync(TestTimeout));
            Assert.Contains("PUSH_PROMISE", error.Message);
            await connection.Closed.WaitAsync(TestTimeout);
        }
    }
}

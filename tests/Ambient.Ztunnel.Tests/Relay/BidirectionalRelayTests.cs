using System.IO.Pipelines;
using System.Net;
using System.Net.Sockets;
using Ambient.Hbone.Relay;
using Ambient.TestCommon;
using Ambient.Ztunnel.Proxy.Relay;

namespace Ambient.Ztunnel.Tests.Relay;

public class BidirectionalRelayTests
{
    private static async Task<byte[]> ReadToEndAsync(Socket socket)
    {
        using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(10));
        var data = new MemoryStream();
        var buffer = new byte[8192];
        int read;
        while ((read = await socket.ReceiveAsync(buffer, timeout.Token)) > 0)
        {
            data.Write(buffer, 0, read);
        }

        return data.ToArray();
    }

    [Fact]
    public async Task Sockets_BothDirections_CountBytes_AndPropagateHalfClose()
    {
        // client <-> [a | relay | b] <-> server
        var (client, a) = await LoopbackSockets.PairAsync();
        var (b, server) = await LoopbackSockets.PairAsync();
        using (client)
        using (server)
        {
            await using var streamA = new NetworkStream(a, ownsSocket: true);
            await using var streamB = new NetworkStream(b, ownsSocket: true);
            var relay = BidirectionalRelay.RunAsync(streamA, streamB, bufferSize: 1024).AsTask();

            var up = new byte[300_000];
            Random.Shared.NextBytes(up);
            await client.SendAsync(up);
            client.Shutdown(SocketShutdown.Send);
            Assert.Equal(up, await ReadToEndAsync(server)); // server saw the client's FIN

            // The server answers after EOF; the relay must still carry it and then close the client side.
            await server.SendAsync(new byte[] { 1, 2, 3 });
            server.Shutdown(SocketShutdown.Send);
            Assert.Equal(new byte[] { 1, 2, 3 }, await ReadToEndAsync(client));

            var result = await relay.WaitAsync(TimeSpan.FromSeconds(10));
            Assert.True(result.Completed, result.Error?.ToString());
            Assert.Equal(up.Length, result.BytesAToB);
            Assert.Equal(3, result.BytesBToA);
        }
    }

    [Fact]
    public async Task ResetOnOneSide_EndsTheRelay_WithTheErrorAndPartialCounts()
    {
        var (client, a) = await LoopbackSockets.PairAsync();
        var (b, server) = await LoopbackSockets.PairAsync();
        using (server)
        {
            await using var streamA = new NetworkStream(a, ownsSocket: true);
            await using var streamB = new NetworkStream(b, ownsSocket: true);
            var relay = BidirectionalRelay.RunAsync(streamA, streamB).AsTask();

            await client.SendAsync(new byte[] { 9, 9 });
            var got = new byte[2];
            Assert.Equal(2, await server.ReceiveAsync(got));
            client.LingerState = new LingerOption(true, 0);
            client.Dispose(); // RST

            // The server never closes; only the reset can end the relay.
            var result = await relay.WaitAsync(TimeSpan.FromSeconds(10));
            Assert.False(result.Completed);
            Assert.Equal(2, result.BytesAToB);
        }
    }

    [Theory]
    [InlineData(true)]
    [InlineData(false)]
    public async Task ResetOnOneSide_IsReportedWithThatSide(bool clientResets)
    {
        var (client, a) = await LoopbackSockets.PairAsync();
        var (b, server) = await LoopbackSockets.PairAsync();
        await using var streamA = new NetworkStream(a, ownsSocket: true);
        await using var streamB = new NetworkStream(b, ownsSocket: true);
        var relay = BidirectionalRelay.RunAsync(streamA, streamB).AsTask();

        await client.SendAsync(new byte[] { 9 });
        Assert.Equal(1, await server.ReceiveAsync(new byte[1]));
        var resetting = clientResets ? client : server;
        resetting.LingerState = new LingerOption(true, 0);
        resetting.Dispose(); // RST

        var result = await relay.WaitAsync(TimeSpan.FromSeconds(10));
        Assert.False(result.Completed);
        Assert.Equal(clientResets ? RelaySide.Downstream : RelaySide.Upstream, result.FailedSide);
        (clientResets ? server : client).Dispose();
    }

    /// <summary>A socket end whose <see cref="Broken"/> token fires when its half-close goes out, as an HBONE stream's
    /// does when the client closes the connection the moment it reads our END_STREAM.</summary>
    private readonly struct BreaksAfterHalfCloseEnd(NetworkStream stream, CancellationTokenSource broken) : IRelayEnd
    {
        public CancellationToken Broken => broken.Token;

        public ValueTask<int> WaitForDataAsync(CancellationToken cancellationToken) => stream.ReadAsync(Memory<byte>.Empty, cancellationToken);

        public ValueTask<int> ReadAsync(Memory<byte> buffer, CancellationToken cancellationToken) => stream.ReadAsync(buffer, cancellationToken);

        public ValueTask WriteAsync(ReadOnlyMemory<byte> data, CancellationToken cancellationToken) => stream.WriteAsync(data, cancellationToken);

        public ValueTask CompleteWritesAsync()
        {
            stream.Socket.Shutdown(SocketShutdown.Send);
            broken.Cancel(); // the connection goes away before this call returns
            return ValueTask.CompletedTask;
        }

        public void Abort() => stream.Dispose();
    }

    [Fact]
    public async Task AnEndThatBreaksAfterBothItsDirectionsEnded_IsNotAFailure()
    {
        // The client half-closes first, the server answers and closes, our END_STREAM goes out and the client's
        // connection drops at once: the tunnel ended cleanly (Istio's flags "-"), not a downstream reset.
        var (client, a) = await LoopbackSockets.PairAsync();
        var (b, server) = await LoopbackSockets.PairAsync();
        using var broken = new CancellationTokenSource();
        using (client)
        using (server)
        {
            await using var streamA = new NetworkStream(a, ownsSocket: true);
            await using var streamB = new NetworkStream(b, ownsSocket: true);
            var relay = DuplexRelay<BreaksAfterHalfCloseEnd, SocketRelayEnd>.RunAsync(new(streamA, broken), new(b)).AsTask();

            await client.SendAsync("ping"u8.ToArray());
            client.Shutdown(SocketShutdown.Send);
            Assert.Equal("ping"u8.ToArray(), await ReadToEndAsync(server));
            await server.SendAsync("pong"u8.ToArray());
            server.Shutdown(SocketShutdown.Send);
            Assert.Equal("pong"u8.ToArray(), await ReadToEndAsync(client));

            var result = await relay.WaitAsync(TimeSpan.FromSeconds(10));
            Assert.True(result.Completed, result.Error?.ToString());
            Assert.Equal(RelaySide.None, result.FailedSide);
            Assert.True(broken.IsCancellationRequested);
        }
    }

    [Fact]
    public async Task AnEndThatBreaksBeforeItsDirectionsEnded_IsADownstreamFailure()
    {
        var (client, a) = await LoopbackSockets.PairAsync();
        var (b, server) = await LoopbackSockets.PairAsync();
        using var broken = new CancellationTokenSource();
        using (client)
        using (server)
        {
            await using var streamA = new NetworkStream(a, ownsSocket: true);
            await using var streamB = new NetworkStream(b, ownsSocket: true);
            var relay = DuplexRelay<BreaksAfterHalfCloseEnd, SocketRelayEnd>.RunAsync(new(streamA, broken), new(b)).AsTask();

            await client.SendAsync("ping"u8.ToArray());
            await broken.CancelAsync(); // reset mid-tunnel: neither direction of the client's end had ended

            var result = await relay.WaitAsync(TimeSpan.FromSeconds(10));
            Assert.False(result.Completed);
            Assert.Equal(RelaySide.Downstream, result.FailedSide);
        }
    }

    [Fact]
    public async Task CompleteWritesCallback_IsUsedForStreamsThatAreNotSockets()
    {
        // Side B is an in-memory duplex (two pipes), like an HBONE stream: its only way to say "no more data" is the
        // callback, which here completes the pipe the far end reads from.
        var (client, a) = await LoopbackSockets.PairAsync();
        using (client)
        {
            var toFar = new Pipe();
            var fromFar = new Pipe();
            var sideB = new DuplexStream(fromFar.Reader.AsStream(), toFar.Writer.AsStream());
            int completions = 0;
            await using var streamA = new NetworkStream(a, ownsSocket: true);
            var relay = BidirectionalRelay.RunAsync(
                streamA,
                sideB,
                completeWritesB: async () =>
                {
                    Interlocked.Increment(ref completions);
                    await toFar.Writer.CompleteAsync();
                }).AsTask();

            await client.SendAsync("ping"u8.ToArray());
            client.Shutdown(SocketShutdown.Send);
            var far = await toFar.Reader.AsStream().ReadToEndAsync(TimeSpan.FromSeconds(10));
            Assert.Equal("ping"u8.ToArray(), far);
            Assert.Equal(1, completions);

            await fromFar.Writer.WriteAsync("pong"u8.ToArray());
            await fromFar.Writer.CompleteAsync();
            Assert.Equal("pong"u8.ToArray(), await ReadToEndAsync(client));

            var result = await relay.WaitAsync(TimeSpan.FromSeconds(10));
            Assert.True(result.Completed, result.Error?.ToString());
            Assert.Equal((4, 4), (result.BytesAToB, result.BytesBToA));
        }
    }

    [Fact]
    public async Task Cancellation_StopsAnIdleRelay()
    {
        var (client, a) = await LoopbackSockets.PairAsync();
        var (b, server) = await LoopbackSockets.PairAsync();
        using (client)
        using (server)
        {
            await using var streamA = new NetworkStream(a, ownsSocket: true);
            await using var streamB = new NetworkStream(b, ownsSocket: true);
            using var cts = new CancellationTokenSource(TimeSpan.FromMilliseconds(200));
            var result = await BidirectionalRelay.RunAsync(streamA, streamB, cancellationToken: cts.Token).AsTask().WaitAsync(TimeSpan.FromSeconds(10));
            Assert.IsAssignableFrom<OperationCanceledException>(result.Error);
        }
    }

    private sealed class DuplexStream(Stream read, Stream write) : Stream
    {
        public override bool CanRead => true;
        public override bool CanSeek => false;
        public override bool CanWrite => true;
        public override long Length => throw new NotSupportedException();
        public override long Position { get => throw new NotSupportedException(); set => throw new NotSupportedException(); }
        public override void Flush() => write.Flush();
        public override Task FlushAsync(CancellationToken cancellationToken) => write.FlushAsync(cancellationToken);
        public override int Read(byte[] buffer, int offset, int count) => read.Read(buffer, offset, count);
        public override ValueTask<int> ReadAsync(Memory<byte> buffer, CancellationToken cancellationToken = default) => read.ReadAsync(buffer, cancellationToken);
        public override void Write(byte[] buffer, int offset, int count) => write.Write(buffer, offset, count);
        public override ValueTask WriteAsync(ReadOnlyMemory<byte> buffer, CancellationToken cancellationToken = default) => write.WriteAsync(buffer, cancellationToken);
        public override long Seek(long offset, SeekOrigin origin) => throw new NotSupportedException();
        public override void SetLength(long value) => throw new NotSupportedException();
    }
}

internal static class StreamTestExtensions
{
    public static async Task<byte[]> ReadToEndAsync(this Stream stream, TimeSpan limit)
    {
        using var timeout = new CancellationTokenSource(limit);
        var data = new MemoryStream();
        await stream.CopyToAsync(data, timeout.Token);
        return data.ToArray();
    }
}

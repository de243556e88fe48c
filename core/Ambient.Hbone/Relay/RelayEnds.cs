using System.Net.Security;
using System.Runtime.CompilerServices;
using System.Net.Sockets;
using Ambient.Hbone.Http2;

namespace Ambient.Hbone.Relay;

/// <summary>A TCP socket: half-close is Shutdown(Send); abort is a TCP RST (linger 0), RFC 9113 section 8.5.</summary>
internal readonly struct SocketRelayEnd(Socket socket) : IRelayEnd
{
    public CancellationToken Broken => CancellationToken.None;

    public ValueTask<int> WaitForDataAsync(CancellationToken cancellationToken) =>
        socket.ReceiveAsync(Memory<byte>.Empty, SocketFlags.None, cancellationToken);

    public ValueTask<int> ReadAsync(Memory<byte> buffer, CancellationToken cancellationToken) =>
        socket.ReceiveAsync(buffer, SocketFlags.None, cancellationToken);

    // Pooled: a write that completes asynchronously must not allocate its state machine per packet.
    [AsyncMethodBuilder(typeof(PoolingAsyncValueTaskMethodBuilder))]
    public async ValueTask WriteAsync(ReadOnlyMemory<byte> data, CancellationToken cancellationToken)
    {
        while (!data.IsEmpty)
        {
            int sent = await socket.SendAsync(data, SocketFlags.None, cancellationToken).ConfigureAwait(false);
            data = data[sent..];
        }
    }

    public ValueTask CompleteWritesAsync()
    {
        socket.Shutdown(SocketShutdown.Send);
        return default;
    }

    public void Abort()
    {
        try
        {
            socket.LingerState = new LingerOption(true, 0);
        }
        catch (Exception)
        {
            // Already closed: nothing left to reset.
        }
        socket.Dispose();
    }
}

/// <summary>An HBONE CONNECT stream: half-close is END_STREAM; abort is RST_STREAM CONNECT_ERROR (RFC 9113 section 8.5);
/// a reset by the peer or a lost connection fires <see cref="Broken"/>.</summary>
internal readonly struct HboneRelayEnd(HboneStream stream) : IRelayEnd
{
    public CancellationToken Broken => stream.Aborted;

    public ValueTask<int> WaitForDataAsync(CancellationToken cancellationToken) => stream.ReadAsync(Memory<byte>.Empty, cancellationToken);

    public ValueTask<int> ReadAsync(Memory<byte> buffer, CancellationToken cancellationToken) => stream.ReadAsync(buffer, cancellationToken);

    public ValueTask WriteAsync(ReadOnlyMemory<byte> data, CancellationToken cancellationToken) => stream.WriteAsync(data, cancellationToken);

    public ValueTask CompleteWritesAsync() => stream.CompleteWritesAsync();

    // A stream already reset or released sends nothing more.
    public void Abort() => _ = stream.ResetAsync(Http2ErrorCode.CONNECT_ERROR, "the other end of the tunnel broke");
}

/// <summary>
/// Any duplex <see cref="Stream"/>. Half-close, in order of preference: the caller's <c>completeWrites</c> (an HBONE
/// stream sends END_STREAM, a Kestrel response completes); a <see cref="NetworkStream"/> gets Shutdown(Send); an
/// <see cref="SslStream"/> sends close_notify; any other stream can only be flushed, and its peer learns of the end
/// when the caller disposes it. Abort disposes the stream.
/// </summary>
internal readonly struct StreamRelayEnd(Stream stream, Func<ValueTask>? completeWrites = null) : IRelayEnd
{
    public CancellationToken Broken => CancellationToken.None;

    public ValueTask<int> WaitForDataAsync(CancellationToken cancellationToken) => stream.ReadAsync(Memory<byte>.Empty, cancellationToken);

    public ValueTask<int> ReadAsync(Memory<byte> buffer, CancellationToken cancellationToken) => stream.ReadAsync(buffer, cancellationToken);

    // Pooled: a write that completes asynchronously must not allocate its state machine per packet.
    [AsyncMethodBuilder(typeof(PoolingAsyncValueTaskMethodBuilder))]
    public async ValueTask WriteAsync(ReadOnlyMemory<byte> data, CancellationToken cancellationToken)
    {
        await stream.WriteAsync(data, cancellationToken).ConfigureAwait(false);
        // Buffering streams (TLS, HTTP/2 bodies) must not sit on relayed bytes; NetworkStream's flush is a no-op.
        await stream.FlushAsync(cancellationToken).ConfigureAwait(false);
    }

    public async ValueTask CompleteWritesAsync()
    {
        if (completeWrites is not null)
        {
            await completeWrites().ConfigureAwait(false);
            return;
        }
        switch (stream)
        {
            case NetworkStream network:
                network.Socket.Shutdown(SocketShutdown.Send);
                break;
            case SslStream ssl:
                await ssl.ShutdownAsync().ConfigureAwait(false);
                break;
            default:
                await stream.FlushAsync().ConfigureAwait(false);
                break;
        }
    }

    public void Abort() => stream.Dispose();
}

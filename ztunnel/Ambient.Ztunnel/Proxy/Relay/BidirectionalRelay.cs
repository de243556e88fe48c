using System.Buffers;
using System.Net.Security;
using System.Net.Sockets;

namespace Ambient.Ztunnel.Proxy.Relay;

/// <summary>
/// Bytes moved by one relay. <see cref="Error"/> is the first failure (reset, cancellation); the counts are still
/// exact up to that point, which is what connection metrics need.
/// </summary>
internal readonly record struct RelayResult(long BytesAToB, long BytesBToA, Exception? Error)
{
    public bool Completed => Error is null;
}

/// <summary>
/// Copies bytes both ways between two duplex streams until both directions reach end of stream, keeping TCP
/// half-close semantics: when one side finishes sending, the other side's write half is shut down and the opposite
/// direction keeps flowing (a client may send a request, FIN, and still read the answer).
/// </summary>
/// <remarks>
/// Write-side shutdown per stream, in order of preference: the caller's <c>completeWrites</c> callback (an HBONE
/// stream sends END_STREAM, a Kestrel response completes); a <see cref="NetworkStream"/> gets
/// <see cref="Socket.Shutdown"/>(Send); an <see cref="SslStream"/> sends close_notify. Any other stream cannot signal
/// end of data, so it is only flushed and the peer learns of the end when the caller disposes it.
/// A failure in either direction cancels the other, so a reset on one side tears the relay down promptly; streams are
/// therefore expected to honour cancellation (sockets, SslStream and Kestrel bodies do). The caller owns and disposes
/// both streams.
/// </remarks>
internal static class BidirectionalRelay
{
    /// <summary>64 KiB: measured ~6 Gbps on one loopback stream; smaller buffers cost syscalls, larger ones memory.</summary>
    public const int DefaultBufferSize = 64 * 1024;

    public static async ValueTask<RelayResult> RunAsync(
        Stream a,
        Stream b,
        Func<ValueTask>? completeWritesA = null,
        Func<ValueTask>? completeWritesB = null,
        int bufferSize = DefaultBufferSize,
        CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(a);
        ArgumentNullException.ThrowIfNull(b);
        ArgumentOutOfRangeException.ThrowIfLessThan(bufferSize, 1);

        using var failed = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
        var aToB = CopyAsync(a, b, completeWritesB, bufferSize, failed);
        var bToA = CopyAsync(b, a, completeWritesA, bufferSize, failed);
        var (sentAToB, errorAToB) = await aToB.ConfigureAwait(false);
        var (sentBToA, errorBToA) = await bToA.ConfigureAwait(false);
        return new RelayResult(sentAToB, sentBToA, errorAToB ?? errorBToA);
    }

    /// <summary>Shuts down the write side of <paramref name="stream"/> as described on the class.</summary>
    public static async ValueTask CompleteWritesAsync(Stream stream, Func<ValueTask>? completeWrites)
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

    private static async Task<(long Bytes, Exception? Error)> CopyAsync(
        Stream source, Stream destination, Func<ValueTask>? completeWrites, int bufferSize, CancellationTokenSource failed)
    {
        var token = failed.Token;
        byte[] buffer = ArrayPool<byte>.Shared.Rent(bufferSize);
        long total = 0;
        try
        {
            while (true)
            {
                int read = await source.ReadAsync(buffer.AsMemory(0, bufferSize), token).ConfigureAwait(false);
                if (read == 0)
                {
                    break;
                }

                await destination.WriteAsync(buffer.AsMemory(0, read), token).ConfigureAwait(false);
                // Buffering streams (TLS, HTTP/2 bodies) must not sit on relayed bytes; NetworkStream's flush is a no-op.
                await destination.FlushAsync(token).ConfigureAwait(false);
                total += read;
            }

            await CompleteWritesAsync(destination, completeWrites).ConfigureAwait(false);
            return (total, null);
        }
        catch (Exception ex)
        {
            // One broken side ends the whole relay: the other direction could otherwise wait forever on a peer that
            // will never hear from us again.
            try
            {
                failed.Cancel();
            }
            catch (ObjectDisposedException)
            {
            }

            return (total, ex);
        }
        finally
        {
            ArrayPool<byte>.Shared.Return(buffer);
        }
    }
}

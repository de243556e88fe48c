using System.Buffers;
using System.Net.Sockets;
using Ambient.Core.Hbone;
using Ambient.Core.Http2;
using Ambient.Core.Telemetry;

namespace Ambient.Ztunnel.Proxy.Inbound;

/// <summary>
/// Copies bytes between an accepted HBONE CONNECT stream and the upstream workload socket, both directions at once,
/// with TCP half-close semantics:
/// <code>
///   client DATA ... END_STREAM  -> stream reads   -> socket.Send ... Shutdown(Send)
///   client     <- END_STREAM ... stream writes  <- socket.Receive ... 0 (EOF)
/// </code>
/// A reset on either side tears down the other (RST_STREAM towards the client, socket close towards the workload).
/// Buffers: each direction first waits with a zero-byte read, so an idle tunnel holds no buffer; a pooled 64 KiB
/// array is rented only while bytes flow.
/// </summary>
internal sealed class TunnelRelay
{
    // Large enough that one syscall or one DATA frame moves a useful amount.
    private const int ChunkSize = 64 * 1024;

    private readonly HboneStream _stream;
    private readonly Socket _upstream;
    private string? _flags;
    private long _bytesIn;
    private long _bytesOut;

    public TunnelRelay(HboneStream stream, Socket upstream)
    {
        _stream = stream;
        _upstream = upstream;
    }

    /// <summary>Bytes from the client (HBONE) to the workload.</summary>
    public long BytesIn => Interlocked.Read(ref _bytesIn);

    /// <summary>Bytes from the workload to the client.</summary>
    public long BytesOut => Interlocked.Read(ref _bytesOut);

    /// <summary>"-" when both directions ended cleanly, else the first failure's flag.</summary>
    public string Flags => Volatile.Read(ref _flags) ?? ResponseFlags.None;

    public async Task RunAsync()
    {
        // A reset stream or a lost connection must end the workload side even when neither direction is reading the
        // stream at that moment (the client already half-closed, or the workload is not reading).
        using var aborted = _stream.Aborted.UnsafeRegister(static s => ((TunnelRelay)s!).FailDownstream(), this);
        var upload = UploadAsync();
        var download = DownloadAsync();
        await upload.ConfigureAwait(false);
        await download.ConfigureAwait(false);
    }

    private async Task UploadAsync()
    {
        byte[]? buffer = null;
        try
        {
            while (true)
            {
                int n;
                try
                {
                    // Zero-byte read: completes when DATA (or END_STREAM) is there, without holding a buffer meanwhile.
                    await _stream.ReadAsync(Memory<byte>.Empty).ConfigureAwait(false);
                    buffer ??= ArrayPool<byte>.Shared.Rent(ChunkSize);
                    n = await _stream.ReadAsync(buffer.AsMemory(0, ChunkSize)).ConfigureAwait(false);
                }
                catch (Exception)
                {
                    // RST_STREAM from the client, or the HTTP/2 connection went away.
                    FailDownstream();
                    return;
                }

                if (n == 0)
                {
                    // END_STREAM from the client: half-close towards the workload, keep reading its answer.
                    try
                    {
                        _upstream.Shutdown(SocketShutdown.Send);
                    }
                    catch (Exception)
                    {
                        FailUpstream();
                    }
                    return;
                }

                try
                {
                    await SendAllAsync(buffer.AsMemory(0, n)).ConfigureAwait(false);
                }
                catch (Exception)
                {
                    FailUpstream();
                    return;
                }
                Interlocked.Add(ref _bytesIn, n);
                ReturnIfDrained(ref buffer, n);
            }
        }
        finally
        {
            if (buffer is not null)
                ArrayPool<byte>.Shared.Return(buffer);
        }
    }

    private async ValueTask SendAllAsync(ReadOnlyMemory<byte> data)
    {
        while (!data.IsEmpty)
        {
            int sent = await _upstream.SendAsync(data, SocketFlags.None).ConfigureAwait(false);
            data = data[sent..];
        }
    }

    private async Task DownloadAsync()
    {
        byte[]? buffer = null;
        try
        {
            while (true)
            {
                int n;
                try
                {
                    if (buffer is null)
                    {
                        // Zero-byte receive: an idle tunnel waits without holding a 64 KiB buffer.
                        await _upstream.ReceiveAsync(Memory<byte>.Empty, SocketFlags.None).ConfigureAwait(false);
                        buffer = ArrayPool<byte>.Shared.Rent(ChunkSize);
                    }
                    n = await _upstream.ReceiveAsync(buffer.AsMemory(0, ChunkSize), SocketFlags.None).ConfigureAwait(false);
                }
                catch (Exception)
                {
                    if (Volatile.Read(ref _flags) is null)
                        FailUpstream();
                    return;
                }

                if (n == 0)
                {
                    // Workload EOF: END_STREAM towards the client while its direction may stay open.
                    try
                    {
                        await _stream.CompleteWritesAsync().ConfigureAwait(false);
                    }
                    catch (Exception)
                    {
                        FailDownstream();
                    }
                    return;
                }

                try
                {
                    await _stream.WriteAsync(buffer.AsMemory(0, n)).ConfigureAwait(false);
                }
                catch (Exception)
                {
                    FailDownstream();
                    return;
                }
                Interlocked.Add(ref _bytesOut, n);
                ReturnIfDrained(ref buffer, n);
            }
        }
        finally
        {
            if (buffer is not null)
                ArrayPool<byte>.Shared.Return(buffer);
        }
    }

    /// <summary>A short read means the source is drained: give the buffer back while the tunnel waits for more.</summary>
    private static void ReturnIfDrained(ref byte[]? buffer, int read)
    {
        if (read < ChunkSize && buffer is not null)
        {
            ArrayPool<byte>.Shared.Return(buffer);
            buffer = null;
        }
    }

    // The client side broke: reset the workload connection (a TCP RST, RFC 9113 section 8.5) so its reads and writes
    // end too and the workload learns the tunnel died rather than ended.
    private void FailDownstream()
    {
        if (Interlocked.CompareExchange(ref _flags, ResponseFlags.DownstreamReset, null) is null)
        {
            try
            {
                _upstream.LingerState = new LingerOption(true, 0);
            }
            catch (Exception)
            {
                // Already closed: nothing left to reset.
            }
            _upstream.Dispose();
        }
    }

    // The workload side broke: reset the stream (RST_STREAM) so the client and our reader see it.
    private void FailUpstream()
    {
        if (Interlocked.CompareExchange(ref _flags, ResponseFlags.UpstreamReset, null) is null)
        {
            _upstream.Dispose();
            // RFC 9113 section 8.5: a tunnel whose TCP side broke is reset with CONNECT_ERROR.
            _ = _stream.ResetAsync(Http2ErrorCode.CONNECT_ERROR, "the workload connection broke");
        }
    }
}

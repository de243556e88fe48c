using System.Buffers;
using System.IO.Pipelines;
using System.Net.Sockets;
using Microsoft.AspNetCore.Http;

namespace Ambient.Ztunnel.Proxy.Inbound;

/// <summary>
/// Copies bytes between an accepted HBONE CONNECT stream and the upstream workload socket, both directions at once,
/// with TCP half-close semantics:
/// <code>
///   client DATA ... END_STREAM  -> Request.BodyReader  -> socket.Send ... Shutdown(Send)
///   client     <- END_STREAM ... Response.BodyWriter   <- socket.Receive ... 0 (EOF)
/// </code>
/// A reset on either side tears down the other (RST_STREAM towards the client, socket close towards the workload).
/// Buffers: downstream data is sent straight from Kestrel's pooled request segments; upstream data is received
/// straight into the response pipe's memory. Only a multi-segment request read is coalesced, into one 64 KiB array
/// rented once per tunnel.
/// </summary>
internal sealed class TunnelRelay
{
    // Receive size: large enough that one syscall moves a useful amount, small enough for Kestrel's output pipe.
    private const int ReceiveChunk = 64 * 1024;
    private const int CoalesceSize = 64 * 1024;

    private readonly HttpContext _context;
    private readonly Socket _upstream;
    private byte[]? _scratch;
    private string? _flags;
    private long _bytesIn;
    private long _bytesOut;

    public TunnelRelay(HttpContext context, Socket upstream)
    {
        _context = context;
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
        try
        {
            var upload = UploadAsync(_context.Request.BodyReader, _context.RequestAborted);
            var download = DownloadAsync(_context.Response.BodyWriter, _context.RequestAborted);
            await Task.WhenAll(upload, download).ConfigureAwait(false);
        }
        finally
        {
            if (_scratch is not null)
                ArrayPool<byte>.Shared.Return(_scratch);
        }
    }

    private async Task UploadAsync(PipeReader reader, CancellationToken aborted)
    {
        while (true)
        {
            ReadResult result;
            try
            {
                result = await reader.ReadAsync(aborted).ConfigureAwait(false);
            }
            catch (Exception)
            {
                // RST_STREAM from the client, or the HTTP/2 connection went away.
                FailDownstream();
                return;
            }

            var buffer = result.Buffer;
            if (!buffer.IsEmpty)
            {
                try
                {
                    await SendAsync(buffer).ConfigureAwait(false);
                }
                catch (Exception)
                {
                    FailUpstream();
                    return;
                }
                Interlocked.Add(ref _bytesIn, buffer.Length);
            }
            reader.AdvanceTo(buffer.End);

            if (result.IsCompleted)
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
            if (result.IsCanceled)
                return;
        }
    }

    private async ValueTask SendAsync(ReadOnlySequence<byte> buffer)
    {
        if (buffer.IsSingleSegment)
        {
            await SendAllAsync(buffer.First).ConfigureAwait(false);
            return;
        }

        // Kestrel hands request data over in small pooled segments; one send per segment would multiply syscalls.
        _scratch ??= ArrayPool<byte>.Shared.Rent(CoalesceSize);
        while (!buffer.IsEmpty)
        {
            int n = (int)Math.Min(buffer.Length, _scratch.Length);
            buffer.Slice(0, n).CopyTo(_scratch);
            await SendAllAsync(_scratch.AsMemory(0, n)).ConfigureAwait(false);
            buffer = buffer.Slice(n);
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

    private async Task DownloadAsync(PipeWriter writer, CancellationToken aborted)
    {
        bool waitForData = true;
        while (true)
        {
            int n;
            Memory<byte> memory;
            try
            {
                if (waitForData)
                {
                    // Zero-byte receive: an idle tunnel waits without holding a 64 KiB buffer.
                    await _upstream.ReceiveAsync(Memory<byte>.Empty, SocketFlags.None, aborted).ConfigureAwait(false);
                }
                memory = writer.GetMemory(ReceiveChunk);
                n = await _upstream.ReceiveAsync(memory, SocketFlags.None, aborted).ConfigureAwait(false);
            }
            catch (Exception)
            {
                if (aborted.IsCancellationRequested)
                    FailDownstream();
                else
                    FailUpstream();
                return;
            }

            if (n == 0)
            {
                // Workload EOF: END_STREAM towards the client while its direction may stay open.
                try
                {
                    await _context.Response.CompleteAsync().ConfigureAwait(false);
                }
                catch (Exception)
                {
                    FailDownstream();
                }
                return;
            }

            writer.Advance(n);
            Interlocked.Add(ref _bytesOut, n);
            FlushResult flush;
            try
            {
                flush = await writer.FlushAsync(aborted).ConfigureAwait(false);
            }
            catch (Exception)
            {
                FailDownstream();
                return;
            }
            if (flush.IsCompleted || flush.IsCanceled)
            {
                FailDownstream();
                return;
            }
            // A full read means more is probably queued: skip the readiness wait next time.
            waitForData = n < memory.Length;
        }
    }

    // The client side broke: drop the workload connection so its reads and writes end too.
    private void FailDownstream()
    {
        if (Interlocked.CompareExchange(ref _flags, ResponseFlags.DownstreamReset, null) is null)
            _upstream.Dispose();
    }

    // The workload side broke: reset the stream (RST_STREAM) so the client and our reader see it.
    private void FailUpstream()
    {
        if (Interlocked.CompareExchange(ref _flags, ResponseFlags.UpstreamReset, null) is null)
        {
            _upstream.Dispose();
            _context.Abort();
        }
    }
}

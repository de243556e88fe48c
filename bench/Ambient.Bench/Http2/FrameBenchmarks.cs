using System.Buffers;
using Ambient.Hbone.Http2;
using BenchmarkDotNet.Attributes;

namespace Ambient.Bench.Http2;

/// <summary>
/// The HBONE client's per-frame costs. Goal: 0 B allocated per DATA frame parsed or written.
/// Run: dotnet run -c Release --project bench/Ambient.Bench -- --filter '*FrameBenchmarks*' --job short
/// </summary>
[MemoryDiagnoser]
public class FrameBenchmarks
{
    private readonly byte[] _dataFrame = new byte[Http2Frame.HeaderLength + 16_384];
    private readonly byte[] _headersFrame;
    private readonly byte[] _writeTarget = new byte[Http2Frame.HeaderLength + 16_384];
    private readonly HPackDecoder _decoder = new();
    private readonly HPackEncoder _encoder = new();
    private readonly ArrayBufferWriter<byte> _blockWriter = new(1024);

    public FrameBenchmarks()
    {
        Http2FrameWriter.WriteDataFrameHeader(_dataFrame, 1, 16_384, endStream: false);

        // A typical CONNECT response: :status 200 plus a couple of headers, as a peer without indexing would send it.
        var encoder = new HPackEncoder();
        var block = new ArrayBufferWriter<byte>();
        encoder.EncodeHeader(block, ":status"u8, "200"u8);
        encoder.EncodeHeader(block, "server"u8, "ztunnel"u8, HPackIndexing.WithoutIndexing);
        encoder.EncodeHeader(block, "date"u8, "Mon, 21 Oct 2013 20:13:21 GMT"u8, HPackIndexing.WithoutIndexing);
        var frame = new ArrayBufferWriter<byte>();
        Http2FrameWriter.WriteHeaders(frame, 1, block.WrittenSpan, endStream: false, Http2Frame.DefaultMaxFrameSize);
        _headersFrame = frame.WrittenSpan.ToArray();

        // Steady state of a pooled connection: the pseudo-headers are already in the dynamic table.
        _encoder.EncodeConnectRequest(_blockWriter, "10.244.1.7:8080");
    }

    [Benchmark]
    public long ParseDataFrame()
    {
        var buffer = new ReadOnlySequence<byte>(_dataFrame);
        Http2FrameReader.TryReadFrame(ref buffer, 1024 * 1024, out var frame, out var payload);
        return Http2FrameReader.GetDataPayload(frame, payload).Length + frame.StreamId;
    }

    [Benchmark]
    public int ParseHeadersAndDecodeConnectResponse()
    {
        var buffer = new ReadOnlySequence<byte>(_headersFrame);
        Http2FrameReader.TryReadFrame(ref buffer, 1024 * 1024, out var frame, out var payload);
        var handler = new StatusHandler();
        _decoder.Decode(Http2FrameReader.GetHeaderBlockFragment(frame, payload), frame.StreamId, ref handler);
        return handler.Status + handler.Count;
    }

    [Benchmark]
    public int EncodeConnectRequest()
    {
        _blockWriter.ResetWrittenCount();
        _encoder.EncodeConnectRequest(_blockWriter, "10.244.1.7:8080");
        _encoder.EncodeHeader(_blockWriter, "traceparent"u8, "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"u8, HPackIndexing.WithoutIndexing);
        return _blockWriter.WrittenCount;
    }

    [Benchmark]
    public int WriteDataFrameHeader()
    {
        Http2FrameWriter.WriteDataFrameHeader(_writeTarget, 1, 16_384, endStream: false);
        return _writeTarget[2];
    }

    private struct StatusHandler : IHPackHeaderHandler
    {
        public int Status;
        public int Count;

        public void OnHeader(int staticIndex, ReadOnlySpan<byte> name, ReadOnlySpan<byte> value)
        {
            Count++;
            if (staticIndex == HPackStaticTable.Status200 && value.SequenceEqual("200"u8))
            {
                Status = 200;
            }
        }
    }
}

using System.Buffers;
using Ambient.Core.Grpc;

namespace Ambient.Core.Tests.Grpc;

/// <summary>Unit tests of the text encodings and the framing parser.</summary>
public sealed class GrpcProtocolTests
{
    [Theory]
    [InlineData("1H", 36_000_000_000L)]
    [InlineData("2M", 1_200_000_000L)]
    [InlineData("3S", 30_000_000L)]
    [InlineData("250m", 2_500_000L)]
    [InlineData("7u", 70L)]
    [InlineData("1n", 1L)]
    [InlineData("99999999S", 999_999_990_000_000L)]
    public void Parses_grpc_timeout(string value, long ticks)
    {
        Assert.True(GrpcProtocol.TryParseTimeout(value, out var timeout));
        Assert.Equal(ticks, timeout.Ticks);
    }

    [Theory]
    [InlineData("")]
    [InlineData("S")]
    [InlineData("10")]
    [InlineData("10s")]
    [InlineData("123456789S")] // 9 digits
    [InlineData("-1S")]
    [InlineData("1.5S")]
    public void Rejects_malformed_grpc_timeout(string value) =>
        Assert.False(GrpcProtocol.TryParseTimeout(value, out _));

    [Theory]
    [InlineData(300, "300000u")]
    [InlineData(200_000, "200000m")]
    [InlineData(400_000_000, "400000S")]
    public void Formats_timeout_with_finest_unit_that_fits_8_digits(long milliseconds, string expected) =>
        Assert.Equal(expected, GrpcProtocol.FormatTimeout(TimeSpan.FromMilliseconds(milliseconds)));

    [Fact]
    public void Formatted_timeout_round_trips_and_never_shortens()
    {
        foreach (var ticks in new long[] { 1, 9, 11, 12_345_678, TimeSpan.TicksPerDay * 3 + 7, TimeSpan.TicksPerDay * 4000 })
        {
            var original = TimeSpan.FromTicks(ticks);
            var text = GrpcProtocol.FormatTimeout(original);
            Assert.True(text.Length <= 9, text);
            Assert.True(GrpcProtocol.TryParseTimeout(text, out var parsed), text);
            Assert.True(parsed >= original, $"{text} parsed to {parsed}, shorter than {original}");
        }
    }

    [Theory]
    [InlineData("plain ascii", "plain ascii")]
    [InlineData("100%", "100%25")]
    [InlineData("é", "%C3%A9")]
    [InlineData("a\r\nb\t", "a%0D%0Ab%09")]
    [InlineData("✓ 日本 😀", "%E2%9C%93 %E6%97%A5%E6%9C%AC %F0%9F%98%80")]
    public void Percent_encodes_grpc_message_and_decodes_back(string message, string wire)
    {
        Assert.Equal(wire, GrpcProtocol.EncodeMessage(message));
        Assert.Equal(message, GrpcProtocol.DecodeMessage(wire));
    }

    [Theory]
    [InlineData("bad %G1 escape", "bad %G1 escape")]
    [InlineData("trailing %4", "trailing %4")]
    [InlineData("%41%42", "AB")]
    [InlineData(null, "")]
    public void Decoding_keeps_malformed_escapes_literally(string? wire, string expected) =>
        Assert.Equal(expected, GrpcProtocol.DecodeMessage(wire));

    [Theory]
    [InlineData("application/grpc", true)]
    [InlineData("application/grpc+proto", true)]
    [InlineData("Application/GRPC; charset=utf-8", true)]
    [InlineData("application/grpc+json", false)]
    [InlineData("application/json", false)]
    [InlineData(null, false)]
    public void Recognizes_grpc_content_types(string? contentType, bool expected) =>
        Assert.Equal(expected, GrpcProtocol.IsGrpcProtoContentType(contentType));

    [Theory]
    [InlineData(400, GrpcStatusCode.Internal)]
    [InlineData(401, GrpcStatusCode.Unauthenticated)]
    [InlineData(403, GrpcStatusCode.PermissionDenied)]
    [InlineData(404, GrpcStatusCode.Unimplemented)]
    [InlineData(429, GrpcStatusCode.Unavailable)]
    [InlineData(502, GrpcStatusCode.Unavailable)]
    [InlineData(503, GrpcStatusCode.Unavailable)]
    [InlineData(504, GrpcStatusCode.Unavailable)]
    [InlineData(500, GrpcStatusCode.Unknown)]
    internal void Maps_http_status(int http, GrpcStatusCode expected) =>
        Assert.Equal(expected, GrpcProtocol.FromHttpStatus(http));

    [Fact]
    public void Reads_messages_across_segment_boundaries_and_several_per_segment()
    {
        // Three messages (payloads 3, 0 and 2 bytes) cut into segments at awkward places, header included.
        byte[] wire = [0, 0, 0, 0, 3, 1, 2, 3, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2, 9, 8];
        var buffer = Segments(wire, 1, 4, 2, 6, 7);
        var payloads = new List<byte[]>();
        while (GrpcFraming.TryReadMessage(ref buffer, 100, null, "Received", out var payload))
        {
            payloads.Add(payload.ToArray());
        }

        Assert.Equal(3, payloads.Count);
        Assert.Equal([1, 2, 3], payloads[0]);
        Assert.Empty(payloads[1]);
        Assert.Equal([9, 8], payloads[2]);
        Assert.Equal(0, buffer.Length);
    }

    [Fact]
    public void Incomplete_message_leaves_the_buffer_untouched()
    {
        var buffer = Segments([0, 0, 0, 0, 4, 1, 2], 3);

        Assert.False(GrpcFraming.TryReadMessage(ref buffer, 100, null, "Received", out _));
        Assert.Equal(7, buffer.Length);
    }

    [Fact]
    public void Oversized_message_is_refused_from_its_header_alone()
    {
        // Only the 5-byte header of a 5 MiB message: refused before any payload is buffered.
        var buffer = new ReadOnlySequence<byte>(new byte[] { 0, 0, 0x50, 0, 0 });

        var ex = Assert.Throws<GrpcException>(() => GrpcFraming.TryReadMessage(ref buffer, GrpcServerDefaults.MaxMessageSize, null, "Received", out _));

        Assert.Equal(GrpcStatusCode.ResourceExhausted, ex.Status);
        Assert.Equal("Received message larger than max (5242880 vs. 4194304)", ex.Detail);
    }

    [Fact]
    public void Invalid_compressed_flag_is_internal()
    {
        var buffer = new ReadOnlySequence<byte>(new byte[] { 2, 0, 0, 0, 0 });

        var ex = Assert.Throws<GrpcException>(() => GrpcFraming.TryReadMessage(ref buffer, 100, null, "Received", out _));

        Assert.Equal(GrpcStatusCode.Internal, ex.Status);
    }

    private static ReadOnlySequence<byte> Segments(byte[] data, params int[] sizes)
    {
        Segment? first = null;
        Segment? last = null;
        var offset = 0;
        foreach (var size in sizes)
        {
            var take = Math.Min(size, data.Length - offset);
            var segment = new Segment(data.AsMemory(offset, take));
            offset += take;
            if (first is null)
            {
                first = last = segment;
            }
            else
            {
                last = last!.Append(segment);
            }
        }

        if (offset < data.Length)
        {
            last = last!.Append(new Segment(data.AsMemory(offset)));
        }

        return new ReadOnlySequence<byte>(first!, 0, last!, last!.Memory.Length);
    }

    private sealed class Segment : ReadOnlySequenceSegment<byte>
    {
        public Segment(ReadOnlyMemory<byte> memory) => Memory = memory;

        public Segment Append(Segment next)
        {
            next.RunningIndex = RunningIndex + Memory.Length;
            Next = next;
            return next;
        }
    }
}

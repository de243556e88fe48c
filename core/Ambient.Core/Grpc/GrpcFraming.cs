using System.Buffers;
using System.Buffers.Binary;
using System.IO.Pipelines;
using Google.Protobuf;

namespace Ambient.Core.Grpc;

/// <summary>
/// Length-Prefixed-Message framing, shared by server and client. Messages may span HTTP/2 DATA frames or share
/// one, so parsing works on a <see cref="ReadOnlySequence{T}"/> from a <see cref="PipeReader"/>, Kestrel style.
/// </summary>
internal static class GrpcFraming
{
    // Length-Prefixed-Message (grpc/doc/PROTOCOL-HTTP2.md):
    //  0                   1                   2                   3
    //  0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
    // +---------------+-----------------------------------------------+
    // |Compressed-Flag|        Message-Length (32, big-endian) ...    |
    // +---------------+-----------------------------------------------+
    // | ...           |        Message (Message-Length octets) ...
    // +---------------+-----------------------------------------------+
    // Compressed-Flag 1 means the message is compressed with the algorithm named in grpc-encoding.

    /// <summary>
    /// Tries to cut one whole message off the front of <paramref name="buffer"/>. On success the buffer is
    /// advanced past it and <paramref name="message"/> slices the payload (valid until the reader is advanced).
    /// Throws <see cref="GrpcException"/> as soon as the 5-byte header shows an oversized or compressed message,
    /// so an oversized message is never buffered.
    /// </summary>
    public static bool TryReadMessage(
        ref ReadOnlySequence<byte> buffer, int maxMessageSize, string? encoding, string direction,
        out ReadOnlySequence<byte> message)
    {
        message = default;
        if (buffer.Length < GrpcProtocol.HeaderSize)
        {
            return false;
        }

        Span<byte> header = stackalloc byte[GrpcProtocol.HeaderSize];
        buffer.Slice(0, GrpcProtocol.HeaderSize).CopyTo(header);
        var flag = header[0];
        var length = BinaryPrimitives.ReadUInt32BigEndian(header[1..]);

        if (flag != 0)
        {
            if (flag != 1)
            {
                throw new GrpcException(GrpcStatusCode.Internal, $"Invalid compressed flag {flag} in message header (must be 0 or 1)");
            }

            // Spec: a compressed message without grpc-encoding is a protocol error (INTERNAL); one compressed
            // with an algorithm we do not implement (we implement none) is UNIMPLEMENTED.
            if (string.IsNullOrEmpty(encoding) || string.Equals(encoding, GrpcProtocol.IdentityEncoding, StringComparison.OrdinalIgnoreCase))
            {
                throw new GrpcException(GrpcStatusCode.Internal, "Compressed flag set on a message but grpc-encoding names no compression");
            }

            throw new GrpcException(GrpcStatusCode.Unimplemented, $"Message compressed with grpc-encoding '{encoding}', which is not supported (supported: identity)");
        }

        if (length > (uint)maxMessageSize)
        {
            throw new GrpcException(GrpcStatusCode.ResourceExhausted, GrpcProtocol.MessageTooLarge(direction, length, maxMessageSize));
        }

        var total = GrpcProtocol.HeaderSize + (long)length;
        if (buffer.Length < total)
        {
            return false;
        }

        message = buffer.Slice(GrpcProtocol.HeaderSize, length);
        buffer = buffer.Slice(total);
        return true;
    }

    /// <summary>
    /// Reads and parses the next message, or returns null at a clean end of stream. A stream that ends inside
    /// a message is INTERNAL; an unparsable payload is INTERNAL.
    /// </summary>
    public static async ValueTask<T?> ReadMessageAsync<T>(
        PipeReader reader, MessageParser<T> parser, int maxMessageSize, string? encoding, string direction,
        CancellationToken cancellationToken)
        where T : class, IMessage<T>
    {
        while (true)
        {
            var result = await reader.ReadAsync(cancellationToken).ConfigureAwait(false);
            var buffer = result.Buffer;
            var consumed = buffer.Start;
            var examined = buffer.End;
            try
            {
                if (TryReadMessage(ref buffer, maxMessageSize, encoding, direction, out var payload))
                {
                    consumed = buffer.Start;
                    examined = consumed;
                    return Parse(parser, payload, direction);
                }

                if (result.IsCompleted)
                {
                    if (buffer.Length != 0)
                    {
                        throw new GrpcException(GrpcStatusCode.Internal, $"{direction} stream ended inside a message ({buffer.Length} bytes of an incomplete message)");
                    }

                    return null;
                }

                if (result.IsCanceled)
                {
                    throw new OperationCanceledException("Read was canceled", cancellationToken);
                }
            }
            finally
            {
                // Examined-but-not-consumed tells the pipe (and Kestrel's HTTP/2 flow control) to fetch more.
                reader.AdvanceTo(consumed, examined);
            }
        }
    }

    private static T Parse<T>(MessageParser<T> parser, ReadOnlySequence<byte> payload, string direction)
        where T : IMessage<T>
    {
        try
        {
            return parser.ParseFrom(payload);
        }
        catch (InvalidProtocolBufferException ex)
        {
            throw new GrpcException(GrpcStatusCode.Internal, $"Failed to deserialize {direction.ToLowerInvariant()} message: {ex.Message}", ex);
        }
    }

    /// <summary>Writes one uncompressed framed message into a pipe/buffer writer (no intermediate copy).</summary>
    public static void WriteMessage(IBufferWriter<byte> writer, IMessage message)
    {
        var size = message.CalculateSize();
        var header = writer.GetSpan(GrpcProtocol.HeaderSize);
        header[0] = 0;
        BinaryPrimitives.WriteUInt32BigEndian(header[1..], (uint)size);
        writer.Advance(GrpcProtocol.HeaderSize);
        if (size > 0)
        {
            message.WriteTo(writer);
        }
    }

    /// <summary>
    /// Serializes one framed message into a pooled array (for stream-based writers such as HttpClient's
    /// request stream). The caller returns the array to <see cref="ArrayPool{T}.Shared"/>.
    /// </summary>
    public static byte[] RentFramed(IMessage message, out int length)
    {
        var size = message.CalculateSize();
        length = GrpcProtocol.HeaderSize + size;
        var array = ArrayPool<byte>.Shared.Rent(length);
        array[0] = 0;
        BinaryPrimitives.WriteUInt32BigEndian(array.AsSpan(1), (uint)size);
        message.WriteTo(array.AsSpan(GrpcProtocol.HeaderSize, size));
        return array;
    }
}

using System.Globalization;
using System.Text;
using Google.Protobuf;

namespace Ambient.Core.Tests.Protos;

/// <summary>
/// Hand-written protobuf bytes: tags and lengths as hex (each written down from an upstream field number:
/// tag = field &lt;&lt; 3 | wire type, wire types 0 = varint, 2 = length-delimited), payload text as ASCII.
/// Nothing here consults our .proto files, so a renumbered field on our side cannot also move the expectation.
/// </summary>
internal sealed class GoldenWire
{
    private readonly List<byte> _bytes = [];

    /// <summary>Bytes written as hex pairs, spaces ignored: <c>"0a 07"</c>.</summary>
    public GoldenWire Hex(string hex)
    {
        var digits = hex.Replace(" ", "", StringComparison.Ordinal);
        if (digits.Length % 2 != 0)
        {
            throw new ArgumentException($"odd number of hex digits in '{hex}'", nameof(hex));
        }
        for (var i = 0; i < digits.Length; i += 2)
        {
            _bytes.Add(byte.Parse(digits.AsSpan(i, 2), NumberStyles.HexNumber, CultureInfo.InvariantCulture));
        }
        return this;
    }

    /// <summary>The UTF-8 (here ASCII) bytes of a string field's content; its tag and length come before, in hex.</summary>
    public GoldenWire Ascii(string text)
    {
        _bytes.AddRange(Encoding.ASCII.GetBytes(text));
        return this;
    }

    /// <summary>A whole nested golden message as the payload of a length-delimited field written before it.</summary>
    public GoldenWire Bytes(byte[] bytes)
    {
        _bytes.AddRange(bytes);
        return this;
    }

    public byte[] ToArray() => [.. _bytes];

    /// <summary>
    /// Both directions: the golden bytes parse into exactly <paramref name="expected"/> (no field lands in unknown
    /// fields or elsewhere), and <paramref name="expected"/> serializes to exactly the golden bytes.
    /// </summary>
    public static void AssertBothWays<T>(byte[] golden, T expected, MessageParser<T> parser)
        where T : IMessage<T>
    {
        var decoded = parser.ParseFrom(golden);
        Assert.Equal(expected, decoded);
        // Equal messages with an unknown field would still differ on re-encoding; this also catches that.
        Assert.Equal(Convert.ToHexString(golden), Convert.ToHexString(decoded.ToByteArray()));
        Assert.Equal(Convert.ToHexString(golden), Convert.ToHexString(expected.ToByteArray()));
    }
}

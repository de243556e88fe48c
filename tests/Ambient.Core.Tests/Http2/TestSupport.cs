using System.Buffers;
using System.Text;
using Ambient.Hbone.Http2;

namespace Ambient.Core.Tests.Http2;

internal static class Hex
{
    public static byte[] Parse(string hex) => Convert.FromHexString(hex.Replace(" ", "").Replace("\n", ""));

    public static string Of(ReadOnlySpan<byte> bytes) => Convert.ToHexStringLower(bytes);
}

/// <summary>Collects decoded headers as strings (tests only; production handlers avoid the allocation).</summary>
internal sealed class HeaderCollector : IHPackHeaderHandler
{
    public List<(int StaticIndex, string Name, string Value)> Headers { get; } = [];

    public void OnHeader(int staticIndex, ReadOnlySpan<byte> name, ReadOnlySpan<byte> value) =>
        Headers.Add((staticIndex, Encoding.Latin1.GetString(name), Encoding.Latin1.GetString(value)));

    public List<(string, string)> Pairs()
    {
        var list = new List<(string, string)>();
        foreach (var h in Headers)
        {
            list.Add((h.Name, h.Value));
        }
        return list;
    }
}

/// <summary>Builds a ReadOnlySequence from several segments, to exercise frames split across pipe buffers.</summary>
internal static class Segments
{
    public static ReadOnlySequence<byte> Create(params byte[][] parts)
    {
        if (parts.Length == 1)
        {
            return new ReadOnlySequence<byte>(parts[0]);
        }
        var first = new Segment(parts[0], 0);
        Segment last = first;
        for (int i = 1; i < parts.Length; i++)
        {
            last = last.Append(parts[i]);
        }
        return new ReadOnlySequence<byte>(first, 0, last, last.Memory.Length);
    }

    /// <summary>Splits <paramref name="data"/> at every given offset.</summary>
    public static ReadOnlySequence<byte> Split(byte[] data, params int[] cuts)
    {
        var parts = new List<byte[]>();
        int start = 0;
        foreach (int cut in cuts)
        {
            parts.Add(data[start..cut]);
            start = cut;
        }
        parts.Add(data[start..]);
        return Create([.. parts]);
    }

    private sealed class Segment : ReadOnlySequenceSegment<byte>
    {
        public Segment(byte[] data, long runningIndex)
        {
            Memory = data;
            RunningIndex = runningIndex;
        }

        public Segment Append(byte[] data)
        {
            var next = new Segment(data, RunningIndex + Memory.Length);
            Next = next;
            return next;
        }
    }
}

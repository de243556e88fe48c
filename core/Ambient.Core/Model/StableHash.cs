using System.Buffers;
using System.Text;

namespace Ambient.Core.Model;

/// <summary>
/// FNV-1a 64-bit. Used where a value must be identical across processes, restarts and machines (loopback
/// address slots, xDS resource versions); string.GetHashCode is randomized per process and cannot be used.
/// Strings are hashed as their UTF-8 bytes so any other implementation (a script, another language) can
/// reproduce the result.
/// </summary>
internal static class StableHash
{
    private const ulong OffsetBasis = 14695981039346656037UL;
    private const ulong Prime = 1099511628211UL;

    public static ulong Fnv1a64(ReadOnlySpan<byte> data)
    {
        var hash = OffsetBasis;
        foreach (var b in data)
        {
            hash ^= b;
            hash *= Prime;
        }
        return hash;
    }

    public static ulong Fnv1a64(string value)
    {
        var max = Encoding.UTF8.GetMaxByteCount(value.Length);
        byte[]? rented = null;
        Span<byte> buffer = max <= 512 ? stackalloc byte[512] : (rented = ArrayPool<byte>.Shared.Rent(max));
        try
        {
            var n = Encoding.UTF8.GetBytes(value, buffer);
            return Fnv1a64(buffer[..n]);
        }
        finally
        {
            if (rented is not null)
            {
                ArrayPool<byte>.Shared.Return(rented);
            }
        }
    }

    /// <summary>Equals <c>Fnv1a64(first + separator + second)</c> without building that string.</summary>
    public static ulong Fnv1a64Joined(string first, char separator, string second)
    {
        if (!Ascii.IsValid(first) || !Ascii.IsValid(second) || separator > 0x7f)
        {
            return Fnv1a64(first + separator + second);
        }
        // ASCII: one UTF-8 byte per char.
        var hash = Append(OffsetBasis, first);
        hash ^= separator;
        hash *= Prime;
        return Append(hash, second);

        static ulong Append(ulong hash, string s)
        {
            foreach (var c in s)
            {
                hash ^= c;
                hash *= Prime;
            }
            return hash;
        }
    }

    /// <summary>Lower-case 16-digit hex, the form used for xDS resource versions.</summary>
    public static string ToHex(ulong hash) => hash.ToString("x16", System.Globalization.CultureInfo.InvariantCulture);
}

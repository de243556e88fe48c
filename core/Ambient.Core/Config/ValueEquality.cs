using System.Collections.Immutable;

namespace Ambient.Core.Config;

/// <summary>
/// Element-wise comparison for the collections inside resource records. ImmutableArray and
/// ImmutableSortedDictionary compare by reference, which would make two parses of the same text unequal
/// and defeat "unchanged config = no new generation".
/// </summary>
internal static class ValueEquality
{
    public static bool Equal<T>(ImmutableArray<T> a, ImmutableArray<T> b)
    {
        var x = a.IsDefault ? [] : a;
        var y = b.IsDefault ? [] : b;
        if (x.Length != y.Length) return false;
        var cmp = EqualityComparer<T>.Default;
        for (int i = 0; i < x.Length; i++)
        {
            if (!cmp.Equals(x[i], y[i])) return false;
        }
        return true;
    }

    public static bool Equal(ImmutableSortedDictionary<string, string>? a, ImmutableSortedDictionary<string, string>? b)
    {
        if (ReferenceEquals(a, b)) return true;
        if (a is null || b is null || a.Count != b.Count) return false;
        foreach (var (k, v) in a)
        {
            if (!b.TryGetValue(k, out var other) || !string.Equals(v, other, StringComparison.Ordinal)) return false;
        }
        return true;
    }

    public static int Hash<T>(ImmutableArray<T> a)
    {
        if (a.IsDefault) return 0;
        var h = new HashCode();
        foreach (var item in a) h.Add(item);
        return h.ToHashCode();
    }

    public static int Hash(ImmutableSortedDictionary<string, string>? d)
    {
        if (d is null) return 0;
        var h = new HashCode();
        foreach (var (k, v) in d)
        {
            h.Add(k, StringComparer.Ordinal);
            h.Add(v, StringComparer.Ordinal);
        }
        return h.ToHashCode();
    }
}

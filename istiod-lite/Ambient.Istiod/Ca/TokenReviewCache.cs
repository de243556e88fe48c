using System.Buffers;
using System.Buffers.Text;
using System.Collections.Concurrent;
using System.Security.Cryptography;
using System.Text;
using System.Text.Json;

namespace Ambient.Istiod.Ca;

/// <summary>
/// Successful TokenReviews, kept briefly so a ztunnel asking for many pods' certificates at once costs the API
/// server one review, as Istio caches them. An entry lives <see cref="Lifetime"/> at most and never past the token's
/// own <c>exp</c> claim; a token whose expiry cannot be read is not cached at all. Keyed by the token's SHA-256,
/// so no token sits in memory longer than its request. Only successes are kept: a refused token is asked again.
/// </summary>
internal sealed class TokenReviewCache(TimeProvider time, TimeSpan lifetime, int capacity = TokenReviewCache.DefaultCapacity)
{
    public const int DefaultCapacity = 10_000;
    public static readonly TimeSpan DefaultLifetime = TimeSpan.FromMinutes(1);

    private readonly ConcurrentDictionary<string, Entry> _entries = new(StringComparer.Ordinal);

    private sealed record Entry(ServiceAccountCaller Caller, DateTimeOffset ExpiresAt);

    public TimeSpan Lifetime { get; } = lifetime;

    public int Count => _entries.Count;

    public bool TryGet(string token, out ServiceAccountCaller caller)
    {
        var key = Key(token);
        if (_entries.TryGetValue(key, out var entry))
        {
            if (entry.ExpiresAt > time.GetUtcNow())
            {
                caller = entry.Caller;
                return true;
            }
            _entries.TryRemove(KeyValuePair.Create(key, entry));
        }
        caller = null!;
        return false;
    }

    /// <summary>Remembers <paramref name="caller"/> for <paramref name="token"/> until the sooner of now + lifetime and the token's expiry.</summary>
    public void Add(string token, ServiceAccountCaller caller)
    {
        if (Lifetime <= TimeSpan.Zero || TryReadExpiry(token) is not { } tokenExpiry)
        {
            return;
        }
        var now = time.GetUtcNow();
        var expiresAt = now + Lifetime < tokenExpiry ? now + Lifetime : tokenExpiry;
        if (expiresAt <= now)
        {
            return;
        }
        if (_entries.Count >= capacity)
        {
            Evict(now);
        }
        _entries[Key(token)] = new Entry(caller, expiresAt);
    }

    // Expired entries first; if the cache is still full (a burst of distinct live tokens), start over: a miss only
    // costs a review.
    private void Evict(DateTimeOffset now)
    {
        foreach (var (key, entry) in _entries)
        {
            if (entry.ExpiresAt <= now)
            {
                _entries.TryRemove(key, out _);
            }
        }
        if (_entries.Count >= capacity)
        {
            _entries.Clear();
        }
    }

    private static string Key(string token)
    {
        Span<byte> hash = stackalloc byte[SHA256.HashSizeInBytes];
        var bytes = Encoding.UTF8.GetBytes(token);
        SHA256.HashData(bytes, hash);
        return Convert.ToHexString(hash);
    }

    /// <summary>
    /// The <c>exp</c> claim of a JWT, unverified: only used to cut the cache short, never to accept a token (the
    /// TokenReview has already done that). Null when the token is not a JWT or has no numeric <c>exp</c>.
    /// </summary>
    internal static DateTimeOffset? TryReadExpiry(string token)
    {
        var first = token.IndexOf('.', StringComparison.Ordinal);
        var second = first < 0 ? -1 : token.IndexOf('.', first + 1);
        if (second < 0)
        {
            return null;
        }
        var payload = token.AsSpan(first + 1, second - first - 1);
        var rented = ArrayPool<byte>.Shared.Rent(Base64Url.GetMaxDecodedLength(payload.Length));
        try
        {
            if (Base64Url.DecodeFromChars(payload, rented, out var consumed, out var written) != OperationStatus.Done || consumed != payload.Length)
            {
                return null;
            }
            var reader = new Utf8JsonReader(rented.AsSpan(0, written));
            if (!reader.Read() || reader.TokenType != JsonTokenType.StartObject)
            {
                return null;
            }
            while (reader.Read() && reader.TokenType == JsonTokenType.PropertyName)
            {
                var isExp = reader.ValueTextEquals("exp"u8);
                reader.Read();
                if (isExp)
                {
                    return reader.TokenType == JsonTokenType.Number && reader.TryGetInt64(out var seconds)
                        && seconds is > 0 and < 253402300799 // year 9999
                        ? DateTimeOffset.FromUnixTimeSeconds(seconds)
                        : null;
                }
                reader.Skip();
            }
            return null;
        }
        catch (JsonException)
        {
            return null;
        }
        finally
        {
            ArrayPool<byte>.Shared.Return(rented);
        }
    }
}

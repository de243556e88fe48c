namespace Ambient.Core.Identity;

/// <summary>
/// A proxy's current trust bundle: one immutable <see cref="TrustBundle"/> replaced whole (during a root rotation:
/// old root, then old + new, then new). Every TLS validation reads <see cref="Current"/> at handshake time, so a
/// replacement applies to the next handshake while established connections keep running.
/// </summary>
internal sealed class TrustBundleSource
{
    private TrustBundle _current;

    public TrustBundleSource(TrustBundle initial)
    {
        ArgumentNullException.ThrowIfNull(initial);
        _current = initial;
    }

    public TrustBundle Current => Volatile.Read(ref _current);

    /// <summary>Raised after <see cref="Current"/> changed, with the new bundle.</summary>
    public event Action<TrustBundle>? Changed;

    /// <summary>Makes <paramref name="next"/> current; false (and no event) when it holds the same roots already.</summary>
    public bool Replace(TrustBundle next)
    {
        ArgumentNullException.ThrowIfNull(next);
        if (!string.Equals(next.TrustDomain, Current.TrustDomain, StringComparison.Ordinal))
        {
            throw new ArgumentException($"the bundle is for trust domain '{next.TrustDomain}', not '{Current.TrustDomain}'", nameof(next));
        }
        var previous = Interlocked.Exchange(ref _current, next);
        if (previous.SameRootsAs(next))
        {
            return false;
        }
        Changed?.Invoke(next);
        return true;
    }
}

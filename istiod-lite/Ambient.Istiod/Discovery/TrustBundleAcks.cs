namespace Ambient.Istiod.Discovery;

/// <summary>
/// The xDS sessions subscribed to the trust bundle and the newest discovery generation each has ACKed for it. A
/// root rotation waits until every one holds the bundle it published (a proxy that never subscribes, such as a real
/// Istio ztunnel, is not waited for). Thread-safe: sessions report from their own tasks.
/// </summary>
internal sealed class TrustBundleAcks
{
    private readonly Lock _lock = new();
    private readonly Dictionary<object, (string Node, long Acked)> _sessions = new(ReferenceEqualityComparer.Instance);

    public void Subscribed(object session, string node)
    {
        lock (_lock)
        {
            _sessions.TryAdd(session, (node, 0));
        }
    }

    public void Acked(object session, long generation)
    {
        lock (_lock)
        {
            if (_sessions.TryGetValue(session, out var entry) && generation > entry.Acked)
            {
                _sessions[session] = (entry.Node, generation);
            }
        }
    }

    public void Closed(object session)
    {
        lock (_lock)
        {
            _sessions.Remove(session);
        }
    }

    /// <summary>The nodes with a subscribed session whose ACKs are all at <paramref name="generation"/> or later; the others in <paramref name="pending"/>.</summary>
    public IReadOnlySet<string> Acknowledged(long generation, out IReadOnlyList<string> pending)
    {
        var done = new HashSet<string>(StringComparer.Ordinal);
        var behind = new SortedSet<string>(StringComparer.Ordinal);
        lock (_lock)
        {
            foreach (var (node, acked) in _sessions.Values)
            {
                if (acked >= generation)
                {
                    done.Add(node);
                }
                else
                {
                    behind.Add(node);
                }
            }
        }
        // A node with one session behind (e.g. a reconnect racing the old stream's end) is not done yet.
        done.ExceptWith(behind);
        pending = [.. behind];
        return done;
    }

    /// <summary>Every node with a session subscribed to the trust bundle.</summary>
    public IReadOnlySet<string> Nodes()
    {
        var nodes = new HashSet<string>(StringComparer.Ordinal);
        lock (_lock)
        {
            foreach (var (node, _) in _sessions.Values)
            {
                nodes.Add(node);
            }
        }
        return nodes;
    }
}

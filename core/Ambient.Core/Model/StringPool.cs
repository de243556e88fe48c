namespace Ambient.Core.Model;

/// <summary>
/// Deduplicates strings while one snapshot is built. Protobuf parsing and string concatenation create a fresh
/// copy of "default", the node name, the cluster id ... for every workload; at 10,000 workloads those copies
/// would cost more than the workloads themselves. Not thread-safe: one pool per build.
/// </summary>
internal sealed class StringPool
{
    private readonly Dictionary<string, string> _strings;

    public StringPool(int capacity = 64) => _strings = new Dictionary<string, string>(capacity, StringComparer.Ordinal);

    private Dictionary<(string TrustDomain, string Namespace, string ServiceAccount), string>? _identities;

    /// <summary>The SPIFFE URI for the triple, one instance per distinct identity.</summary>
    public string Identity(string trustDomain, string @namespace, string serviceAccount)
    {
        _identities ??= [];
        var key = (trustDomain, @namespace, serviceAccount);
        if (!_identities.TryGetValue(key, out var identity))
        {
            _identities.Add(key, identity = WorkloadInfo.SpiffeUri(trustDomain, @namespace, serviceAccount));
        }
        return identity;
    }

    public string Get(string value)
    {
        if (value.Length == 0)
        {
            return string.Empty;
        }
        if (_strings.TryGetValue(value, out var existing))
        {
            return existing;
        }
        _strings.Add(value, value);
        return value;
    }
}

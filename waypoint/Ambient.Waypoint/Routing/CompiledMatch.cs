using System.Text.RegularExpressions;
using Ambient.Core.Protos.Waypoint;

namespace Ambient.Waypoint.Routing;

/// <summary>
/// One HTTPRouteMatch, compiled once per xDS update: every condition must hold (AND); a rule's matches are ORed by
/// the table, each being its own entry in the precedence order.
/// </summary>
internal sealed class CompiledMatch
{
    // Regexes come from route authors; a pathological one must not stall a request thread.
    internal static readonly TimeSpan RegexTimeout = TimeSpan.FromMilliseconds(50);

    private readonly Regex? _pathRegex;
    private readonly bool _neverMatches;
    private readonly ValueCondition[] _headers;
    private readonly ValueCondition[] _queryParams;

    public CompiledMatch(HTTPRouteMatch match)
    {
        var path = match.Path;
        PathType = path?.Type ?? PathMatchType.PathPrefix;
        var value = path is null || path.Value.Length == 0 ? "/" : path.Value;
        switch (PathType)
        {
            case PathMatchType.Exact:
                PathValue = value;
                break;
            case PathMatchType.RegularExpression:
                PathValue = value;
                _pathRegex = TryCompileFullMatch(value);
                _neverMatches |= _pathRegex is null;
                break;
            default:
                // "When specified, a trailing `/` is ignored": "/abc/" matches "/abc" as "/abc" does.
                PathValue = value.Length > 1 ? value.TrimEnd('/') : value;
                if (PathValue.Length == 0)
                {
                    PathValue = "/";
                }
                break;
        }
        // The precedence counts the prefix as written ("Prefix path match with largest number of characters").
        PathLength = value.Length;

        // Header names compare case-insensitively, query parameter names exactly.
        _headers = Compile(match.Headers, h => new ValueCondition(h.Name, h.Type, h.Value),
            StringComparison.OrdinalIgnoreCase, ref _neverMatches);
        _queryParams = Compile(match.QueryParams, q => new ValueCondition(q.Name, q.Type, q.Value),
            StringComparison.Ordinal, ref _neverMatches);
        Method = match.Method.Length == 0 ? null : match.Method;
    }

    public PathMatchType PathType { get; }

    /// <summary>Exact and regex: as written. Prefix: without its trailing '/' (except "/" itself).</summary>
    public string PathValue { get; }

    public int PathLength { get; }

    public string? Method { get; }

    public int HeaderCount => _headers.Length;

    public int QueryParamCount => _queryParams.Length;

    public bool Matches(in RequestFacts request)
    {
        if (_neverMatches)
        {
            return false;
        }
        if (Method is not null && !string.Equals(Method, request.Method, StringComparison.Ordinal))
        {
            return false;
        }
        if (!PathMatches(request.Path))
        {
            return false;
        }
        foreach (var header in _headers)
        {
            if (!HeaderMatches(header, request))
            {
                return false;
            }
        }
        if (_queryParams.Length > 0)
        {
            var query = request.QuerySpan;
            foreach (var param in _queryParams)
            {
                if (!QueryParamMatches(param, query))
                {
                    return false;
                }
            }
        }
        return true;
    }

    private bool PathMatches(string path) => PathType switch
    {
        PathMatchType.Exact => string.Equals(path, PathValue, StringComparison.Ordinal),
        PathMatchType.RegularExpression => SafeIsMatch(_pathRegex!, path),
        _ => PrefixMatches(path, PathValue),
    };

    /// <summary>Segment-wise prefix: "/foo" matches "/foo", "/foo/" and "/foo/bar", never "/foobar".</summary>
    internal static bool PrefixMatches(string path, string prefix)
    {
        if (prefix.Length == 1 && prefix[0] == '/')
        {
            return true;
        }
        if (!path.StartsWith(prefix, StringComparison.Ordinal))
        {
            return false;
        }
        return path.Length == prefix.Length || path[prefix.Length] == '/';
    }

    /// <summary>Full-match semantics, as Envoy's RE2 matchers (and so Istio) apply them; null when the pattern does
    /// not compile (istiod-lite validates, so this is a last line: the match then never matches).</summary>
    internal static Regex? TryCompileFullMatch(string pattern)
    {
        try
        {
            return new Regex("^(?:" + pattern + @")\z",
                RegexOptions.CultureInvariant | RegexOptions.Compiled, RegexTimeout);
        }
        catch (ArgumentException)
        {
            return null;
        }
    }

    internal static bool SafeIsMatch(Regex regex, ReadOnlySpan<char> input)
    {
        try
        {
            return regex.IsMatch(input);
        }
        catch (RegexMatchTimeoutException)
        {
            return false;
        }
    }

    private static ValueCondition[] Compile<T>(IReadOnlyList<T> items, Func<T, ValueCondition> compile,
        StringComparison nameComparison, ref bool neverMatches)
    {
        var conditions = new List<ValueCondition>(items.Count);
        foreach (var item in items)
        {
            AddFirstOfName(conditions, compile(item), nameComparison, ref neverMatches);
        }
        return conditions.ToArray();
    }

    /// <summary>"If multiple entries specify equivalent header names, only the first entry with an equivalent name
    /// MUST be considered for a match" (and the same for query params).</summary>
    private static void AddFirstOfName(List<ValueCondition> conditions, ValueCondition condition,
        StringComparison nameComparison, ref bool neverMatches)
    {
        foreach (var existing in conditions)
        {
            if (string.Equals(existing.Name, condition.Name, nameComparison))
            {
                return;
            }
        }
        neverMatches |= condition.Invalid;
        conditions.Add(condition);
    }

    private static bool HeaderMatches(ValueCondition condition, in RequestFacts request)
    {
        if (!request.Headers.TryGetValue(condition.Name, out var values) || values.Count == 0)
        {
            return false;
        }
        // A header repeated in the request is one value joined with commas (RFC 9110 5.3, the spec's guidance);
        // the common single-value case allocates nothing.
        var value = values.Count == 1 ? values[0] ?? "" : string.Join(',', values.ToArray());
        return condition.Matches(value);
    }

    private static bool QueryParamMatches(ValueCondition condition, ReadOnlySpan<char> query)
    {
        if (!QueryString.TryGetFirst(query, condition.Name, out var raw))
        {
            return false;
        }
        // Percent-decode only when there is something to decode, so plain values allocate nothing.
        return condition.Matches(raw.Contains('%') ? Uri.UnescapeDataString(raw.ToString()) : raw);
    }

    /// <summary>A name and an Exact or RegularExpression value condition (headers and query params alike).</summary>
    private sealed class ValueCondition
    {
        private readonly string _value;
        private readonly Regex? _regex;

        public ValueCondition(string name, HeaderMatchType type, string value)
        {
            Name = name;
            _value = value;
            if (type == HeaderMatchType.HeaderRegularExpression)
            {
                _regex = TryCompileFullMatch(value);
                Invalid = _regex is null;
            }
        }

        public string Name { get; }

        public bool Invalid { get; }

        public bool Matches(ReadOnlySpan<char> value) =>
            _regex is null ? value.SequenceEqual(_value) : SafeIsMatch(_regex, value);
    }
}

/// <summary>Reads a raw query string without splitting it into objects.</summary>
internal static class QueryString
{
    /// <summary>The first value of <paramref name="name"/>: "If a query param is repeated in an HTTP request, ...
    /// it is RECOMMENDED that implementations should match against the first value of the param".</summary>
    public static bool TryGetFirst(ReadOnlySpan<char> query, string name, out ReadOnlySpan<char> value)
    {
        while (!query.IsEmpty)
        {
            var amp = query.IndexOf('&');
            var pair = amp < 0 ? query : query[..amp];
            query = amp < 0 ? default : query[(amp + 1)..];
            if (pair.IsEmpty)
            {
                continue;
            }
            var eq = pair.IndexOf('=');
            var key = eq < 0 ? pair : pair[..eq];
            if (KeyEquals(key, name))
            {
                value = eq < 0 ? default : pair[(eq + 1)..];
                return true;
            }
        }
        value = default;
        return false;
    }

    private static bool KeyEquals(ReadOnlySpan<char> rawKey, string name)
    {
        if (!rawKey.Contains('%'))
        {
            return rawKey.SequenceEqual(name);
        }
        return string.Equals(Uri.UnescapeDataString(rawKey.ToString()), name, StringComparison.Ordinal);
    }
}

using System.Globalization;
using System.Net;
using System.Text.RegularExpressions;

namespace Ambient.Config.Yaml;

// The value rules of the Gateway API CRDs (gateway.networking.k8s.io, apis/v1/shared_types.go and
// httproute_types.go): their OpenAPI patterns and the messages of their CEL rules, so a route the API server would
// refuse is refused here with the same words.
internal static partial class Validation
{
    [GeneratedRegex("^(\\*\\.)?[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$", RegexOptions.CultureInvariant)]
    private static partial Regex HostnameRegex();

    [GeneratedRegex("^[A-Za-z0-9!#$%&'*+\\-.^_`|~]+$", RegexOptions.CultureInvariant)]
    private static partial Regex HeaderNameRegex();

    [GeneratedRegex("^[a-zA-Z]([-a-zA-Z0-9]*[a-zA-Z0-9])?$", RegexOptions.CultureInvariant)]
    private static partial Regex KindRegex();

    [GeneratedRegex("^[a-zA-Z0-9]([-a-zA-Z0-9]*[a-zA-Z0-9])?$|[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*\\/[A-Za-z0-9]+$", RegexOptions.CultureInvariant)]
    private static partial Regex ProtocolTypeRegex();

    [GeneratedRegex("^(?:[-A-Za-z0-9/._~!$&'()*+,;=:@]|[%][0-9a-fA-F]{2})+$", RegexOptions.CultureInvariant)]
    private static partial Regex PathCharactersRegex();

    // GEP-2257: one to four number+unit pairs, each number at most 5 digits.
    [GeneratedRegex("^([0-9]{1,5}(h|m|s|ms)){1,4}$", RegexOptions.CultureInvariant)]
    private static partial Regex DurationRegex();

    /// <summary>A route hostname: an RFC 1123 name, optionally prefixed by the wildcard label "*.", never an IP.</summary>
    public static string? GatewayHostname(string v)
    {
        if (v.Length > 253) return "must be no more than 253 characters";
        if (IPAddress.TryParse(v, out _)) return "IPs are not allowed; use a hostname";
        return HostnameRegex().IsMatch(v)
            ? null
            : "must be an RFC 1123 hostname, optionally prefixed by the wildcard label '*.' (e.g. 'foo.example.com' or '*.example.com')";
    }

    /// <summary>A hostname without wildcard (redirect and rewrite targets).</summary>
    public static string? PreciseHostname(string v) =>
        v.StartsWith('*') ? "a wildcard is not allowed here" : GatewayHostname(v);

    public static string? HeaderName(string v)
    {
        if (v.Length > 256) return "must be no more than 256 characters";
        return HeaderNameRegex().IsMatch(v)
            ? null
            : "must be an HTTP header name (RFC 7230 token characters only; HTTP/2 pseudo-headers such as ':method' are not allowed)";
    }

    /// <summary>A listener, rule or port name (SectionName): an RFC 1123 subdomain of at most 253 characters.</summary>
    public static string? SectionName(string v) => Dns1123Subdomain(v);

    public static string? ObjectName(string v) =>
        v.Length > 253 ? "must be no more than 253 characters" : null;

    public static string? GatewayKind(string v)
    {
        if (v.Length > 63) return "must be no more than 63 characters";
        return KindRegex().IsMatch(v) ? null : "must be a kind name: letters, digits and '-', starting with a letter (e.g. 'Service')";
    }

    /// <summary>An API group: empty (the core group) or an RFC 1123 subdomain.</summary>
    public static string? GatewayGroup(string v) => v.Length == 0 ? null : Dns1123Subdomain(v);

    public static string? ProtocolType(string v)
    {
        if (v.Length > 255) return "must be no more than 255 characters";
        return ProtocolTypeRegex().IsMatch(v) ? null : "must be a protocol name such as 'HTTP', 'HBONE' or a domain-prefixed name ('example.com/proto')";
    }

    /// <summary>
    /// The CEL rules of HTTPPathMatch (and of path modifiers' values) for types Exact and PathPrefix, in the CRD's order
    /// and with its messages. There is no rule against a trailing '/' on a PathPrefix: the match ignores it.
    /// </summary>
    public static string? AbsolutePath(string v, string types = "['Exact', 'PathPrefix']")
    {
        if (!v.StartsWith('/')) return $"value must be an absolute path and start with '/' when type one of {types}";
        foreach (var bad in (ReadOnlySpan<string>)["//", "/./", "/../", "%2f", "%2F", "#"])
        {
            if (v.Contains(bad, StringComparison.Ordinal)) return $"must not contain '{bad}' when type one of {types}";
        }
        if (v.EndsWith("/..", StringComparison.Ordinal)) return $"must not end with '/..' when type one of {types}";
        if (v.EndsWith("/.", StringComparison.Ordinal)) return $"must not end with '/.' when type one of {types}";
        return PathCharactersRegex().IsMatch(v)
            ? null
            : $"must only contain valid characters (matching ^(?:[-A-Za-z0-9/._~!$&'()*+,;=:@]|[%][0-9a-fA-F]{{2}})+$) for types {types}";
    }

    /// <summary>
    /// A regular expression of a RegularExpression match. Compiled with the non-backtracking engine: it accepts the
    /// RE2-like subset (no backreferences, no lookaround), runs in linear time, and is what the waypoint may use.
    /// </summary>
    public static string? RegularExpression(string v)
    {
        try
        {
            _ = new Regex(v, RegexOptions.CultureInvariant | RegexOptions.NonBacktracking);
            return null;
        }
        catch (Exception ex) when (ex is ArgumentException or NotSupportedException)
        {
            return "not a valid regular expression (RE2 syntax: no backreferences or lookaround): " + ex.Message;
        }
    }

    /// <summary>A Gateway API duration (GEP-2257, e.g. "10s", "500ms", "1h2m"); null and the problem when it is not one.</summary>
    public static ulong? Duration(string v, out string? problem)
    {
        problem = null;
        if (!DurationRegex().IsMatch(v))
        {
            problem = "must be a Gateway API duration: one to four number-unit pairs with units h, m, s or ms (e.g. '10s', '500ms', '1h2m')";
            return null;
        }
        ulong total = 0;
        var i = 0;
        while (i < v.Length)
        {
            var start = i;
            while (char.IsAsciiDigit(v[i])) i++;
            var n = ulong.Parse(v.AsSpan(start, i - start), NumberStyles.None, CultureInfo.InvariantCulture);
            ulong unitMs;
            if (v[i] == 'h') { unitMs = 3_600_000; i++; }
            else if (v[i] == 's') { unitMs = 1000; i++; }
            else if (i + 1 < v.Length && v[i + 1] == 's') { unitMs = 1; i += 2; }
            else { unitMs = 60_000; i++; }
            total += n * unitMs;
        }
        return total;
    }
}

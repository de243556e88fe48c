using Ambient.Hbone.Telemetry;
using System.Diagnostics.CodeAnalysis;
using Ambient.Core.Telemetry;

namespace Ambient.Core.Identity;

/// <summary>
/// An Istio workload identity: <c>spiffe://&lt;trust-domain&gt;/ns/&lt;namespace&gt;/sa/&lt;service-account&gt;</c>.
/// Only that exact shape is accepted, because Istio peers (ztunnel, the CA, authorization principals) compare the
/// string form byte for byte: a second spelling of the same identity would be a policy bypass.
/// </summary>
internal readonly record struct SpiffeId
{
    public const string DefaultTrustDomain = "cluster.local";
    public const string DefaultServiceAccount = "default";
    public const string Scheme = "spiffe://";

    // Cached once: the URI is compared on every connection (peer checks, pool keys, principals).
    private readonly string _uri;

    /// <summary>Builds an identity from its parts; throws <see cref="ArgumentException"/> if a part is not valid.</summary>
    public SpiffeId(string trustDomain, string @namespace, string serviceAccount)
    {
        ArgumentNullException.ThrowIfNull(trustDomain);
        ArgumentNullException.ThrowIfNull(@namespace);
        ArgumentNullException.ThrowIfNull(serviceAccount);
        if (ValidateTrustDomain(trustDomain) is { } tdError)
        {
            throw new ArgumentException(tdError, nameof(trustDomain));
        }
        if (ValidateSegment(@namespace, "namespace") is { } nsError)
        {
            throw new ArgumentException(nsError, nameof(@namespace));
        }
        if (ValidateSegment(serviceAccount, "service account") is { } saError)
        {
            throw new ArgumentException(saError, nameof(serviceAccount));
        }
        TrustDomain = trustDomain;
        Namespace = @namespace;
        ServiceAccount = serviceAccount;
        _uri = string.Concat(Scheme, trustDomain, "/ns/", @namespace, "/sa/", serviceAccount);
    }

    public string TrustDomain { get; }

    public string Namespace { get; }

    public string ServiceAccount { get; }

    /// <summary>True for <c>default(SpiffeId)</c>, which names no identity.</summary>
    public bool IsEmpty => _uri is null;

    /// <summary>The Istio authorization principal: the URI without <c>spiffe://</c>.</summary>
    public string Principal => IsEmpty ? string.Empty : _uri[Scheme.Length..];

    /// <summary>The SPIFFE URI, e.g. <c>spiffe://cluster.local/ns/demo/sa/default</c>.</summary>
    public override string ToString() => _uri ?? string.Empty;

    public bool Equals(SpiffeId other) => string.Equals(_uri, other._uri, StringComparison.Ordinal);

    public override int GetHashCode() => _uri is null ? 0 : StringComparer.Ordinal.GetHashCode(_uri);

    /// <summary>Parses <c>spiffe://td/ns/N/sa/S</c>; throws <see cref="FormatException"/> naming the problem.</summary>
    public static SpiffeId Parse(string? value)
    {
        if (!TryParse(value, out var id, out var error))
        {
            throw new FormatException(error);
        }
        return id;
    }

    public static bool TryParse([NotNullWhen(true)] string? value, out SpiffeId id) => TryParse(value, out id, out _);

    public static bool TryParse([NotNullWhen(true)] string? value, out SpiffeId id, out string error)
    {
        id = default;
        if (string.IsNullOrEmpty(value))
        {
            error = "SPIFFE ID is empty";
            return false;
        }
        if (!value.StartsWith(Scheme, StringComparison.Ordinal))
        {
            error = value.StartsWith(Scheme, StringComparison.OrdinalIgnoreCase)
                ? $"SPIFFE ID '{LogText.Clip(value)}': the scheme must be lowercase 'spiffe://'"
                : $"SPIFFE ID '{LogText.Clip(value)}' does not start with 'spiffe://'";
            return false;
        }
        if (value.AsSpan().IndexOfAny('?', '#') >= 0)
        {
            error = $"SPIFFE ID '{LogText.Clip(value)}' must not have a query or fragment";
            return false;
        }

        // After the scheme: td / "ns" / N / "sa" / S, exactly five segments.
        var rest = value.AsSpan(Scheme.Length);
        Span<Range> parts = stackalloc Range[7];
        var count = rest.Split(parts, '/');
        if (count != 5)
        {
            error = $"SPIFFE ID '{LogText.Clip(value)}' must have the form spiffe://<trust-domain>/ns/<namespace>/sa/<service-account>";
            return false;
        }
        var td = rest[parts[0]];
        var nsKey = rest[parts[1]];
        var ns = rest[parts[2]];
        var saKey = rest[parts[3]];
        var sa = rest[parts[4]];
        if (!nsKey.SequenceEqual("ns") || !saKey.SequenceEqual("sa"))
        {
            error = $"SPIFFE ID '{LogText.Clip(value)}' must have the form spiffe://<trust-domain>/ns/<namespace>/sa/<service-account>";
            return false;
        }
        var tdString = td.ToString();
        var nsString = ns.ToString();
        var saString = sa.ToString();
        var partError = ValidateTrustDomain(tdString) ?? ValidateSegment(nsString, "namespace") ?? ValidateSegment(saString, "service account");
        if (partError is not null)
        {
            error = $"SPIFFE ID '{LogText.Clip(value)}': {partError}";
            return false;
        }
        id = new SpiffeId(tdString, nsString, saString);
        error = string.Empty;
        return true;
    }

    /// <summary>
    /// Null when <paramref name="td"/> is a valid trust domain (SPIFFE ID spec section 2.1: lowercase letters,
    /// digits, '.', '-', '_'), else what is wrong with it; command-line flags check with it before anything starts.
    /// </summary>
    public static string? ValidateTrustDomain(string td)
    {
        if (td.Length == 0)
        {
            return "the trust domain is empty";
        }
        if (td.Length > 255)
        {
            return "the trust domain is longer than 255 characters";
        }
        foreach (var c in td)
        {
            if (!(c is (>= 'a' and <= 'z') or (>= '0' and <= '9') or '.' or '-' or '_'))
            {
                return $"the trust domain '{td}' may only contain lowercase letters, digits, '.', '-' and '_' (found '{c}')";
            }
        }
        return null;
    }

    // SPIFFE ID spec section 2.2: path segment = letters, digits, '.', '-', '_'; never "." or "..".
    private static string? ValidateSegment(string segment, string what)
    {
        if (segment.Length == 0)
        {
            return $"the {what} is empty";
        }
        if (segment is "." or "..")
        {
            return $"the {what} must not be '{segment}'";
        }
        foreach (var c in segment)
        {
            if (!(c is (>= 'a' and <= 'z') or (>= 'A' and <= 'Z') or (>= '0' and <= '9') or '.' or '-' or '_'))
            {
                return $"the {what} '{segment}' may only contain letters, digits, '.', '-' and '_' (found '{c}')";
            }
        }
        return null;
    }
}

using System.Net;
using System.Net.Sockets;
using System.Text.RegularExpressions;

namespace Ambient.Config.Yaml;

// The name and value rules Kubernetes' API server applies (k8s.io/apimachinery/pkg/util/validation),
// with the same wording, so a manifest that works here works with kubectl and vice versa.
// Each check returns null when the value is valid, else the message.
internal static partial class Validation
{
    [GeneratedRegex("^[a-z0-9]([-a-z0-9]*[a-z0-9])?$", RegexOptions.CultureInvariant)]
    private static partial Regex Dns1123LabelRegex();

    [GeneratedRegex("^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$", RegexOptions.CultureInvariant)]
    private static partial Regex Dns1123SubdomainRegex();

    [GeneratedRegex("^[a-z]([-a-z0-9]*[a-z0-9])?$", RegexOptions.CultureInvariant)]
    private static partial Regex Dns1035LabelRegex();

    [GeneratedRegex("^([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]$", RegexOptions.CultureInvariant)]
    private static partial Regex QualifiedNameRegex();

    [GeneratedRegex("^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$", RegexOptions.CultureInvariant)]
    private static partial Regex LabelValueRegex();

    [GeneratedRegex("^[-._a-zA-Z][-._a-zA-Z0-9]*$", RegexOptions.CultureInvariant)]
    private static partial Regex EnvVarNameRegex();

    [GeneratedRegex("^[0-9]{1,3}(\\.[0-9]{1,3}){3}$", RegexOptions.CultureInvariant)]
    private static partial Regex DottedQuadRegex();

    public static string? Dns1123Label(string v)
    {
        if (v.Length > 63) return "must be no more than 63 characters";
        return Dns1123LabelRegex().IsMatch(v)
            ? null
            : "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and end with an alphanumeric character (e.g. 'my-name', or '123-abc')";
    }

    public static string? Dns1123Subdomain(string v)
    {
        if (v.Length > 253) return "must be no more than 253 characters";
        return Dns1123SubdomainRegex().IsMatch(v)
            ? null
            : "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character (e.g. 'example.com')";
    }

    public static string? Dns1035Label(string v)
    {
        if (v.Length > 63) return "must be no more than 63 characters";
        return Dns1035LabelRegex().IsMatch(v)
            ? null
            : "a DNS-1035 label must consist of lower case alphanumeric characters or '-', start with an alphabetic character, and end with an alphanumeric character (e.g. 'my-name', or 'abc-123')";
    }

    /// <summary>A label or annotation key: an optional DNS subdomain prefix and '/', then a name of at most 63 characters.</summary>
    public static string? QualifiedName(string v)
    {
        var name = v;
        var slash = v.IndexOf('/', StringComparison.Ordinal);
        if (slash >= 0)
        {
            var prefix = v[..slash];
            name = v[(slash + 1)..];
            if (prefix.Length == 0) return "prefix part must be non-empty";
            if (Dns1123Subdomain(prefix) is { } perr) return "prefix part " + perr;
        }
        if (name.Length == 0) return "name part must be non-empty";
        if (name.Length > 63) return "name part must be no more than 63 characters";
        return QualifiedNameRegex().IsMatch(name)
            ? null
            : "name part must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyName', 'my.name', or '123-abc')";
    }

    public static string? LabelValue(string v)
    {
        if (v.Length > 63) return "must be no more than 63 characters";
        return LabelValueRegex().IsMatch(v)
            ? null
            : "a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyValue', or 'my_value', or '12345')";
    }

    /// <summary>IANA_SVC_NAME (RFC 6335): what container port names and named targetPorts must be.</summary>
    public static string? PortName(string v)
    {
        if (v.Length > 15) return "must be no more than 15 characters";
        foreach (var c in v)
        {
            if (!(c is >= 'a' and <= 'z' or >= '0' and <= '9' or '-'))
            {
                return "must contain only alpha-numeric characters (a-z, 0-9), and hyphens (-)";
            }
        }
        if (v.Contains("--", StringComparison.Ordinal)) return "must not contain consecutive hyphens";
        if (v.Length == 0 || v[0] == '-' || v[^1] == '-') return "must not begin or end with a hyphen";
        foreach (var c in v)
        {
            if (c is >= 'a' and <= 'z') return null;
        }
        return "must contain at least one letter (a-z)";
    }

    public static string? EnvVarName(string v) =>
        EnvVarNameRegex().IsMatch(v)
            ? null
            : "a valid environment variable name must consist of alphabetic characters, digits, '_', '-', or '.', and must not start with a digit";

    public static string? Protocol(string v) =>
        v is "TCP" or "UDP" or "SCTP" ? null : "supported values: \"TCP\", \"UDP\", \"SCTP\"";

    public static string? Port(long v) =>
        v is >= 1 and <= 65535 ? null : "must be between 1 and 65535, inclusive";

    /// <summary>
    /// A literal IPv4 or IPv6 address. Stricter than <see cref="IPAddress.TryParse(string?, out IPAddress?)"/>,
    /// which accepts "10" or "127.1" and zones; Kubernetes does not, and neither do we.
    /// </summary>
    public static string? IpAddress(string v)
    {
        if (IPAddress.TryParse(v, out var ip))
        {
            if (ip.AddressFamily == AddressFamily.InterNetwork && DottedQuadRegex().IsMatch(v) && !HasLeadingZero(v)) return null;
            if (ip.AddressFamily == AddressFamily.InterNetworkV6 && v.Contains(':', StringComparison.Ordinal)
                && !v.Contains('%', StringComparison.Ordinal) && !v.Contains('[', StringComparison.Ordinal)) return null;
        }
        return "must be a valid IP address, (e.g. 10.9.8.7 or 2001:db8::ffff)";
    }

    private static bool HasLeadingZero(string v)
    {
        foreach (var part in v.Split('.'))
        {
            if (part.Length > 1 && part[0] == '0') return true;
        }
        return false;
    }
}

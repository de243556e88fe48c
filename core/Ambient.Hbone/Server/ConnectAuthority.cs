using System.Globalization;
using System.Net;
using System.Net.Sockets;

namespace Ambient.Hbone.Server;

/// <summary>
/// Parses the HBONE CONNECT target. RFC 9113 8.5: a CONNECT's :authority is the target's host and port
/// (authority-form, RFC 9110 7.1). A workload is targeted by address; a service by its hostname (what a client sends a
/// waypoint or the destination's ztunnel when the service, not one pod, is the target):
/// <code>
///   authority = IPv4address ":" port          e.g. 10.0.0.5:8080
///             / "[" IPv6address "]" ":" port  e.g. [fd00::5]:8080
///             / hostname ":" port             e.g. echo.demo.svc.cluster.local:80 (see <see cref="TryParseTarget"/>)
///   port      = 1*5DIGIT                       1..65535
/// </code>
/// Deliberately strict: IPAddress.TryParse alone would accept "10.1" (= 10.0.0.1), hex octets and zone ids, each of
/// which could make a policy check and the actual connect disagree about the target.
/// </summary>
internal static class ConnectAuthority
{
    /// <summary>
    /// An address authority (<see cref="TryParse"/>), or else a hostname one: RFC 1123 labels (letters, digits, '-',
    /// 1-63 characters, no leading or trailing '-'), at most 253 characters, a last label that is not all digits (so
    /// "127.1" stays a malformed address, never a name). The hostname comes back lowercase.
    /// </summary>
    public static bool TryParseTarget(string authority, out IPEndPoint? address, out string? hostname, out int port, out string? error)
    {
        hostname = null;
        port = 0;
        if (TryParse(authority, out address, out error))
        {
            port = address!.Port;
            return true;
        }
        int colon = authority.IndexOf(':');
        if (colon > 0 && authority.LastIndexOf(':') == colon && IsHostname(authority.AsSpan(0, colon)))
        {
            if (!TryParsePort(authority.AsSpan(colon + 1), out port))
            {
                error = "authority port must be 1-65535";
                return false;
            }
            hostname = authority[..colon].ToLowerInvariant();
            error = null;
            return true;
        }
        return false;
    }

    private static bool IsHostname(ReadOnlySpan<char> host)
    {
        if (host.Length is 0 or > 253)
            return false;
        int labelStart = 0;
        bool lastLabelNumeric = true;
        for (int i = 0; i <= host.Length; i++)
        {
            if (i == host.Length || host[i] == '.')
            {
                var label = host[labelStart..i];
                if (label.IsEmpty || label.Length > 63 || label[0] == '-' || label[^1] == '-')
                    return false;
                lastLabelNumeric = !label.ContainsAnyExcept(Digits);
                labelStart = i + 1;
                continue;
            }
            char c = host[i];
            if (!(char.IsAsciiLetterOrDigit(c) || c == '-'))
                return false;
        }
        return !lastLabelNumeric;
    }

    private static readonly System.Buffers.SearchValues<char> Digits = System.Buffers.SearchValues.Create("0123456789");

    /// <summary>The strict address form only: ip:port or [ipv6]:port.</summary>
    public static bool TryParse(ReadOnlySpan<char> authority, out IPEndPoint? target, out string? error)
    {
        target = null;
        if (authority.IsEmpty)
        {
            error = "missing :authority";
            return false;
        }

        ReadOnlySpan<char> host;
        ReadOnlySpan<char> port;
        bool v6;
        if (authority[0] == '[')
        {
            int close = authority.IndexOf(']');
            if (close < 0 || close + 1 >= authority.Length || authority[close + 1] != ':')
            {
                error = "authority must be [ipv6]:port";
                return false;
            }
            host = authority[1..close];
            port = authority[(close + 2)..];
            v6 = true;
        }
        else
        {
            int colon = authority.IndexOf(':');
            if (colon < 0 || authority.LastIndexOf(':') != colon)
            {
                error = "authority must be ip:port or [ipv6]:port";
                return false;
            }
            host = authority[..colon];
            port = authority[(colon + 1)..];
            v6 = false;
        }

        if (!TryParsePort(port, out int portNumber))
        {
            error = "authority port must be 1-65535";
            return false;
        }

        if (host.IndexOf('%') >= 0 || !IPAddress.TryParse(host, out var address))
        {
            error = "authority host must be an IP address";
            return false;
        }

        if (v6)
        {
            if (address.AddressFamily != AddressFamily.InterNetworkV6 || address.IsIPv4MappedToIPv6)
            {
                error = "bracketed authority host must be an IPv6 address";
                return false;
            }
        }
        else if (address.AddressFamily != AddressFamily.InterNetwork || !IsDottedQuad(host))
        {
            error = "authority host must be a dotted-quad IPv4 address";
            return false;
        }

        target = new IPEndPoint(address, portNumber);
        error = null;
        return true;
    }

    private static bool TryParsePort(ReadOnlySpan<char> s, out int port)
    {
        port = 0;
        return s.Length is >= 1 and <= 5
            && int.TryParse(s, NumberStyles.None, CultureInfo.InvariantCulture, out port)
            && port is >= 1 and <= 65535;
    }

    // Four decimal octets, 1-3 digits each; the range check is left to IPAddress.TryParse, which already passed.
    private static bool IsDottedQuad(ReadOnlySpan<char> s)
    {
        int parts = 0, digits = 0;
        foreach (char c in s)
        {
            if (c == '.')
            {
                if (digits == 0)
                    return false;
                parts++;
                digits = 0;
            }
            else if (c is >= '0' and <= '9')
            {
                if (++digits > 3)
                    return false;
            }
            else
            {
                return false;
            }
        }
        return parts == 3 && digits > 0;
    }
}

using System.Globalization;
using System.Net;
using System.Net.Sockets;

namespace Ambient.Ztunnel.Proxy.Inbound;

/// <summary>
/// Parses the HBONE CONNECT target. RFC 9113 8.5: a CONNECT's :authority is the target's host and port
/// (authority-form, RFC 9110 7.1). HBONE only ever targets addresses, never names:
/// <code>
///   authority = IPv4address ":" port          e.g. 10.0.0.5:8080
///             / "[" IPv6address "]" ":" port  e.g. [fd00::5]:8080
///   port      = 1*5DIGIT                       1..65535
/// </code>
/// Deliberately strict: IPAddress.TryParse alone would accept "10.1" (= 10.0.0.1), hex octets and zone ids, each of
/// which could make a policy check and the actual connect disagree about the target.
/// </summary>
internal static class ConnectAuthority
{
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

using System.Globalization;
using Ambient.Core.Protos.Waypoint;
using Ambient.Waypoint.Routing;

namespace Ambient.Waypoint.Filters;

/// <summary>RequestRedirect: builds the Location of the redirect response.</summary>
internal static class RequestRedirect
{
    /// <summary>
    /// The Location for <paramref name="filter"/>. Port derivation follows HTTPRequestRedirectFilter.Port: a set
    /// port wins; else when the filter sets a scheme, that scheme's well-known port (http 80, https 443); else the
    /// port the request was addressed to (the Gateway listener's port; the Service port in the mesh). The port is
    /// left out when it is the scheme's own (http:80, https:443). The query string is kept, as Envoy does.
    /// </summary>
    public static string Location(HTTPRequestRedirectFilter filter, in RequestFacts request, string? matchedPrefix)
    {
        var scheme = filter.Scheme.Length > 0 ? filter.Scheme : request.Scheme;
        var host = filter.Hostname.Length > 0 ? filter.Hostname.AsSpan() : request.HostWithoutPort;
        int port;
        if (filter.Port != 0)
        {
            port = (int)filter.Port;
        }
        else if (filter.Scheme.Length > 0)
        {
            port = WellKnownPort(filter.Scheme) ?? request.Port;
        }
        else
        {
            port = request.Port != 0 ? request.Port : WellKnownPort(scheme) ?? 0;
        }
        var path = PathModifier.Apply(filter.Path, request.Path, matchedPrefix) ?? request.Path;
        var query = request.QuerySpan;

        var omitPort = port == 0 || port == WellKnownPort(scheme);
        return string.Concat(
            string.Concat(scheme, "://", host),
            omitPort ? "" : ":" + port.ToString(CultureInfo.InvariantCulture),
            path,
            query.IsEmpty ? "" : string.Concat("?", query));
    }

    private static int? WellKnownPort(string scheme) =>
        string.Equals(scheme, "http", StringComparison.OrdinalIgnoreCase) ? 80
        : string.Equals(scheme, "https", StringComparison.OrdinalIgnoreCase) ? 443
        : null;
}

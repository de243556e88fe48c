using Microsoft.AspNetCore.Http;

namespace Ambient.Waypoint.Routing;

/// <summary>
/// What the route table needs to know about one request. A struct over strings the server already holds and the
/// request's own header collection, so building it allocates nothing.
/// </summary>
internal readonly struct RequestFacts
{
    /// <param name="method">The request method as received (methods compare case-sensitively, RFC 9110 9.1).</param>
    /// <param name="path">The path without the query (Kestrel's PathBase + Path, still percent-encoded as sent).</param>
    /// <param name="query">The raw query, with or without its leading '?'; "" or null when there is none.</param>
    /// <param name="host">The Host header (or :authority), port included or not.</param>
    /// <param name="headers">The request's headers; names compare case-insensitively (Kestrel's dictionary does).</param>
    /// <param name="scheme">"http" or "https": what the client used, for redirects that keep the scheme.</param>
    /// <param name="port">The port the request was addressed to (the Service port in the mesh, the listener port on
    /// a Gateway); 0 = unknown, then redirects fall back to the scheme's well-known port.</param>
    public RequestFacts(string method, string path, string? query, string host, IHeaderDictionary headers,
        string scheme = "http", int port = 0)
    {
        Method = method;
        Path = path;
        Query = query ?? "";
        Host = host;
        Headers = headers;
        Scheme = scheme;
        Port = port;
    }

    public string Method { get; }
    public string Path { get; }
    public string Query { get; }
    public string Host { get; }
    public IHeaderDictionary Headers { get; }
    public string Scheme { get; }
    public int Port { get; }

    /// <summary>The query without its leading '?'.</summary>
    public ReadOnlySpan<char> QuerySpan => Query.StartsWith('?') ? Query.AsSpan(1) : Query.AsSpan();

    /// <summary>The Host without its port ("[::1]:80" gives "[::1]"): the spec says to ignore the port when matching
    /// hostnames.</summary>
    public ReadOnlySpan<char> HostWithoutPort => StripPort(Host);

    internal static ReadOnlySpan<char> StripPort(string host)
    {
        var span = host.AsSpan();
        var colon = span.LastIndexOf(':');
        if (colon < 0)
        {
            return span;
        }
        // An IPv6 literal has colons inside its brackets; only a colon after ']' starts a port.
        var bracket = span.LastIndexOf(']');
        if (bracket >= 0 && colon < bracket)
        {
            return span;
        }
        if (bracket < 0 && span[..colon].Contains(':'))
        {
            return span; // bare IPv6 without brackets: no port to strip
        }
        return span[..colon];
    }
}

/// <summary>
/// The Service a request was addressed to (the parent of GAMMA routes): its namespace, its name (the first label of
/// its hostname) and the port the client dialed.
/// </summary>
internal readonly record struct ServiceTarget(string Namespace, string Name, int Port)
{
    /// <summary>From the Service's hostname as the Address resources carry it ("reviews.shop.svc.cluster.local").</summary>
    public static ServiceTarget FromHostname(string serviceNamespace, string hostname, int port)
    {
        var dot = hostname.IndexOf('.');
        return new ServiceTarget(serviceNamespace, dot < 0 ? hostname : hostname[..dot], port);
    }
}

/// <summary>The waypoint's own Gateway (namespace/name), for routes whose parentRef is that Gateway.</summary>
internal readonly record struct GatewayTarget(string Namespace, string Name);

/// <summary>The random source for backend weights and mirror sampling: injectable so tests are deterministic.</summary>
internal interface IRouteRandom
{
    /// <summary>A uniformly distributed integer in [0, maxExclusive).</summary>
    int Next(int maxExclusive);
}

internal sealed class SharedRouteRandom : IRouteRandom
{
    public static readonly SharedRouteRandom Instance = new();

    public int Next(int maxExclusive) => Random.Shared.Next(maxExclusive);
}

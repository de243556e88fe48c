using Microsoft.AspNetCore.Http;

namespace Ambient.Core.Authz;

/// <summary>
/// What the L7 evaluator knows about one request at a waypoint (the attributes Envoy's RBAC filter reads): the
/// client's SPIFFE identity (the HBONE peer, which the source ztunnel presents on the client's behalf), the source
/// address (the client's, as ztunnel forwards it), the remote address (the same: no trusted proxy hops), the original
/// destination (Service VIP and port), the method, the path without its query, the Host (or <c>:authority</c>), the
/// headers and the TLS SNI of the downstream connection (none inside an HBONE tunnel).
/// A struct over values the server already holds, so building it allocates nothing.
/// </summary>
internal readonly struct L7Request
{
    public L7Request(string? sourceIdentity, IpKey source, IpKey remote, IpKey destination, int destinationPort,
        string method, string path, string host, IHeaderDictionary headers, string? sni = null)
    {
        ArgumentNullException.ThrowIfNull(headers);
        SourceIdentity = sourceIdentity;
        Source = source;
        Remote = remote;
        Destination = destination;
        DestinationPort = destinationPort;
        Method = method;
        Path = path;
        Host = host;
        HostNameLength = L7HostMatch.WithoutPort(host).Length;
        Headers = headers;
        Sni = sni;
    }

    /// <summary><c>spiffe://td/ns/N/sa/S</c>, or null without a peer certificate.</summary>
    public string? SourceIdentity { get; }

    /// <summary><c>source.ip</c> and <c>ipBlocks</c> (Envoy's direct_remote_ip).</summary>
    public IpKey Source { get; }

    /// <summary><c>remote.ip</c> and <c>remoteIpBlocks</c> (Envoy's remote_ip).</summary>
    public IpKey Remote { get; }

    public IpKey Destination { get; }

    public int DestinationPort { get; }

    public string Method { get; }

    /// <summary>The path without the query, as the server decoded and normalized it.</summary>
    public string Path { get; }

    public string Host { get; }

    /// <summary>The length of <see cref="Host"/> without its <c>:port</c>, computed once for every host matcher.</summary>
    public int HostNameLength { get; }

    public IHeaderDictionary Headers { get; }

    /// <summary><c>connection.sni</c>; null when the connection carried none.</summary>
    public string? Sni { get; }
}

using System.Net;
using System.Security.Cryptography.X509Certificates;
using Microsoft.AspNetCore.Http;

namespace Ambient.Core.Grpc;

/// <summary>What a gRPC handler knows about its call: metadata, deadline, cancellation and the TLS peer.</summary>
internal sealed class GrpcServerCallContext
{
    internal GrpcServerCallContext(HttpContext httpContext, DateTime? deadline, CancellationToken cancellationToken)
    {
        HttpContext = httpContext;
        Deadline = deadline;
        CancellationToken = cancellationToken;
    }

    public HttpContext HttpContext { get; }

    /// <summary>UTC deadline from the request's <c>grpc-timeout</c>, or null when the caller set none.</summary>
    public DateTime? Deadline { get; }

    /// <summary>Fires when the client aborts the call (RST_STREAM / connection loss) or the deadline passes.</summary>
    public CancellationToken CancellationToken { get; }

    /// <summary>The TLS client certificate of the connection, if the client presented one.</summary>
    public X509Certificate2? ClientCertificate => HttpContext.Connection.ClientCertificate;

    /// <summary>The remote endpoint as "ip:port" ("[v6]:port" for IPv6).</summary>
    public string Peer
    {
        get
        {
            var connection = HttpContext.Connection;
            return connection.RemoteIpAddress is { } ip
                ? new IPEndPoint(ip, connection.RemotePort).ToString()
                : "unknown";
        }
    }

    /// <summary>
    /// A request metadata value by (case-insensitive) name, e.g. "authorization" or "clusterid"; null when
    /// absent. Several values are joined with "," as HTTP does.
    /// </summary>
    public string? GetMetadata(string name)
    {
        var values = HttpContext.Request.Headers[name];
        return values.Count == 0 ? null : values.ToString();
    }
}

using Ambient.Dataplane.State;
using Microsoft.AspNetCore.Http;
using Yarp.ReverseProxy.Forwarder;

namespace Ambient.Waypoint.Forwarding;

/// <summary>
/// The HTTP client side of the waypoint: a <see cref="SocketsHttpHandler"/> whose connections are HBONE streams to
/// the picked pod (<see cref="UpstreamConnector"/>), so HTTP/1.1 keep-alive and HTTP/2 multiplexing work per
/// destination exactly as over sockets. The picked destination travels with each request in its options.
/// </summary>
internal static class HboneHttpInvoker
{
    /// <summary>The destination a request is sent to, set by <see cref="DestinationTransformer"/>.</summary>
    public static readonly HttpRequestOptionsKey<ResolvedDestination> Destination = new("ambient.waypoint.destination");

    public static HttpMessageInvoker Create(UpstreamConnector connector, TimeSpan connectTimeout)
    {
        var handler = new SocketsHttpHandler
        {
            UseProxy = false,
            AllowAutoRedirect = false,
            AutomaticDecompression = System.Net.DecompressionMethods.None,
            UseCookies = false,
            // The app's trace headers pass through as they are; the waypoint adds none of its own yet.
            ActivityHeadersPropagator = null,
            EnableMultipleHttp2Connections = true,
            ConnectTimeout = connectTimeout,
            PooledConnectionIdleTimeout = TimeSpan.FromMinutes(1),
            ConnectCallback = async (context, cancellationToken) =>
            {
                // Keyed by scheme://podIP:port, a pooled connection only ever carries requests for that one pod.
                if (!context.InitialRequestMessage.Options.TryGetValue(Destination, out var destination))
                {
                    throw new InvalidOperationException($"no destination picked for {context.DnsEndPoint}");
                }
                return await connector.ConnectAsync(destination, cancellationToken).ConfigureAwait(false);
            },
        };
        return new HttpMessageInvoker(handler, disposeHandler: true);
    }
}

/// <summary>
/// YARP's default request transform, plus: the original <c>Host</c> is kept (the backend sees the Service name the
/// client used, not a pod address), and the picked destination is attached for the connect callback.
/// </summary>
internal sealed class DestinationTransformer : HttpTransformer
{
    public static readonly DestinationTransformer Instance = new();

    public override async ValueTask TransformRequestAsync(HttpContext httpContext, HttpRequestMessage proxyRequest, string destinationPrefix,
        CancellationToken cancellationToken)
    {
        await base.TransformRequestAsync(httpContext, proxyRequest, destinationPrefix, cancellationToken).ConfigureAwait(false);
        proxyRequest.Headers.Host = httpContext.Request.Host.Value;
        if (httpContext.Features.Get<PickedDestination>() is { } picked)
        {
            proxyRequest.Options.Set(HboneHttpInvoker.Destination, picked.Destination);
        }
    }
}

/// <summary>The endpoint picked for the current request (a request feature).</summary>
internal sealed record PickedDestination(ResolvedDestination Destination);

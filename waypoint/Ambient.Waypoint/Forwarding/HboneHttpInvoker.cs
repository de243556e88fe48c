using Ambient.Dataplane.State;
using Ambient.Waypoint.Filters;
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
    /// <summary>The destination a request is sent to, set by <see cref="RouteTransformer"/>.</summary>
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
/// YARP's default request transform, plus what the route plan asks for: the original <c>Host</c> is kept (the backend
/// sees the Service name the client used, not a pod address) unless URLRewrite replaces it, a rewritten path replaces
/// the request's (query kept), and the picked destination is attached for the connect callback. On the way back it
/// applies the plan's response header edits, or withholds a response whose status the route retries.
/// </summary>
internal sealed class RouteTransformer : HttpTransformer
{
    public static readonly RouteTransformer Instance = new();

    public override async ValueTask TransformRequestAsync(HttpContext httpContext, HttpRequestMessage proxyRequest, string destinationPrefix,
        CancellationToken cancellationToken)
    {
        await base.TransformRequestAsync(httpContext, proxyRequest, destinationPrefix, cancellationToken).ConfigureAwait(false);
        var forwarded = httpContext.Features.Get<ForwardedRequest>();
        proxyRequest.Headers.Host = forwarded?.RewrittenHost ?? httpContext.Request.Host.Value;
        if (forwarded is null)
        {
            return;
        }
        if (forwarded.RewrittenPath is { } path)
        {
            proxyRequest.RequestUri = RequestUtilities.MakeDestinationAddress(destinationPrefix, PathString.FromUriComponent(path),
                httpContext.Request.QueryString);
        }
        proxyRequest.Options.Set(HboneHttpInvoker.Destination, forwarded.Destination!);
        if (!forwarded.RequestHeaders.IsEmpty)
        {
            JoinAddedValues(proxyRequest, forwarded.RequestHeaders);
        }
    }

    // HttpClient writes a header's several values as one line joined by ", "; Envoy sends an added value as a line of
    // its own, which a backend reads as "old,added" (the conformance suite compares exactly that). One line joined
    // by "," carries the same list (RFC 9110 5.3) and reads the same.
    private static void JoinAddedValues(HttpRequestMessage proxyRequest, HeaderEdits edits)
    {
        foreach (var edit in edits.Edits)
        {
            if (edit.Kind != HeaderEditKind.Add || !proxyRequest.Headers.TryGetValues(edit.Name, out var values))
            {
                continue;
            }
            var count = 0;
            foreach (var _ in values)
            {
                count++;
            }
            if (count > 1)
            {
                var joined = string.Join(',', values);
                proxyRequest.Headers.Remove(edit.Name);
                proxyRequest.Headers.TryAddWithoutValidation(edit.Name, joined);
            }
        }
    }

    public override ValueTask<bool> TransformResponseAsync(HttpContext httpContext, HttpResponseMessage? proxyResponse,
        CancellationToken cancellationToken)
    {
        var forwarded = httpContext.Features.Get<ForwardedRequest>();
        if (proxyResponse is not null && forwarded is not null && forwarded.ShouldRetry((int)proxyResponse.StatusCode))
        {
            // Nothing is copied to the client: the forwarder tries again.
            forwarded.RetryRequested = true;
            return ValueTask.FromResult(false);
        }
        return ApplyResponseEditsAsync(httpContext, proxyResponse, forwarded, cancellationToken);
    }

    private async ValueTask<bool> ApplyResponseEditsAsync(HttpContext httpContext, HttpResponseMessage? proxyResponse,
        ForwardedRequest? forwarded, CancellationToken cancellationToken)
    {
        var proxied = await base.TransformResponseAsync(httpContext, proxyResponse, cancellationToken).ConfigureAwait(false);
        if (proxyResponse is not null && forwarded is not null)
        {
            forwarded.ResponseHeaders.ApplyTo(httpContext.Response.Headers);
        }
        return proxied;
    }
}

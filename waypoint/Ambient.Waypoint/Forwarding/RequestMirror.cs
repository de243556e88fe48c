using Ambient.Dataplane.State;
using Microsoft.AspNetCore.Http;
using Yarp.ReverseProxy.Forwarder;

namespace Ambient.Waypoint.Forwarding;

/// <summary>
/// RequestMirror: a copy of the request (after the request header edits and URL rewrite) sent to the mirror's
/// endpoint without waiting; its response is discarded and its failure only logged, so it never delays or fails the
/// main request. As Envoy does, the copy's Host gets a <c>-shadow</c> suffix. A request with a body is mirrored with
/// that body once the main request has read it whole (<see cref="ReplayableRequestBody"/>); a body over the buffer
/// limit, or one the main request never read to the end, is not mirrored at all (Envoy abandons such a shadow).
/// </summary>
internal sealed partial class RequestMirror(HttpMessageInvoker invoker, ILogger logger)
{
    private static readonly TimeSpan MirrorTimeout = TimeSpan.FromSeconds(30);

    public void Send(HttpContext context, ForwardedRequest forwarded, ResolvedDestination destination, ReplayableRequestBody? body)
    {
        // Built now, while the request's headers are still ours to read; sent later without touching the context.
        var request = context.Request;
        var path = forwarded.RewrittenPath is { } rewritten ? PathString.FromUriComponent(rewritten) : request.Path;
        var copy = new HttpRequestMessage(new HttpMethod(request.Method),
            RequestUtilities.MakeDestinationAddress("http://" + destination.Authority, path, request.QueryString))
        {
            Version = System.Net.HttpVersion.Version11,
            // Holds the content headers until the body is known.
            Content = body is null ? null : new ByteArrayContent([]),
        };
        foreach (var header in request.Headers)
        {
            if (IsHopByHop(header.Key))
            {
                continue;
            }
            if (!copy.Headers.TryAddWithoutValidation(header.Key, (IEnumerable<string>)header.Value!) && copy.Content is not null
                && !string.Equals(header.Key, "Content-Length", StringComparison.OrdinalIgnoreCase))
            {
                copy.Content.Headers.TryAddWithoutValidation(header.Key, (IEnumerable<string>)header.Value!);
            }
        }
        copy.Headers.Host = (forwarded.RewrittenHost ?? request.Host.Value) + "-shadow";
        copy.Options.Set(HboneHttpInvoker.Destination, destination);
        _ = SendAsync(copy, body?.WholeBodyAsync());
    }

    private async Task SendAsync(HttpRequestMessage copy, Task<byte[]?>? wholeBody)
    {
        using (copy)
        {
            try
            {
                if (wholeBody is not null)
                {
                    if (await wholeBody.ConfigureAwait(false) is not { } bytes)
                    {
                        Log.MirrorDropped(logger, copy.RequestUri?.Authority ?? "");
                        return;
                    }
                    var content = new ByteArrayContent(bytes);
                    foreach (var header in copy.Content!.Headers)
                    {
                        if (!string.Equals(header.Key, "Content-Length", StringComparison.OrdinalIgnoreCase))
                        {
                            content.Headers.TryAddWithoutValidation(header.Key, header.Value);
                        }
                    }
                    copy.Content.Dispose();
                    copy.Content = content;
                }
                using var timeout = new CancellationTokenSource(MirrorTimeout);
                using var response = await invoker.SendAsync(copy, timeout.Token).ConfigureAwait(false);
            }
            catch (Exception ex) when (ex is HttpRequestException or OperationCanceledException or IOException)
            {
                Log.MirrorFailed(logger, copy.RequestUri?.Authority ?? "", ex.Message);
            }
        }
    }

    private static bool IsHopByHop(string name) =>
        name.StartsWith(':')
        || string.Equals(name, "Host", StringComparison.OrdinalIgnoreCase)
        || string.Equals(name, "Connection", StringComparison.OrdinalIgnoreCase)
        || string.Equals(name, "Keep-Alive", StringComparison.OrdinalIgnoreCase)
        || string.Equals(name, "Transfer-Encoding", StringComparison.OrdinalIgnoreCase)
        || string.Equals(name, "TE", StringComparison.OrdinalIgnoreCase)
        || string.Equals(name, "Upgrade", StringComparison.OrdinalIgnoreCase)
        || string.Equals(name, "Proxy-Connection", StringComparison.OrdinalIgnoreCase)
        || string.Equals(name, "Content-Length", StringComparison.OrdinalIgnoreCase);

    private static partial class Log
    {
        [LoggerMessage(EventId = 5, Level = LogLevel.Debug, Message = "waypoint: mirror to {Target} failed: {Error}")]
        public static partial void MirrorFailed(ILogger logger, string target, string error);

        [LoggerMessage(EventId = 6, Level = LogLevel.Debug, Message = "waypoint: mirror to {Target} dropped: the request body was over the buffer limit or not read to its end")]
        public static partial void MirrorDropped(ILogger logger, string target);
    }
}

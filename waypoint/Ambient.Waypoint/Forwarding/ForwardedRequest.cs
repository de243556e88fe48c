using Ambient.Dataplane.State;
using Ambient.Waypoint.Filters;
using Ambient.Waypoint.Routing;

namespace Ambient.Waypoint.Forwarding;

/// <summary>
/// What the forwarder decided for the current request (a request feature, read by <see cref="RouteTransformer"/>):
/// the picked endpoint, the URLRewrite results, the response header edits, and the retry state of the attempt
/// loop. One per forwarded request.
/// </summary>
internal sealed class ForwardedRequest
{
    public ResolvedDestination? Destination { get; set; }

    public string? RewrittenPath { get; init; }

    public string? RewrittenHost { get; init; }

    /// <summary>The request header edits already applied to the request (the transformer fixes how added values are
    /// joined).</summary>
    public HeaderEdits RequestHeaders { get; init; } = HeaderEdits.Empty;

    public HeaderEdits ResponseHeaders { get; init; } = HeaderEdits.Empty;

    /// <summary>Null when this request is not retried (no retry policy, or a body over the buffer limit).</summary>
    public RetryPolicy? Retry { get; init; }

    /// <summary>The request body kept for another attempt or a mirror; null when the request has no body or is sent
    /// once to one place.</summary>
    public ReplayableRequestBody? Body { get; init; }

    /// <summary>False once the body has outgrown the buffer limit mid-request: what was sent cannot be sent again.</summary>
    public bool CanResend => Body?.CanReplay ?? true;

    /// <summary>Retries still allowed after the current attempt.</summary>
    public int RetriesLeft { get; set; }

    /// <summary>Set by the transformer when it withheld a response whose status the route retries.</summary>
    public bool RetryRequested { get; set; }

    public bool ShouldRetry(int statusCode)
    {
        if (Retry is not { } retry || RetriesLeft <= 0 || !CanResend)
        {
            return false;
        }
        for (var i = 0; i < retry.Codes.Count; i++)
        {
            if (retry.Codes[i] == statusCode)
            {
                return true;
            }
        }
        return false;
    }
}

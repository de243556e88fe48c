using System.Runtime.CompilerServices;
using Google.Protobuf;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Http.Features;
using Microsoft.AspNetCore.Server.Kestrel.Core.Features;
using Microsoft.Extensions.Logging;

namespace Ambient.Core.Grpc;

/// <summary>
/// The server half of one call: validates the request, owns the deadline/cancellation, runs the handler and
/// turns its outcome into grpc-status (trailers-only when nothing was sent yet, trailers otherwise).
/// </summary>
internal sealed class GrpcServerCall : IDisposable
{
    // Timeouts beyond this are treated as "no deadline": CancelAfter tops out at ~24.8 days, and a 99999999H
    // grpc-timeout would overflow DateTime.
    private static readonly TimeSpan MaxTimerTimeout = TimeSpan.FromMilliseconds(int.MaxValue - 1);

    private readonly HttpContext _http;
    private readonly ILogger _logger;
    private readonly CancellationTokenSource? _deadlineCts;
    private readonly CancellationTokenSource _callCts;
    private readonly TimeSpan? _timeout;

    private GrpcServerCall(HttpContext http, ILogger logger)
    {
        _http = http;
        _logger = logger;
        Path = http.Request.Path.Value ?? string.Empty;

        DateTime? deadline = null;
        var timeoutHeader = http.Request.Headers[GrpcProtocol.TimeoutHeader];
        if (timeoutHeader.Count > 0)
        {
            var text = timeoutHeader.ToString();
            if (GrpcProtocol.TryParseTimeout(text, out var timeout))
            {
                if (timeout <= MaxTimerTimeout)
                {
                    _timeout = timeout;
                    deadline = DateTime.UtcNow + timeout;
                    _deadlineCts = new CancellationTokenSource(timeout);
                }
            }
            else
            {
                GrpcLog.BadTimeout(logger, text, Path);
            }
        }

        _callCts = _deadlineCts is null
            ? CancellationTokenSource.CreateLinkedTokenSource(http.RequestAborted)
            : CancellationTokenSource.CreateLinkedTokenSource(http.RequestAborted, _deadlineCts.Token);
        Context = new GrpcServerCallContext(http, deadline, _callCts.Token);

        // gRPC streams are long-lived and may idle: Kestrel's body size cap (30 MB) and minimum data rate
        // (which resets idle streams after ~5 s) are for request/response HTTP, not for us. Our own limit is
        // per message (GrpcServerDefaults.MaxMessageSize).
        if (http.Features.Get<IHttpMaxRequestBodySizeFeature>() is { IsReadOnly: false } sizeFeature)
        {
            sizeFeature.MaxRequestBodySize = null;
        }

        if (http.Features.Get<IHttpMinRequestBodyDataRateFeature>() is { } rateFeature)
        {
            rateFeature.MinDataRate = null;
        }
    }

    public GrpcServerCallContext Context { get; }

    public string Path { get; }

    public string? RequestEncoding => _http.Request.Headers[GrpcProtocol.EncodingHeader].Count == 0
        ? null
        : _http.Request.Headers[GrpcProtocol.EncodingHeader].ToString();

    private bool DeadlineExceeded => _deadlineCts?.IsCancellationRequested == true;

    /// <summary>
    /// Rejects what is not a gRPC call we can serve (wrong protocol or content type) with a plain HTTP status, as
    /// the spec asks; returns null then. Otherwise starts the call.
    /// </summary>
    public static GrpcServerCall? TryStart(HttpContext http, ILogger logger)
    {
        var path = http.Request.Path.Value ?? string.Empty;
        if (!GrpcProtocol.IsGrpcProtoContentType(http.Request.ContentType))
        {
            var reason = $"Content-Type '{http.Request.ContentType ?? "(none)"}' is not supported (expected {GrpcProtocol.ContentType} or {GrpcProtocol.ContentTypeProto})";
            GrpcLog.Rejected(logger, path, reason);
            Reject(http, StatusCodes.Status415UnsupportedMediaType, reason);
            return null;
        }

        if (!HttpProtocol.IsHttp2(http.Request.Protocol) && !HttpProtocol.IsHttp3(http.Request.Protocol))
        {
            var reason = $"Request protocol '{http.Request.Protocol}' is not supported (gRPC needs HTTP/2)";
            GrpcLog.Rejected(logger, path, reason);
            Reject(http, StatusCodes.Status426UpgradeRequired, reason);
            return null;
        }

        return new GrpcServerCall(http, logger);
    }

    private static void Reject(HttpContext http, int httpStatus, string reason)
    {
        http.Response.StatusCode = httpStatus;
        http.Response.Headers[GrpcProtocol.StatusHeader] = GrpcProtocol.StatusText(GrpcStatusCode.Internal);
        http.Response.Headers[GrpcProtocol.MessageHeader] = GrpcProtocol.EncodeMessage(reason);
    }

    /// <summary>Sets the headers of a gRPC response (not yet sent).</summary>
    public static void PrepareResponse(HttpResponse response)
    {
        response.StatusCode = StatusCodes.Status200OK;
        response.ContentType = GrpcProtocol.ContentType;
        response.Headers[GrpcProtocol.AcceptEncodingHeader] = GrpcProtocol.IdentityEncoding;
    }

    /// <summary>
    /// Ends the call with a status. Before anything was sent this is a Trailers-Only response (grpc-status in
    /// the HEADERS frame with END_STREAM); after, it goes in the trailers.
    /// </summary>
    public static void WriteStatus(HttpContext http, GrpcStatusCode status, string? detail)
    {
        var response = http.Response;
        if (!response.HasStarted)
        {
            PrepareResponse(response);
            if (status != GrpcStatusCode.OK)
            {
                response.Headers.ContentLength = null;
                response.Headers[GrpcProtocol.StatusHeader] = GrpcProtocol.StatusText(status);
                if (!string.IsNullOrEmpty(detail))
                {
                    response.Headers[GrpcProtocol.MessageHeader] = GrpcProtocol.EncodeMessage(detail);
                }

                return;
            }
        }

        response.AppendTrailer(GrpcProtocol.StatusHeader, GrpcProtocol.StatusText(status));
        if (!string.IsNullOrEmpty(detail))
        {
            response.AppendTrailer(GrpcProtocol.MessageHeader, GrpcProtocol.EncodeMessage(detail));
        }
    }

    /// <summary>Turns whatever ended the call (including a late success past the deadline) into a status.</summary>
    public (GrpcStatusCode Status, string Detail) MapOutcome(Exception? exception)
    {
        if (_http.RequestAborted.IsCancellationRequested)
        {
            GrpcLog.CancelledByClient(_logger, Path);
            return (GrpcStatusCode.Cancelled, "Call cancelled by the client");
        }

        if (exception is GrpcException grpc)
        {
            GrpcLog.CallFailed(_logger, Path, Context.Peer, grpc.Status, grpc.Detail);
            return (grpc.Status, grpc.Detail);
        }

        if (DeadlineExceeded && (exception is null or OperationCanceledException))
        {
            GrpcLog.DeadlineExceeded(_logger, Path, _timeout.GetValueOrDefault());
            return (GrpcStatusCode.DeadlineExceeded, "Deadline Exceeded");
        }

        if (exception is null)
        {
            return (GrpcStatusCode.OK, string.Empty);
        }

        // Never leak exception text to the caller; the log has it.
        GrpcLog.HandlerFailed(_logger, Path, Context.Peer, exception);
        return (GrpcStatusCode.Unknown, "Exception was thrown by handler.");
    }

    /// <summary>Reads exactly one request message (unary): none or a second one is a protocol error.</summary>
    public async Task<TRequest> ReadSingleMessageAsync<TRequest>(MessageParser<TRequest> parser)
        where TRequest : class, IMessage<TRequest>
    {
        var reader = _http.Request.BodyReader;
        var token = Context.CancellationToken;
        var message = await GrpcFraming.ReadMessageAsync(reader, parser, GrpcServerDefaults.MaxMessageSize, RequestEncoding, "Received", token).ConfigureAwait(false)
            ?? throw new GrpcException(GrpcStatusCode.Internal, "Request stream ended without a message (unary call needs exactly one)");
        var extra = await GrpcFraming.ReadMessageAsync(reader, parser, GrpcServerDefaults.MaxMessageSize, RequestEncoding, "Received", token).ConfigureAwait(false);
        if (extra is not null)
        {
            throw new GrpcException(GrpcStatusCode.Internal, "Request stream carried more than one message (unary call needs exactly one)");
        }

        return message;
    }

    /// <summary>The request stream of a streaming call as an async sequence; ends when the client half-closes.</summary>
    public async IAsyncEnumerable<TRequest> ReadAllMessagesAsync<TRequest>(
        MessageParser<TRequest> parser, [EnumeratorCancellation] CancellationToken cancellationToken = default)
        where TRequest : class, IMessage<TRequest>
    {
        using var linked = cancellationToken.CanBeCanceled
            ? CancellationTokenSource.CreateLinkedTokenSource(cancellationToken, Context.CancellationToken)
            : null;
        var token = linked?.Token ?? Context.CancellationToken;
        var reader = _http.Request.BodyReader;
        var encoding = RequestEncoding;
        while (await GrpcFraming.ReadMessageAsync(reader, parser, GrpcServerDefaults.MaxMessageSize, encoding, "Received", token).ConfigureAwait(false) is { } message)
        {
            yield return message;
        }
    }

    /// <summary>Cancels the call token: the handler is done, anything still pending must stop.</summary>
    public void Cancel() => _callCts.Cancel();

    public void Dispose()
    {
        _callCts.Dispose();
        _deadlineCts?.Dispose();
    }
}

using System.Net;
using System.Net.Http.Headers;

namespace Ambient.Core.Grpc;

/// <summary>
/// Client-side bookkeeping shared by unary and duplex calls: the call's cancellation (caller token + local
/// deadline), turning transport failures into gRPC statuses, and reading grpc-status from headers/trailers.
/// </summary>
internal sealed class GrpcClientCall : IDisposable
{
    private static readonly TimeSpan MaxTimerTimeout = TimeSpan.FromMilliseconds(int.MaxValue - 1);

    private readonly CancellationTokenSource? _deadlineCts;
    private readonly CancellationTokenSource _cts;
    private readonly CancellationToken _callerToken;

    public GrpcClientCall(TimeSpan? timeout, CancellationToken callerToken)
    {
        _callerToken = callerToken;
        if (timeout is { } t)
        {
            if (t <= TimeSpan.Zero)
            {
                // Spec: a deadline already in the past fails without touching the network.
                throw new GrpcException(GrpcStatusCode.DeadlineExceeded, "Deadline Exceeded (timeout was not positive)");
            }

            if (t <= MaxTimerTimeout)
            {
                _deadlineCts = new CancellationTokenSource(t);
            }
        }

        _cts = _deadlineCts is null
            ? CancellationTokenSource.CreateLinkedTokenSource(callerToken)
            : CancellationTokenSource.CreateLinkedTokenSource(callerToken, _deadlineCts.Token);
        Token = _cts.Token; // cached: the property of a disposed source throws, the token itself stays usable
    }

    public CancellationToken Token { get; }

    /// <summary>The final status once the call has ended (trailers read or failure translated).</summary>
    public GrpcException? Failure { get; private set; }

    private readonly TaskCompletionSource _ended = new(TaskCreationOptions.RunContinuationsAsynchronously);

    /// <summary>Completes when the final status has been recorded.</summary>
    public Task Ended => _ended.Task;

    public void Cancel()
    {
        try
        {
            _cts.Cancel();
        }
        catch (ObjectDisposedException)
        {
        }
    }

    /// <summary>
    /// Builds the POST a gRPC call needs. HTTP/2 exactly: gRPC does not work over HTTP/1.1 and a silent
    /// downgrade would only fail later in confusing ways.
    /// </summary>
    public static HttpRequestMessage CreateRequest(Uri baseAddress, string path, GrpcCallOptions? options, HttpContent content)
    {
        if (string.IsNullOrEmpty(path) || path[0] != '/')
        {
            throw new ArgumentException($"gRPC path '{path}' must start with '/' (e.g. /package.Service/Method)", nameof(path));
        }

        var request = new HttpRequestMessage(HttpMethod.Post, new Uri(baseAddress, path))
        {
            Version = HttpVersion.Version20,
            VersionPolicy = HttpVersionPolicy.RequestVersionExact,
            Content = content,
        };
        var headers = request.Headers;
        headers.TE.Add(new TransferCodingWithQualityHeaderValue("trailers"));
        headers.TryAddWithoutValidation("user-agent", GrpcProtocol.UserAgent);
        headers.TryAddWithoutValidation(GrpcProtocol.AcceptEncodingHeader, GrpcProtocol.IdentityEncoding);
        if (options?.Timeout is { } timeout)
        {
            headers.TryAddWithoutValidation(GrpcProtocol.TimeoutHeader, GrpcProtocol.FormatTimeout(timeout));
        }

        if (options?.Metadata is { } metadata)
        {
            for (var i = 0; i < metadata.Count; i++)
            {
                var (name, value) = metadata[i];
                ValidateMetadata(name, value);
                headers.TryAddWithoutValidation(name, value);
            }
        }

        return request;
    }

    private static void ValidateMetadata(string name, string value)
    {
        if (string.IsNullOrEmpty(name) || name[0] == ':' || name.StartsWith("grpc-", StringComparison.OrdinalIgnoreCase)
            || name.Equals("te", StringComparison.OrdinalIgnoreCase) || name.Equals("content-type", StringComparison.OrdinalIgnoreCase)
            || name.Equals("user-agent", StringComparison.OrdinalIgnoreCase))
        {
            throw new ArgumentException($"gRPC metadata name '{name}' is empty or reserved by the protocol");
        }

        foreach (var c in name)
        {
            if (!(c is >= 'a' and <= 'z' or >= 'A' and <= 'Z' or >= '0' and <= '9' or '-' or '_' or '.'))
            {
                throw new ArgumentException($"gRPC metadata name '{name}' has character '{c}' (allowed: letters, digits, '-', '_', '.')");
            }
        }

        foreach (var c in value)
        {
            if (c < 0x20 || c > 0x7E)
            {
                throw new ArgumentException($"gRPC metadata '{name}' value has a non-printable or non-ASCII character (binary values go in '-bin' keys, base64-encoded)");
            }
        }
    }

    /// <summary>
    /// Sends and returns at the response headers. An <see cref="HttpClient"/> passed as the invoker would
    /// otherwise buffer the whole response (its default ResponseContentRead), which deadlocks a stream.
    /// </summary>
    public static Task<HttpResponseMessage> SendAsync(HttpMessageInvoker http, HttpRequestMessage request, CancellationToken cancellationToken) =>
        http is HttpClient client
            ? client.SendAsync(request, HttpCompletionOption.ResponseHeadersRead, cancellationToken)
            : http.SendAsync(request, cancellationToken);

    /// <summary>
    /// Checks the response headers. Returns the status of a Trailers-Only response (grpc-status in the
    /// headers; no messages follow), or null when messages and trailers follow.
    /// </summary>
    public static GrpcException? CheckResponseHeaders(HttpResponseMessage response)
    {
        if (response.StatusCode != HttpStatusCode.OK)
        {
            var code = (int)response.StatusCode;
            var detail = $"Bad gRPC response. HTTP status code: {code}";
            if (TryGetHeader(response.Headers, GrpcProtocol.MessageHeader, out var message))
            {
                detail += ". " + GrpcProtocol.DecodeMessage(message);
            }

            return new GrpcException(GrpcProtocol.FromHttpStatus(code), detail);
        }

        if (TryGetHeader(response.Headers, GrpcProtocol.StatusHeader, out var status))
        {
            TryGetHeader(response.Headers, GrpcProtocol.MessageHeader, out var message);
            return new GrpcException(GrpcProtocol.ParseStatus(status), GrpcProtocol.DecodeMessage(message));
        }

        var contentType = response.Content.Headers.ContentType?.MediaType;
        if (!GrpcProtocol.IsGrpcProtoContentType(contentType))
        {
            return new GrpcException(GrpcStatusCode.Internal, $"Bad gRPC response. Invalid content-type value: '{contentType ?? "(none)"}'");
        }

        return null;
    }

    /// <summary>The status from the trailers after the last message (UNKNOWN when the server sent none).</summary>
    public static GrpcException ReadTrailers(HttpResponseMessage response)
    {
        if (!TryGetHeader(response.TrailingHeaders, GrpcProtocol.StatusHeader, out var status))
        {
            return new GrpcException(GrpcStatusCode.Unknown, "Bad gRPC response: the response ended without grpc-status");
        }

        TryGetHeader(response.TrailingHeaders, GrpcProtocol.MessageHeader, out var message);
        return new GrpcException(GrpcProtocol.ParseStatus(status), GrpcProtocol.DecodeMessage(message));
    }

    private static bool TryGetHeader(HttpHeaders headers, string name, out string? value)
    {
        if (headers.NonValidated.TryGetValues(name, out var values))
        {
            foreach (var v in values)
            {
                value = v;
                return true;
            }
        }

        value = null;
        return false;
    }

    /// <summary>Records the final status; the first one wins (a later transport error does not replace it).</summary>
    public GrpcException Complete(GrpcException status)
    {
        Failure ??= status;
        _ended.TrySetResult();
        return Failure;
    }

    /// <summary>Maps a transport or cancellation failure to the gRPC status the caller sees, and records it as final.</summary>
    public GrpcException Translate(Exception exception, string operation) => Complete(Map(exception, operation));

    /// <summary>
    /// Maps a failure without recording it as the call's final status: used by the request side, whose failure
    /// (e.g. the server reset the request stream after answering) must not hide the status in the trailers.
    /// </summary>
    public GrpcException Map(Exception exception, string operation)
    {
        if (exception is GrpcException grpc)
        {
            return grpc;
        }

        if (_deadlineCts?.IsCancellationRequested == true && !_callerToken.IsCancellationRequested)
        {
            return new GrpcException(GrpcStatusCode.DeadlineExceeded, "Deadline Exceeded", exception);
        }

        if (_cts.IsCancellationRequested || exception is OperationCanceledException)
        {
            return new GrpcException(GrpcStatusCode.Cancelled, "Call cancelled", exception);
        }

        // RST_STREAM error codes (RFC 9113 section 7) mapped per PROTOCOL-HTTP2.md.
        for (var e = exception; e is not null; e = e.InnerException)
        {
            if (e is HttpProtocolException protocol)
            {
                var status = protocol.ErrorCode switch
                {
                    0x7 => GrpcStatusCode.Unavailable,        // REFUSED_STREAM
                    0x8 => GrpcStatusCode.Cancelled,          // CANCEL
                    0xB => GrpcStatusCode.ResourceExhausted,  // ENHANCE_YOUR_CALM
                    0xC => GrpcStatusCode.PermissionDenied,   // INADEQUATE_SECURITY
                    _ => GrpcStatusCode.Internal,
                };
                return new GrpcException(status, $"Error {operation}: HTTP/2 stream reset with error code 0x{protocol.ErrorCode:X} ({e.Message})", exception);
            }
        }

        return new GrpcException(GrpcStatusCode.Unavailable, $"Error {operation}: {exception.GetType().Name}: {exception.Message}", exception);
    }

    public void Dispose()
    {
        _cts.Dispose();
        _deadlineCts?.Dispose();
    }
}

using System.Buffers;
using System.IO.Pipelines;
using System.Net;
using System.Net.Http.Headers;
using Google.Protobuf;

namespace Ambient.Core.Grpc;

/// <summary>Per-call options: request metadata (ASCII headers) and a timeout sent as grpc-timeout.</summary>
internal sealed record GrpcCallOptions(IReadOnlyList<KeyValuePair<string, string>>? Metadata = null, TimeSpan? Timeout = null);

/// <summary>
/// A gRPC client over <see cref="HttpMessageInvoker"/> (HTTP/2 only). The caller owns and configures the handler
/// (client certificate, custom root validation, connection pooling) and may share one client across threads.
/// </summary>
internal sealed class GrpcClient
{
    private readonly HttpMessageInvoker _http;
    private readonly Uri _baseAddress;

    public GrpcClient(HttpMessageInvoker http, Uri baseAddress)
    {
        ArgumentNullException.ThrowIfNull(http);
        ArgumentNullException.ThrowIfNull(baseAddress);
        if (!baseAddress.IsAbsoluteUri || (baseAddress.Scheme != Uri.UriSchemeHttp && baseAddress.Scheme != Uri.UriSchemeHttps))
        {
            throw new ArgumentException($"gRPC base address '{baseAddress}' must be an absolute http:// or https:// URI", nameof(baseAddress));
        }

        _http = http;
        _baseAddress = baseAddress;
    }

    public Uri BaseAddress => _baseAddress;

    /// <summary>Largest response message accepted; larger fails with RESOURCE_EXHAUSTED before it is buffered.</summary>
    public int MaxReceiveMessageSize { get; init; } = GrpcServerDefaults.MaxMessageSize;

    /// <summary>Makes a unary call; throws <see cref="GrpcException"/> for any non-OK outcome.</summary>
    public async Task<TResponse> UnaryAsync<TRequest, TResponse>(
        string path, TRequest request, MessageParser<TResponse> parser,
        GrpcCallOptions? options = null, CancellationToken cancellationToken = default)
        where TRequest : class, IMessage<TRequest>
        where TResponse : class, IMessage<TResponse>
    {
        ArgumentNullException.ThrowIfNull(request);
        ArgumentNullException.ThrowIfNull(parser);
        using var call = new GrpcClientCall(options?.Timeout, cancellationToken);
        using var httpRequest = GrpcClientCall.CreateRequest(_baseAddress, path, options, new UnaryContent(request));
        var token = call.Token;
        HttpResponseMessage? response = null;
        PipeReader? reader = null;
        try
        {
            response = await GrpcClientCall.SendAsync(_http, httpRequest, token).ConfigureAwait(false);
            if (GrpcClientCall.CheckResponseHeaders(response) is { } headerStatus)
            {
                throw headerStatus.Status == GrpcStatusCode.OK
                    ? new GrpcException(GrpcStatusCode.Internal, "Bad gRPC response: Trailers-Only OK response carried no message for a unary call")
                    : headerStatus;
            }

            var encoding = ResponseEncoding(response);
            var stream = await response.Content.ReadAsStreamAsync(token).ConfigureAwait(false);
            reader = PipeReader.Create(stream, new StreamPipeReaderOptions(pool: MemoryPool<byte>.Shared, leaveOpen: false));
            var message = await GrpcFraming.ReadMessageAsync(reader, parser, MaxReceiveMessageSize, encoding, "Received", token).ConfigureAwait(false);
            var extra = message is null
                ? null
                : await GrpcFraming.ReadMessageAsync(reader, parser, MaxReceiveMessageSize, encoding, "Received", token).ConfigureAwait(false);

            // The status wins over message-count problems: an error status after a message is still that error.
            var status = GrpcClientCall.ReadTrailers(response);
            if (status.Status != GrpcStatusCode.OK)
            {
                throw status;
            }

            if (message is null || extra is not null)
            {
                throw new GrpcException(GrpcStatusCode.Internal, message is null
                    ? "Bad gRPC response: OK status but no response message"
                    : "Bad gRPC response: more than one response message for a unary call");
            }

            return message;
        }
        catch (Exception ex)
        {
            throw call.Translate(ex, "in unary call " + path);
        }
        finally
        {
            if (reader is not null)
            {
                await reader.CompleteAsync().ConfigureAwait(false);
            }

            response?.Dispose();
        }
    }

    /// <summary>
    /// Starts a bidirectional streaming call. The request headers go out at once; write with
    /// <see cref="GrpcDuplexCall{TRequest, TResponse}.WriteAsync"/> and read with ReadAllAsync concurrently.
    /// </summary>
    public GrpcDuplexCall<TRequest, TResponse> StartDuplex<TRequest, TResponse>(
        string path, MessageParser<TResponse> parser,
        GrpcCallOptions? options = null, CancellationToken cancellationToken = default)
        where TRequest : class, IMessage<TRequest>
        where TResponse : class, IMessage<TResponse>
    {
        ArgumentNullException.ThrowIfNull(parser);
        var call = new GrpcClientCall(options?.Timeout, cancellationToken);
        var content = new GrpcDuplexContent();
        HttpRequestMessage request;
        try
        {
            request = GrpcClientCall.CreateRequest(_baseAddress, path, options, content);
        }
        catch
        {
            call.Dispose();
            throw;
        }

        return new GrpcDuplexCall<TRequest, TResponse>(_http, request, content, call, parser, MaxReceiveMessageSize, path);
    }

    internal static string? ResponseEncoding(HttpResponseMessage response) =>
        response.Headers.NonValidated.TryGetValues(GrpcProtocol.EncodingHeader, out var values) ? values.ToString() : null;

    /// <summary>One framed message as the request body, serialized into a pooled buffer at send time.</summary>
    private sealed class UnaryContent : HttpContent
    {
        private readonly IMessage _message;

        public UnaryContent(IMessage message)
        {
            _message = message;
            Headers.ContentType = new MediaTypeHeaderValue(GrpcProtocol.ContentType);
        }

        protected override Task SerializeToStreamAsync(Stream stream, TransportContext? context) =>
            SerializeToStreamAsync(stream, context, CancellationToken.None);

        protected override async Task SerializeToStreamAsync(Stream stream, TransportContext? context, CancellationToken cancellationToken)
        {
            var buffer = GrpcFraming.RentFramed(_message, out var length);
            try
            {
                await stream.WriteAsync(buffer.AsMemory(0, length), cancellationToken).ConfigureAwait(false);
            }
            finally
            {
                ArrayPool<byte>.Shared.Return(buffer);
            }
        }

        protected override bool TryComputeLength(out long length)
        {
            length = 0;
            return false;
        }
    }
}

using System.Buffers;
using System.IO.Pipelines;
using System.Net;
using System.Net.Http.Headers;
using System.Runtime.CompilerServices;
using Google.Protobuf;

namespace Ambient.Core.Grpc;

/// <summary>
/// The client half of a bidirectional stream. One writer and one reader may run concurrently; concurrent
/// WriteAsync calls are serialized. Dispose cancels the call if it has not ended.
/// </summary>
internal sealed class GrpcDuplexCall<TRequest, TResponse> : IAsyncDisposable
    where TRequest : class, IMessage<TRequest>
    where TResponse : class, IMessage<TResponse>
{
    private readonly HttpRequestMessage _request;
    private readonly GrpcDuplexContent _content;
    private readonly GrpcClientCall _call;
    private readonly MessageParser<TResponse> _parser;
    private readonly int _maxReceiveMessageSize;
    private readonly string _path;
    private readonly Task<HttpResponseMessage> _responseTask;
    private readonly SemaphoreSlim _writeLock = new(1, 1);
    private HttpResponseMessage? _response;
    private PipeReader? _reader;
    private bool _requestCompleted;
    private int _disposed;

    internal GrpcDuplexCall(
        HttpMessageInvoker http, HttpRequestMessage request, GrpcDuplexContent content, GrpcClientCall call,
        MessageParser<TResponse> parser, int maxReceiveMessageSize, string path)
    {
        _request = request;
        _content = content;
        _call = call;
        _parser = parser;
        _maxReceiveMessageSize = maxReceiveMessageSize;
        _path = path;
        _responseTask = SendAsync(http);
    }

    private async Task<HttpResponseMessage> SendAsync(HttpMessageInvoker http)
    {
        try
        {
            return await GrpcClientCall.SendAsync(http, _request, _call.Token).ConfigureAwait(false);
        }
        catch (Exception ex)
        {
            // A call that never got a response must not leave writers waiting for a request stream.
            var status = _call.Translate(ex, "starting gRPC call " + _path);
            _content.Fail(status);
            throw status;
        }
    }

    /// <summary>Frames and sends one request message (waits for HTTP/2 flow control).</summary>
    public async ValueTask WriteAsync(TRequest message, CancellationToken ct = default)
    {
        ArgumentNullException.ThrowIfNull(message);
        ThrowIfDisposed();
        ThrowIfEnded();
        using var linked = ct.CanBeCanceled ? CancellationTokenSource.CreateLinkedTokenSource(ct, _call.Token) : null;
        var token = linked?.Token ?? _call.Token;
        try
        {
            await _writeLock.WaitAsync(token).ConfigureAwait(false);
        }
        catch (OperationCanceledException ex)
        {
            ThrowIfEnded();
            throw _call.Map(ex, "writing to " + _path);
        }

        byte[]? buffer = null;
        try
        {
            if (_requestCompleted)
            {
                throw new InvalidOperationException("The request stream was already completed (CompleteAsync); no more messages can be written.");
            }

            ThrowIfEnded();

            var stream = await _content.GetStreamAsync(token).ConfigureAwait(false);
            buffer = GrpcFraming.RentFramed(message, out var length);
            await stream.WriteAsync(buffer.AsMemory(0, length), token).ConfigureAwait(false);
            await stream.FlushAsync(token).ConfigureAwait(false);
        }
        // InvalidOperationException is our own misuse report; ObjectDisposedException (one of its kind) is the
        // HTTP/2 request stream torn down under us, a transport failure like any other.
        catch (Exception ex) when (ex is not InvalidOperationException or ObjectDisposedException)
        {
            ThrowIfEnded();
            // A server that refuses the call (Trailers-Only, e.g. Unauthenticated) resets the request stream right
            // after its answer: the write fails first, but the answer is the reason, so report its status.
            if (await AnsweredStatusAsync().ConfigureAwait(false) is { Status: not GrpcStatusCode.OK } answered)
            {
                throw answered;
            }

            throw _call.Map(ex, "writing to " + _path);
        }
        finally
        {
            if (buffer is not null)
            {
                ArrayPool<byte>.Shared.Return(buffer);
            }

            _writeLock.Release();
        }
    }

    // How the server ended a call whose request side just broke: the status the reader records from the trailers,
    // or a Trailers-Only answer's. Both arrive before or just after the reset that broke the write: wait briefly.
    // Null if neither came.
    private async ValueTask<GrpcException?> AnsweredStatusAsync()
    {
        try
        {
            var response = await _responseTask.WaitAsync(TimeSpan.FromSeconds(1)).ConfigureAwait(false);
            if (GrpcClientCall.CheckResponseHeaders(response) is { } headerStatus)
            {
                return headerStatus;
            }

            if (_reader is not null)
            {
                await _call.Ended.WaitAsync(TimeSpan.FromSeconds(1)).ConfigureAwait(false);
                return _call.Failure;
            }

            return null;
        }
        catch (Exception ex) when (ex is TimeoutException or GrpcException or OperationCanceledException)
        {
            return null;
        }
    }

    // Writing after the call ended: report how it ended (its error status, or misuse after an OK end).
    private void ThrowIfEnded()
    {
        if (_call.Failure is { } final)
        {
            if (final.Status == GrpcStatusCode.OK)
            {
                throw new InvalidOperationException("The gRPC call has completed; no more messages can be written.");
            }

            throw final;
        }
    }

    private void ThrowIfDisposed()
    {
        if (Volatile.Read(ref _disposed) != 0)
        {
            throw _call.Failure is { Status: not GrpcStatusCode.OK } failure
                ? failure
                : new GrpcException(GrpcStatusCode.Cancelled, "The call was disposed");
        }
    }

    /// <summary>Half-closes the request stream (END_STREAM): tells the server no more messages are coming.</summary>
    public async ValueTask CompleteAsync()
    {
        ThrowIfDisposed();
        await _writeLock.WaitAsync(CancellationToken.None).ConfigureAwait(false);
        try
        {
            _requestCompleted = true;
            _content.Complete();
        }
        finally
        {
            _writeLock.Release();
        }
    }

    /// <summary>
    /// Reads response messages until the server ends the call. Ends normally on grpc-status 0; throws
    /// <see cref="GrpcException"/> otherwise. Call it once.
    /// </summary>
    public async IAsyncEnumerable<TResponse> ReadAllAsync([EnumeratorCancellation] CancellationToken ct = default)
    {
        ThrowIfDisposed();
        using var linked = ct.CanBeCanceled ? CancellationTokenSource.CreateLinkedTokenSource(ct, _call.Token) : null;
        var token = linked?.Token ?? _call.Token;
        if (!await StartReadingAsync(token).ConfigureAwait(false))
        {
            yield break;
        }

        while (await ReadNextAsync(token).ConfigureAwait(false) is { } message)
        {
            yield return message;
        }
    }

    /// <summary>Waits for the response headers; false for a Trailers-Only OK (no messages).</summary>
    private async ValueTask<bool> StartReadingAsync(CancellationToken token)
    {
        try
        {
            if (_reader is not null)
            {
                throw new InvalidOperationException("ReadAllAsync may be enumerated only once per call.");
            }

            var response = await _responseTask.WaitAsync(token).ConfigureAwait(false);
            _response = response;
            if (GrpcClientCall.CheckResponseHeaders(response) is { } headerStatus)
            {
                _content.Fail(headerStatus);
                if (headerStatus.Status == GrpcStatusCode.OK)
                {
                    _call.Complete(headerStatus);
                    return false;
                }

                throw headerStatus;
            }

            var stream = await response.Content.ReadAsStreamAsync(token).ConfigureAwait(false);
            _reader = PipeReader.Create(stream, new StreamPipeReaderOptions(pool: MemoryPool<byte>.Shared, leaveOpen: false));
            return true;
        }
        catch (InvalidOperationException)
        {
            throw;
        }
        catch (Exception ex)
        {
            throw _call.Translate(ex, "reading from " + _path);
        }
    }

    private async ValueTask<TResponse?> ReadNextAsync(CancellationToken token)
    {
        try
        {
            var encoding = GrpcClient.ResponseEncoding(_response!);
            var message = await GrpcFraming.ReadMessageAsync(_reader!, _parser, _maxReceiveMessageSize, encoding, "Received", token).ConfigureAwait(false);
            if (message is not null)
            {
                return message;
            }

            var status = _call.Complete(GrpcClientCall.ReadTrailers(_response!));
            _content.Fail(status);
            if (status.Status != GrpcStatusCode.OK)
            {
                throw status;
            }

            return null;
        }
        catch (Exception ex)
        {
            var status = _call.Translate(ex, "reading from " + _path);
            if (status.Status != GrpcStatusCode.OK)
            {
                // A broken response stream ends the call: stop the request side too.
                _call.Cancel();
            }

            throw status;
        }
    }

    /// <summary>Cancels the call if still running and releases the HTTP/2 stream.</summary>
    public async ValueTask DisposeAsync()
    {
        if (Interlocked.Exchange(ref _disposed, 1) != 0)
        {
            return;
        }

        _call.Cancel();
        _content.Fail(_call.Complete(new GrpcException(GrpcStatusCode.Cancelled, "The call was disposed")));
        try
        {
            using var response = await _responseTask.ConfigureAwait(false);
        }
        catch (GrpcException)
        {
            // Already recorded; disposal never throws.
        }

        if (_reader is not null)
        {
            await _reader.CompleteAsync().ConfigureAwait(false);
        }

        _request.Dispose();
        _call.Dispose();
    }
}

/// <summary>
/// The request body of a streaming call: HttpClient hands us its request stream in SerializeToStreamAsync and
/// we keep it open until the call half-closes (Complete) or ends (Fail).
/// </summary>
internal sealed class GrpcDuplexContent : HttpContent
{
    private readonly TaskCompletionSource<Stream> _stream = new(TaskCreationOptions.RunContinuationsAsynchronously);
    private readonly TaskCompletionSource _done = new(TaskCreationOptions.RunContinuationsAsynchronously);

    public GrpcDuplexContent()
    {
        Headers.ContentType = new MediaTypeHeaderValue(GrpcProtocol.ContentType);
    }

    public Task<Stream> GetStreamAsync(CancellationToken cancellationToken) => _stream.Task.WaitAsync(cancellationToken);

    /// <summary>Ends the request body normally: HttpClient then sends END_STREAM.</summary>
    public void Complete() => _done.TrySetResult();

    /// <summary>Ends the request side because the call is over; pending and later writes see the status.</summary>
    public void Fail(GrpcException status)
    {
        _stream.TrySetException(status);
        _done.TrySetResult();
    }

    protected override Task SerializeToStreamAsync(Stream stream, TransportContext? context) =>
        SerializeToStreamAsync(stream, context, CancellationToken.None);

    protected override async Task SerializeToStreamAsync(Stream stream, TransportContext? context, CancellationToken cancellationToken)
    {
        _stream.TrySetResult(stream);
        await _done.Task.WaitAsync(cancellationToken).ConfigureAwait(false);
    }

    protected override bool TryComputeLength(out long length)
    {
        length = 0;
        return false;
    }
}

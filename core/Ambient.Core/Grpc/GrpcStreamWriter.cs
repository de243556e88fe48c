using System.IO.Pipelines;
using Google.Protobuf;

namespace Ambient.Core.Grpc;

/// <summary>
/// Writes response messages of a streaming call. Safe for concurrent callers: writes are serialized so two
/// frames never interleave (an xDS server pushes from several producers onto one stream).
/// </summary>
internal sealed class GrpcStreamWriter<T> where T : IMessage<T>
{
    private readonly PipeWriter _writer;
    private readonly SemaphoreSlim _lock = new(1, 1);
    private readonly CancellationToken _callToken;
    private bool _completed;

    internal GrpcStreamWriter(PipeWriter writer, CancellationToken callToken)
    {
        _writer = writer;
        _callToken = callToken;
    }

    /// <summary>Frames and sends one message, waiting for HTTP/2 flow control (back-pressure).</summary>
    public async ValueTask WriteAsync(T message, CancellationToken ct = default)
    {
        ArgumentNullException.ThrowIfNull(message);
        using var linked = ct.CanBeCanceled ? CancellationTokenSource.CreateLinkedTokenSource(ct, _callToken) : null;
        var token = linked?.Token ?? _callToken;
        await _lock.WaitAsync(token).ConfigureAwait(false);
        try
        {
            if (_completed)
            {
                throw new InvalidOperationException("The gRPC call has completed; no more messages can be written.");
            }

            GrpcFraming.WriteMessage(_writer, message);
            var result = await _writer.FlushAsync(token).ConfigureAwait(false);
            if (result.IsCanceled || result.IsCompleted)
            {
                // IsCompleted: the client went away and Kestrel stopped reading our output.
                token.ThrowIfCancellationRequested();
                throw new OperationCanceledException("The gRPC call was aborted by the client.", _callToken);
            }
        }
        finally
        {
            _lock.Release();
        }
    }

    /// <summary>Stops further writes once the handler has returned, so trailers are never followed by data.</summary>
    internal async ValueTask CompleteAsync()
    {
        await _lock.WaitAsync(CancellationToken.None).ConfigureAwait(false);
        _completed = true;
        _lock.Release();
    }
}

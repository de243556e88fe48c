using System.Buffers;
using Ambient.Hbone.Http2;

namespace Ambient.Hbone;

/// <summary>The connection's lifecycle: keepalive PINGs (timed by <see cref="Http2KeepAlive"/>), GOAWAY, drain and
/// shutdown. Every path that ends the connection goes through <see cref="Abort"/> once.</summary>
internal sealed partial class Http2Connection
{
    private static readonly TimeSpan GoAwayWriteTimeout = TimeSpan.FromSeconds(1);
    private static readonly TimeSpan LingerTimeout = TimeSpan.FromSeconds(1);

    /// <summary>Sends GOAWAY with <paramref name="errorCode"/>, fails every stream and closes the transport; completes
    /// when the connection is closed. Used for idle reaping and pool disposal (NO_ERROR).</summary>
    public Task CloseAsync(Http2ErrorCode errorCode, string reason)
    {
        Abort(new HboneException($"HBONE connection to {Peer} closed: {reason}", errorCode: errorCode), errorCode);
        return Closed;
    }

    public async ValueTask DisposeAsync()
    {
        await CloseAsync(Http2ErrorCode.NO_ERROR, "disposed").ConfigureAwait(false);
    }

    private void Abort(HboneException reason, Http2ErrorCode? goAwayCode)
    {
        if (Interlocked.Exchange(ref _abortStarted, 1) != 0)
        {
            return;
        }
        List<HboneStream> streams = _streams.Close(reason);
        _flow.Clear();
        foreach (HboneStream stream in streams)
        {
            stream.Fail(reason);
        }
        _ = FinishCloseAsync(reason, goAwayCode);
    }

    private async Task FinishCloseAsync(HboneException reason, Http2ErrorCode? goAwayCode)
    {
        await Task.Yield(); // never run the teardown inline on the caller (it may be the read loop or a writer)
        bool goAwaySent = false;
        if (goAwayCode is Http2ErrorCode code)
        {
            // Best effort: a writer stuck on a full socket must not hold the close up.
            bool locked = false;
            try
            {
                locked = await _writeLock.WaitAsync(GoAwayWriteTimeout).ConfigureAwait(false);
                if (locked)
                {
                    Http2FrameWriter.WriteGoAway(_output, LastAcceptedStreamId, code, code == Http2ErrorCode.NO_ERROR ? default : DebugBytes(reason.Message));
                    using var timeout = new CancellationTokenSource(GoAwayWriteTimeout);
                    await _output.FlushAsync(timeout.Token).ConfigureAwait(false);
                    goAwaySent = true;
                }
            }
            catch (Exception)
            {
                // The transport is already broken; nothing more to tell the peer.
            }
            finally
            {
                if (locked)
                {
                    _writeLock.Release();
                }
            }
        }

        if (goAwaySent && goAwayCode != Http2ErrorCode.NO_ERROR)
        {
            await LingerAsync().ConfigureAwait(false);
        }
        else if (goAwaySent && _role.WaitsForPeerCloseAfterGoAway)
        {
            // A graceful server close: the client closes once it has read our GOAWAY and the last tunnel's end.
            // Closing first, with its late WINDOW_UPDATE or PING unread, would make the kernel send RST and could
            // throw away those last bytes still queued for the client.
            await Task.WhenAny(_readLoop, Task.Delay(LingerTimeout)).ConfigureAwait(false);
        }
        _shutdown.Cancel();
        try
        {
            await _transport.DisposeAsync().ConfigureAwait(false);
        }
        catch (Exception)
        {
            // Disposing a faulted SslStream/socket can throw; it is closed either way.
        }
        try
        {
            await _readLoop.ConfigureAwait(false);
            await _keepAliveLoop.ConfigureAwait(false);
        }
        catch (Exception)
        {
            // Both loops end on their own errors, already folded into the close reason.
        }

        await _writeLock.WaitAsync().ConfigureAwait(false);
        try
        {
            await _output.CompleteAsync().ConfigureAwait(false);
        }
        catch (Exception)
        {
            // Completing flushes nothing useful once the transport is gone.
        }
        finally
        {
            _writeLock.Release();
        }
        _headerBlock.Dispose();
        HboneLog.ConnectionClosed(_logger, Peer, reason.Message);
        _closedTcs.TrySetResult();
    }

    /// <summary>
    /// After an error GOAWAY, read and discard what the peer still sends for a moment before closing: closing a socket
    /// with unread input makes the kernel send RST, which can destroy the GOAWAY (and its error code) before the peer
    /// reads it. Only protocol errors send an error GOAWAY, and they come from the read loop, so it has ended here.
    /// </summary>
    private async Task LingerAsync()
    {
        try
        {
            await _readLoop.ConfigureAwait(false);
        }
        catch (Exception)
        {
            // Its error is the close reason already.
        }
        byte[] scratch = ArrayPool<byte>.Shared.Rent(16 * 1024);
        try
        {
            using var linger = new CancellationTokenSource(LingerTimeout);
            while (await _transport.ReadAsync(scratch, linger.Token).ConfigureAwait(false) > 0)
            {
            }
        }
        catch (Exception)
        {
            // Timeout or a broken transport: either way it is time to close.
        }
        finally
        {
            ArrayPool<byte>.Shared.Return(scratch);
        }
    }

    /// <summary>Sends a PING every <see cref="HboneClientOptions.PingInterval"/>; a PING unanswered for
    /// <see cref="HboneClientOptions.PingTimeout"/> closes the connection (the peer or the path is dead). A role that
    /// closes idle connections (the server) does it here too.</summary>
    private async Task KeepAliveLoopAsync()
    {
        using var timer = new PeriodicTimer(_keepAlive.TickPeriod, _time);
        _keepAlive.Start();
        try
        {
            while (await timer.WaitForNextTickAsync(_shutdown.Token).ConfigureAwait(false))
            {
                if (_role.ClosesWhenIdle && TryBeginIdleClose(_options.IdleTimeout))
                {
                    // The client pools connections for a while; one it left with no tunnel this long is done.
                    _ = CloseAsync(Http2ErrorCode.NO_ERROR, $"idle for {_options.IdleTimeout.TotalMinutes:0.#} min");
                    return;
                }
                switch (_keepAlive.Tick(out ulong ping))
                {
                    case KeepAliveAction.TimedOut:
                        HboneLog.KeepAliveTimeout(_logger, Peer, _keepAlive.Timeout);
                        Abort(new HboneException($"HBONE peer {Peer} did not acknowledge a keepalive PING within {_keepAlive.Timeout}"), goAwayCode: null);
                        return;
                    case KeepAliveAction.SendPing:
                        // Not awaited: a write stuck behind a dead socket must not stop the timeout check above.
                        ObserveInBackground(SendPingAsync(ping, ack: false));
                        break;
                }
            }
        }
        catch (OperationCanceledException)
        {
            // Connection closing.
        }
    }

    private async ValueTask SendPingAsync(ulong data, bool ack)
    {
        await _writeLock.WaitAsync().ConfigureAwait(false);
        try
        {
            if (IsClosed)
            {
                return;
            }
            Http2FrameWriter.WritePing(_output, data, ack);
            await FlushOrAbortAsync().ConfigureAwait(false);
        }
        finally
        {
            _writeLock.Release();
        }
    }

    /// <summary>Runs a control-frame write without awaiting it; its failure already aborted the connection.</summary>
    internal static void ObserveInBackground(ValueTask task)
    {
        if (task.IsCompletedSuccessfully)
        {
            return;
        }
        _ = task.AsTask().ContinueWith(static t => _ = t.Exception, CancellationToken.None,
            TaskContinuationOptions.OnlyOnFaulted | TaskContinuationOptions.ExecuteSynchronously, TaskScheduler.Default);
    }
}

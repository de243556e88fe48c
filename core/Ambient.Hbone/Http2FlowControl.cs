using Ambient.Hbone.Http2;

namespace Ambient.Hbone;

/// <summary>
/// A connection's flow control (RFC 9113 section 5.2, 6.9), in the spirit of Kestrel's Http2OutputFlowControl /
/// InputFlowControl pair: the send windows (the connection's and, through <see cref="HboneStream.SendWindow"/>, each
/// stream's) with the streams waiting for connection window, and the connection receive window with the WINDOW_UPDATE
/// it owes the peer. Send-side state lives under <see cref="Lock"/>; the receive side is lock-free.
/// </summary>
internal sealed class Http2FlowControl
{
    /// <summary>Every window's size until SETTINGS or WINDOW_UPDATE say otherwise.</summary>
    public const int DefaultWindowSize = 65_535;

    private long _connectionSendWindow = DefaultWindowSize;
    private long _peerInitialWindowSize = DefaultWindowSize;
    private readonly List<HboneStream> _connectionWindowWaiters = [];

    private int _connectionReceiveWindow;
    private int _connectionPendingUpdate;
    private readonly int _connectionUpdateThreshold;

    public Http2FlowControl(int connectionReceiveWindow, int streamReceiveWindow)
    {
        _connectionReceiveWindow = connectionReceiveWindow;
        _connectionUpdateThreshold = connectionReceiveWindow / 2;
        StreamUpdateThreshold = streamReceiveWindow / 2;
    }

    /// <summary>Guards the send windows. A new stream is created under it so a concurrent SETTINGS_INITIAL_WINDOW_SIZE
    /// change either sets its initial window or adjusts it, never neither. Taken before the stream table's lock.</summary>
    public object Lock { get; } = new();

    /// <summary>The peer's SETTINGS_INITIAL_WINDOW_SIZE: a new stream's send window. Read under <see cref="Lock"/>.</summary>
    public long PeerInitialWindowSizeLocked => _peerInitialWindowSize;

    /// <summary>Consumed stream bytes are returned to the peer once they reach this (half the stream window).</summary>
    public int StreamUpdateThreshold { get; }

    /// <summary>
    /// How many of <paramref name="wanted"/> bytes <paramref name="stream"/> may send now in one DATA frame: within both
    /// send windows and <paramref name="maxFrameSize"/>, taken from both. Zero means wait for the stream's
    /// <see cref="HboneStream.SendSignal"/>; the stream is then registered for the connection window if that is empty.
    /// </summary>
    public int TryTakeSendWindow(HboneStream stream, int wanted, int maxFrameSize)
    {
        lock (Lock)
        {
            stream.ThrowIfCannotWrite();
            long allowed = Math.Min(Math.Min(stream.SendWindow, _connectionSendWindow), Math.Min(maxFrameSize, wanted));
            if (allowed > 0)
            {
                stream.SendWindow -= allowed;
                _connectionSendWindow -= allowed;
                return (int)allowed;
            }
            if (_connectionSendWindow <= 0 && !stream.WaitingForConnectionWindow)
            {
                stream.WaitingForConnectionWindow = true;
                _connectionWindowWaiters.Add(stream);
            }
            return 0;
        }
    }

    /// <summary>Gives back window taken for a frame that was never written.</summary>
    public void ReturnSendWindow(HboneStream stream, int chunk)
    {
        lock (Lock)
        {
            stream.SendWindow += chunk;
            _connectionSendWindow += chunk;
        }
    }

    /// <summary>A released stream no longer waits for connection window.</summary>
    public void Forget(HboneStream stream)
    {
        lock (Lock)
        {
            if (stream.WaitingForConnectionWindow)
            {
                stream.WaitingForConnectionWindow = false;
                _connectionWindowWaiters.Remove(stream);
            }
        }
    }

    /// <summary>The connection closed: nobody waits any more (the streams were failed).</summary>
    public void Clear()
    {
        lock (Lock)
        {
            _connectionWindowWaiters.Clear();
        }
    }

    /// <summary>WINDOW_UPDATE on stream 0: wakes every stream that waited for connection window.</summary>
    public void OnConnectionWindowUpdate(uint increment)
    {
        lock (Lock)
        {
            _connectionSendWindow += increment;
            if (_connectionSendWindow > Http2Frame.MaxWindowSize)
            {
                throw new Http2ConnectionException(Http2ErrorCode.FLOW_CONTROL_ERROR, "WINDOW_UPDATE pushes the connection send window past 2^31-1");
            }
            foreach (HboneStream waiter in _connectionWindowWaiters)
            {
                waiter.WaitingForConnectionWindow = false;
                waiter.SendSignal.Set();
            }
            _connectionWindowWaiters.Clear();
        }
    }

    /// <summary>WINDOW_UPDATE on an open stream.</summary>
    public void OnStreamWindowUpdate(HboneStream stream, uint increment)
    {
        lock (Lock)
        {
            stream.SendWindow += increment;
            if (stream.SendWindow > Http2Frame.MaxWindowSize)
            {
                throw new Http2StreamException(stream.StreamId, Http2ErrorCode.FLOW_CONTROL_ERROR, "WINDOW_UPDATE pushes the stream send window past 2^31-1");
            }
        }
        stream.SendSignal.Set();
    }

    /// <summary>
    /// RFC 9113 section 6.9.2: a new SETTINGS_INITIAL_WINDOW_SIZE shifts every open stream's send window by the
    /// difference (windows may go negative); one pushed past 2^31-1 is a connection FLOW_CONTROL_ERROR.
    /// <paramref name="streams"/> are the open streams, enumerated under their table's lock by the caller.
    /// </summary>
    public void ApplyPeerInitialWindowSizeLocked(uint value, IEnumerable<HboneStream> streams)
    {
        long delta = value - _peerInitialWindowSize;
        _peerInitialWindowSize = value;
        foreach (HboneStream stream in streams)
        {
            stream.SendWindow += delta;
            if (stream.SendWindow > Http2Frame.MaxWindowSize)
            {
                throw new Http2ConnectionException(Http2ErrorCode.FLOW_CONTROL_ERROR,
                    $"SETTINGS_INITIAL_WINDOW_SIZE {value} pushes stream {stream.StreamId}'s window past 2^31-1");
            }
            if (delta > 0)
            {
                stream.SendSignal.Set();
            }
        }
    }

    /// <summary>DATA of <paramref name="length"/> bytes (padding included) arrived: false when it overran the
    /// connection receive window (a FLOW_CONTROL_ERROR).</summary>
    public bool TryConsumeReceiveWindow(int length) => Interlocked.Add(ref _connectionReceiveWindow, -length) >= 0;

    /// <summary><paramref name="count"/> received bytes were consumed (or will never be): the connection WINDOW_UPDATE
    /// increment to send now, or 0 while less than half the window is owed.</summary>
    public int TakeConnectionWindowUpdate(int count)
    {
        if (Interlocked.Add(ref _connectionPendingUpdate, count) < _connectionUpdateThreshold)
        {
            return 0;
        }
        int pending = Interlocked.Exchange(ref _connectionPendingUpdate, 0);
        Interlocked.Add(ref _connectionReceiveWindow, pending);
        return pending;
    }
}

using System.Diagnostics;

namespace Ambient.Hbone;

/// <summary>
/// The streams of one connection and the state that decides whether it takes new ones: open streams by id, the slot
/// count (a client takes its slot before the stream id exists), the peer's concurrency limit, the going-away and
/// closed flags with the close reason, and when a stream last opened or closed (idle reaping). One lock guards it
/// all; flow control's lock, when both are needed, is taken first.
/// </summary>
internal sealed class Http2StreamTable(TimeProvider time)
{
    private readonly Dictionary<int, HboneStream> _streams = [];
    private int _active;
    private int _peerMaxConcurrentStreams = int.MaxValue;
    private bool _goingAway;
    private bool _closed;
    private bool _sentGoAway;
    private bool _peerSentGoAway;
    private long _lastActivityTimestamp = time.GetTimestamp();

    /// <summary>Held to enumerate <see cref="OpenStreamsLocked"/> or to use the <c>...Locked</c> members.</summary>
    public object Lock { get; } = new();

    /// <summary>The open streams; only under <see cref="Lock"/>.</summary>
    public Dictionary<int, HboneStream>.ValueCollection OpenStreamsLocked => _streams.Values;

    /// <summary>Slots taken: reserved, opening or open streams.</summary>
    public int Active => Volatile.Read(ref _active);

    /// <summary>The peer's SETTINGS_MAX_CONCURRENT_STREAMS (unlimited until it says).</summary>
    public int PeerMaxConcurrentStreams
    {
        get => Volatile.Read(ref _peerMaxConcurrentStreams);
        set => Volatile.Write(ref _peerMaxConcurrentStreams, value);
    }

    public bool IsGoingAway
    {
        get { lock (Lock) { return _goingAway || _closed; } }
    }

    public bool IsClosed
    {
        get { lock (Lock) { return _closed; } }
    }

    public bool IsClosedLocked => _closed;

    /// <summary>Why the connection closed, once it has.</summary>
    public Exception? CloseReason { get; private set; }

    /// <summary>When a stream last opened or closed (a <see cref="TimeProvider"/> timestamp).</summary>
    public long LastActivityTimestamp => Interlocked.Read(ref _lastActivityTimestamp);

    /// <summary>Takes a slot if the connection takes new streams and fewer than <paramref name="limit"/> are taken.</summary>
    public bool TryReserve(int limit)
    {
        lock (Lock)
        {
            if (_closed || _goingAway || _active >= limit)
            {
                return false;
            }
            _active++;
            TouchActivity();
            return true;
        }
    }

    /// <summary>For idle reaping: atomically stops new streams if there are none (so a racing reservation cannot win).</summary>
    public bool TryBeginIdleClose(TimeSpan idleTimeout)
    {
        lock (Lock)
        {
            if (_closed || _active != 0 || time.GetElapsedTime(LastActivityTimestamp) < idleTimeout)
            {
                return false;
            }
            _goingAway = true;
            return true;
        }
    }

    /// <summary>No new streams from now on (stream ids ran out); the open ones finish.</summary>
    public void StopNewStreams()
    {
        lock (Lock)
        {
            _goingAway = true;
        }
    }

    public HboneStream? Find(int streamId)
    {
        lock (Lock)
        {
            return _streams.GetValueOrDefault(streamId);
        }
    }

    /// <summary>Registers a stream on a slot already taken. Call under <see cref="Lock"/>; false when the connection closed.</summary>
    public bool TryAddReservedLocked(HboneStream stream)
    {
        if (_closed)
        {
            return false;
        }
        _streams.Add(stream.StreamId, stream);
        return true;
    }

    /// <summary>Why a stream the peer opens cannot be taken on now (null when it can). Call under <see cref="Lock"/>.</summary>
    public string? AcceptRefusalLocked(int limit) =>
        _goingAway ? "the connection is going away"
        : _active >= limit ? $"the limit of {limit} concurrent streams is reached"
        : null;

    /// <summary>Registers a stream the peer opened, taking a slot. Call under <see cref="Lock"/> after
    /// <see cref="AcceptRefusalLocked"/> said yes.</summary>
    public void AddAcceptedLocked(HboneStream stream)
    {
        _streams.Add(stream.StreamId, stream);
        _active++;
        TouchActivity();
    }

    /// <summary>Forgets the stream and frees its slot; true when that drained a connection after a GOAWAY (close it).</summary>
    public bool Remove(HboneStream stream)
    {
        lock (Lock)
        {
            _streams.Remove(stream.StreamId);
            return ReleaseSlotLocked();
        }
    }

    /// <summary>Frees a slot that never got a stream; true when that drained a connection after a GOAWAY.</summary>
    public bool ReleaseSlot()
    {
        lock (Lock)
        {
            return ReleaseSlotLocked();
        }
    }

    /// <summary>Marks the connection closed (once) and hands back the streams that were open, now forgotten.</summary>
    public List<HboneStream> Close(Exception reason)
    {
        lock (Lock)
        {
            CloseReason = reason;
            _closed = true;
            var streams = new List<HboneStream>(_streams.Values);
            _streams.Clear();
            return streams;
        }
    }

    /// <summary>We send GOAWAY: no new streams, and the last one to end closes the connection. False when it is
    /// already closed; <paramref name="idle"/> says no stream is open.</summary>
    public bool BeginDrain(out bool idle)
    {
        lock (Lock)
        {
            idle = _active == 0;
            if (_closed)
            {
                return false;
            }
            // Both at once: a stream that ends before the GOAWAY is on the wire must still close a drained connection.
            _goingAway = true;
            _sentGoAway = true;
            return true;
        }
    }

    /// <summary>The peer sent GOAWAY: no new streams, the last one to end closes the connection. Call under
    /// <see cref="Lock"/>; true when none is open (close now).</summary>
    public bool OnPeerGoAwayLocked()
    {
        _goingAway = true;
        _peerSentGoAway = true;
        return _active == 0;
    }

    private bool ReleaseSlotLocked()
    {
        _active--;
        Debug.Assert(_active >= 0);
        TouchActivity();
        // A client that is merely idle-reaped (_goingAway alone) closes itself; after a GOAWAY either way, the last
        // stream to end closes the connection.
        return _goingAway && (_peerSentGoAway || _sentGoAway) && _active == 0 && !_closed;
    }

    private void TouchActivity() => Interlocked.Exchange(ref _lastActivityTimestamp, time.GetTimestamp());
}

namespace Ambient.Hbone;

/// <summary>What the keepalive timer should do on this tick.</summary>
internal enum KeepAliveAction
{
    None,
    SendPing,
    TimedOut,
}

/// <summary>
/// Keepalive PING bookkeeping (Kestrel's Http2KeepAlive in spirit): a PING every <c>interval</c> with at most one
/// outstanding; one unacknowledged for <c>timeout</c> means the peer or the path is dead. The connection's timer
/// loop asks <see cref="Tick"/> and acts; the read loop reports acknowledgements.
/// </summary>
internal sealed class Http2KeepAlive
{
    private readonly object _lock = new();
    private readonly TimeProvider _time;
    private ulong _counter;
    private ulong _outstanding;
    private long _sentTimestamp;
    private long _lastPingTimestamp;

    public Http2KeepAlive(TimeSpan interval, TimeSpan timeout, TimeProvider time)
    {
        Interval = interval;
        Timeout = timeout;
        _time = time;
        _lastPingTimestamp = time.GetTimestamp();
    }

    public TimeSpan Interval { get; }

    public TimeSpan Timeout { get; }

    /// <summary>A quarter of the shorter of the two periods (at least 5 ms): late by at most that much.</summary>
    public TimeSpan TickPeriod => TimeSpan.FromTicks(Math.Max(Math.Min(Interval.Ticks, Timeout.Ticks) / 4, TimeSpan.TicksPerMillisecond * 5));

    /// <summary>The timer starts now: the first PING is due one interval later.</summary>
    public void Start()
    {
        lock (_lock)
        {
            _lastPingTimestamp = _time.GetTimestamp();
        }
    }

    /// <summary>On <see cref="KeepAliveAction.SendPing"/>, <paramref name="pingData"/> is the PING's payload, already
    /// counted as outstanding.</summary>
    public KeepAliveAction Tick(out ulong pingData)
    {
        pingData = 0;
        lock (_lock)
        {
            if (_outstanding != 0)
            {
                return _time.GetElapsedTime(_sentTimestamp) >= Timeout ? KeepAliveAction.TimedOut : KeepAliveAction.None;
            }
            if (_time.GetElapsedTime(_lastPingTimestamp) < Interval)
            {
                return KeepAliveAction.None;
            }
            pingData = ++_counter;
            _outstanding = pingData;
            _sentTimestamp = _lastPingTimestamp = _time.GetTimestamp();
            return KeepAliveAction.SendPing;
        }
    }

    /// <summary>A PING ACK arrived; only the outstanding PING's payload counts.</summary>
    public void OnPingAck(ulong data)
    {
        lock (_lock)
        {
            if (_outstanding == data)
            {
                _outstanding = 0;
            }
        }
    }
}

using Ambient.Hbone.Http2;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;

namespace Ambient.Hbone;

/// <summary>One pooled connection as shown by config_dump.</summary>
internal sealed record HboneConnectionInfo(string Peer, int ActiveStreams, int MaxConcurrentStreams, TimeSpan Age, bool IsGoingAway);

/// <summary>The connections of one pool key.</summary>
internal sealed record HbonePoolEntryInfo(HbonePoolKey Key, IReadOnlyList<HboneConnectionInfo> Connections);

/// <summary>
/// HBONE connection pool (Istio ztunnel's HBONE): one mTLS HTTP/2 connection per <see cref="HbonePoolKey"/> multiplexing
/// up to <see cref="HboneClientOptions.MaxStreamsPerConnection"/> tunnels. A new connection is dialed only when every
/// existing one for the key is full or going away, and concurrent callers share that one dial (no thundering herd).
/// Connections with no streams for <see cref="HboneClientOptions.IdleTimeout"/> are closed; dead ones are dropped.
/// </summary>
internal sealed class HboneConnectionPool : IAsyncDisposable
{
    // How many times one OpenAsync may wait for a fresh connection before giving up (each wait is one shared dial).
    private const int MaxDialRounds = 32;
    private const int MaxRetryableAttempts = 3;

    private readonly IHboneConnector _connector;
    private readonly HboneClientOptions _options;
    private readonly ILogger _logger;
    private readonly TimeProvider _time;
    private readonly object _lock = new();
    private readonly Dictionary<HbonePoolKey, Entry> _entries = [];
    private readonly CancellationTokenSource _disposing = new();
    private readonly Task _reaper;
    private bool _disposed;

    public HboneConnectionPool(IHboneTlsProvider tls, HboneClientOptions? options = null, ILoggerFactory? loggerFactory = null, TimeProvider? timeProvider = null)
        : this(new HboneConnector(tls, options ?? new HboneClientOptions(), loggerFactory, timeProvider), options, loggerFactory, timeProvider)
    {
    }

    public HboneConnectionPool(IHboneConnector connector, HboneClientOptions? options = null, ILoggerFactory? loggerFactory = null, TimeProvider? timeProvider = null)
    {
        ArgumentNullException.ThrowIfNull(connector);
        _connector = connector;
        _options = options ?? new HboneClientOptions();
        _options.Validate();
        _logger = (loggerFactory ?? NullLoggerFactory.Instance).CreateLogger<HboneConnectionPool>();
        _time = timeProvider ?? TimeProvider.System;
        _reaper = Task.Run(ReapIdleLoopAsync);
    }

    /// <summary>Total open connections across all keys.</summary>
    public int ConnectionCount
    {
        get
        {
            lock (_lock)
            {
                int count = 0;
                foreach (Entry entry in _entries.Values)
                {
                    count += entry.Connections.Count;
                }
                return count;
            }
        }
    }

    /// <summary>Opens a CONNECT tunnel to <paramref name="authority"/> over a pooled connection for <paramref name="key"/>.
    /// Throws <see cref="HboneConnectException"/> for a non-200 answer and <see cref="HboneException"/> for transport
    /// failures (dial, TLS identity mismatch, resets). Streams the peer provably did not process are retried.</summary>
    public async Task<HboneStream> OpenAsync(HbonePoolKey key, string authority, IReadOnlyList<(string Name, string Value)>? headers, CancellationToken cancellationToken)
    {
        int attempts = 0;
        for (int round = 0; ; round++)
        {
            Http2Connection? connection = null;
            Task<Http2Connection>? dial = null;
            lock (_lock)
            {
                ObjectDisposedException.ThrowIf(_disposed, this);
                if (!_entries.TryGetValue(key, out Entry? entry))
                {
                    entry = new Entry();
                    _entries.Add(key, entry);
                }
                foreach (Http2Connection candidate in entry.Connections)
                {
                    if (candidate.TryReserveStream())
                    {
                        connection = candidate;
                        break;
                    }
                }
                if (connection is null)
                {
                    if (round >= MaxDialRounds)
                    {
                        throw new HboneException($"HBONE pool {key}: no stream slot after {MaxDialRounds} dials", isRetryable: true);
                    }
                    dial = entry.PendingDial ??= Task.Run(() => DialAsync(key, entry));
                }
            }

            if (connection is null)
            {
                await dial!.WaitAsync(cancellationToken).ConfigureAwait(false);
                continue;
            }
            try
            {
                return await connection.OpenReservedConnectAsync(authority, headers, cancellationToken).ConfigureAwait(false);
            }
            catch (HboneException ex) when (ex.IsRetryable && ++attempts < MaxRetryableAttempts && !cancellationToken.IsCancellationRequested)
            {
                // GOAWAY above our stream or REFUSED_STREAM: the peer did nothing, so another connection may serve it.
            }
        }
    }

    private async Task<Http2Connection> DialAsync(HbonePoolKey key, Entry entry)
    {
        Http2Connection connection;
        try
        {
            connection = await _connector.ConnectAsync(key, _disposing.Token).ConfigureAwait(false);
        }
        catch (Exception)
        {
            lock (_lock)
            {
                entry.PendingDial = null;
                RemoveEntryIfEmptyLocked(key, entry);
            }
            throw;
        }

        bool disposed;
        lock (_lock)
        {
            entry.PendingDial = null;
            disposed = _disposed;
            if (!disposed)
            {
                entry.Connections.Add(connection);
            }
        }
        if (disposed)
        {
            await connection.CloseAsync(Http2ErrorCode.NO_ERROR, "pool disposed").ConfigureAwait(false);
            throw new ObjectDisposedException(nameof(HboneConnectionPool));
        }
        _ = connection.Closed.ContinueWith(_ => Remove(key, entry, connection), CancellationToken.None,
            TaskContinuationOptions.ExecuteSynchronously, TaskScheduler.Default);
        return connection;
    }

    private void Remove(HbonePoolKey key, Entry entry, Http2Connection connection)
    {
        lock (_lock)
        {
            entry.Connections.Remove(connection);
            RemoveEntryIfEmptyLocked(key, entry);
        }
    }

    private void RemoveEntryIfEmptyLocked(HbonePoolKey key, Entry entry)
    {
        if (entry.Connections.Count == 0 && entry.PendingDial is null && _entries.TryGetValue(key, out Entry? current) && current == entry)
        {
            _entries.Remove(key);
        }
    }

    /// <summary>Point-in-time view for config_dump: connections per key with stream counts and ages.</summary>
    public IReadOnlyList<HbonePoolEntryInfo> Snapshot()
    {
        lock (_lock)
        {
            var result = new List<HbonePoolEntryInfo>(_entries.Count);
            foreach ((HbonePoolKey key, Entry entry) in _entries)
            {
                var connections = new List<HboneConnectionInfo>(entry.Connections.Count);
                foreach (Http2Connection c in entry.Connections)
                {
                    connections.Add(new HboneConnectionInfo(c.Peer, c.ActiveStreams, c.MaxConcurrentStreams,
                        _time.GetElapsedTime(c.CreatedTimestamp), c.IsGoingAway));
                }
                result.Add(new HbonePoolEntryInfo(key, connections));
            }
            return result;
        }
    }

    private async Task ReapIdleLoopAsync()
    {
        long periodTicks = Math.Clamp(_options.IdleTimeout.Ticks / 4, TimeSpan.TicksPerMillisecond * 10, TimeSpan.TicksPerSecond * 30);
        using var timer = new PeriodicTimer(TimeSpan.FromTicks(periodTicks), _time);
        try
        {
            while (await timer.WaitForNextTickAsync(_disposing.Token).ConfigureAwait(false))
            {
                List<Http2Connection>? idle = null;
                lock (_lock)
                {
                    foreach (Entry entry in _entries.Values)
                    {
                        foreach (Http2Connection connection in entry.Connections)
                        {
                            if (connection.TryBeginIdleClose(_options.IdleTimeout))
                            {
                                (idle ??= []).Add(connection);
                            }
                        }
                    }
                }
                if (idle is null)
                {
                    continue;
                }
                foreach (Http2Connection connection in idle)
                {
                    HboneLog.IdleClosed(_logger, connection.Peer, _options.IdleTimeout);
                    // Removal from the pool happens through the Closed continuation.
                    _ = connection.CloseAsync(Http2ErrorCode.NO_ERROR, $"idle for {_options.IdleTimeout}");
                }
            }
        }
        catch (OperationCanceledException)
        {
            // Pool disposed.
        }
    }

    /// <summary>Closes every connection (GOAWAY NO_ERROR); open tunnels fail. Pending dials are cancelled.</summary>
    public async ValueTask DisposeAsync()
    {
        List<Http2Connection> connections = [];
        List<Task> dials = [];
        lock (_lock)
        {
            if (_disposed)
            {
                return;
            }
            _disposed = true;
            foreach (Entry entry in _entries.Values)
            {
                connections.AddRange(entry.Connections);
                if (entry.PendingDial is not null)
                {
                    dials.Add(entry.PendingDial);
                }
            }
        }
        _disposing.Cancel();
        var closing = new List<Task>(connections.Count + dials.Count + 1);
        foreach (Http2Connection connection in connections)
        {
            closing.Add(connection.CloseAsync(Http2ErrorCode.NO_ERROR, "pool disposed"));
        }
        closing.AddRange(dials);
        closing.Add(_reaper);
        try
        {
            await Task.WhenAll(closing).ConfigureAwait(false);
        }
        catch (Exception)
        {
            // Cancelled dials fault; the connections they made (if any) are closed by DialAsync.
        }
        lock (_lock)
        {
            // The Closed continuations remove connections too, but asynchronously; the pool is empty once disposed.
            _entries.Clear();
        }
        _disposing.Dispose();
    }

    private sealed class Entry
    {
        public List<Http2Connection> Connections { get; } = [];

        public Task<Http2Connection>? PendingDial { get; set; }
    }
}

using System.Collections.Concurrent;
using System.Globalization;
using System.Text;
using Microsoft.Extensions.Logging.Abstractions;
using Microsoft.Extensions.Logging.Console;

namespace Ambient.Dataplane.Hosting;

/// <summary>
/// A proxy's console logs (the access log line of every request among them), formatted by the console logger's own
/// formatter, so every line reads as before, but written in batches: the line is formatted and UTF-8 encoded on the
/// logging thread and appended to a buffer; one writer thread sends everything buffered in one write. A request
/// never waits for stdout (the console logger blocks the caller once 2500 lines are queued, and a reader of an HBONE
/// tunnel may be running on a connection's read loop), and a busy proxy makes one write and one thread wake-up per
/// batch instead of per line. Lines keep their order; what is still buffered is written on dispose.
/// <para>Only a stdout nobody reads can lose lines: past <see cref="MaxPendingBytes"/> buffered, new lines are
/// counted instead of kept, and a line saying how many were dropped is written once stdout moves again.</para>
/// </summary>
internal sealed class BatchedConsoleLoggerProvider : ILoggerProvider, ISupportExternalScope
{
    internal const int MaxPendingBytes = 4 * 1024 * 1024;

    // After the first line of a burst wakes the writer, it waits this long so the lines logged meanwhile share the
    // write: a bounded delay on log lines, in exchange for a fraction of the wake-ups and writes under load.
    private static readonly TimeSpan GatherDelay = TimeSpan.FromMilliseconds(10);
    private static readonly TimeSpan StopTimeout = TimeSpan.FromSeconds(2);

    [ThreadStatic] private static StringWriter? t_text;
    [ThreadStatic] private static byte[]? t_bytes;

    private readonly ConsoleFormatter _formatter;
    private readonly Stream _output;
    private readonly ConcurrentDictionary<string, BatchedConsoleLogger> _loggers = new(StringComparer.Ordinal);
    private readonly Thread _writer;

    // Under _lock: the lines not yet taken by a write, and what was dropped since the last write.
    private readonly object _lock = new();
    private byte[] _pending = new byte[16 * 1024];
    private int _pendingLength;
    private long _dropped;
    private bool _stopping;

    // Held while a batch is written (by the writer thread or Flush), so batches reach stdout in order.
    private readonly object _writeLock = new();
    private byte[] _spare = new byte[16 * 1024];
    private bool _outputBroken;

    private IExternalScopeProvider? _scopes;

    public BatchedConsoleLoggerProvider(ConsoleFormatter formatter, Stream output)
    {
        _formatter = formatter;
        _output = output;
        _writer = new Thread(WriteLoop) { IsBackground = true, Name = "Console logger batch writer" };
        _writer.Start();
    }

    public ILogger CreateLogger(string categoryName) =>
        _loggers.GetOrAdd(categoryName, static (name, provider) => new BatchedConsoleLogger(name, provider), this);

    public void SetScopeProvider(IExternalScopeProvider scopeProvider) => _scopes = scopeProvider;

    /// <summary>Writes what is buffered now, on the calling thread (before a line written to stdout another way).</summary>
    public void Flush() => WriteBatch();

    public void Dispose()
    {
        lock (_lock)
        {
            if (_stopping)
            {
                return;
            }
            _stopping = true;
            Monitor.Pulse(_lock);
        }
        // Bounded: a stdout nobody reads must not keep the process from exiting.
        _writer.Join(StopTimeout);
    }

    private void Log<TState>(string category, LogLevel level, EventId eventId, TState state, Exception? exception, Func<TState, Exception?, string> formatter)
    {
        StringWriter text = t_text ??= new StringWriter(CultureInfo.CurrentCulture);
        StringBuilder builder = text.GetStringBuilder();
        try
        {
            _formatter.Write(new LogEntry<TState>(level, category, eventId, state, exception, formatter), _scopes, text);
            if (builder.Length > 0)
            {
                Append(builder);
            }
        }
        finally
        {
            builder.Clear();
            if (builder.Capacity > 1024)
            {
                builder.Capacity = 1024;
            }
        }
    }

    private void Append(StringBuilder line)
    {
        // Encoded outside the lock, into this thread's scratch buffer; only the copy happens under it.
        int max = Encoding.UTF8.GetMaxByteCount(line.Length);
        byte[] bytes = t_bytes is { } scratch && scratch.Length >= max ? scratch : (t_bytes = new byte[Math.Max(max, 1024)]);
        int length = 0;
        foreach (ReadOnlyMemory<char> chunk in line.GetChunks())
        {
            length += Encoding.UTF8.GetBytes(chunk.Span, bytes.AsSpan(length));
        }
        if (bytes.Length > 64 * 1024)
        {
            t_bytes = null; // one huge line (an exception with a long stack) does not pin its buffer on this thread
        }

        bool afterDispose;
        lock (_lock)
        {
            afterDispose = _stopping;
            if (_pendingLength + length > MaxPendingBytes)
            {
                _dropped++;
                return;
            }
            if (_pendingLength + length > _pending.Length)
            {
                Array.Resize(ref _pending, Math.Max(_pending.Length * 2, _pendingLength + length));
            }
            bytes.AsSpan(0, length).CopyTo(_pending.AsSpan(_pendingLength));
            bool wasEmpty = _pendingLength == 0;
            _pendingLength += length;
            if (wasEmpty)
            {
                Monitor.Pulse(_lock);
            }
        }
        if (afterDispose)
        {
            // The writer thread is gone (a task still logging while the process exits): written here, as the console
            // logger does after its own dispose.
            WriteBatch();
        }
    }

    private void WriteLoop()
    {
        while (true)
        {
            bool stopping;
            lock (_lock)
            {
                while (_pendingLength == 0 && !_stopping)
                {
                    Monitor.Wait(_lock);
                }
                stopping = _stopping;
            }
            if (!stopping)
            {
                Thread.Sleep(GatherDelay);
            }
            WriteBatch();
            if (stopping)
            {
                return;
            }
        }
    }

    /// <summary>Takes everything buffered (swapping buffers) and writes it in one write.</summary>
    private void WriteBatch()
    {
        lock (_writeLock)
        {
            byte[] batch;
            int length;
            long dropped;
            lock (_lock)
            {
                batch = _pending;
                length = _pendingLength;
                dropped = _dropped;
                _pending = _spare;
                _pendingLength = 0;
                _dropped = 0;
            }
            try
            {
                if (_outputBroken || (length == 0 && dropped == 0))
                {
                    return;
                }
                _output.Write(batch, 0, length);
                if (dropped > 0)
                {
                    // The lines kept came before the ones dropped.
                    _output.Write(Encoding.UTF8.GetBytes(
                        $"{dropped} log lines were dropped: stdout was not read while {MaxPendingBytes / (1024 * 1024)} MiB of lines waited{Environment.NewLine}"));
                }
                _output.Flush();
            }
            catch (Exception ex) when (ex is IOException or ObjectDisposedException)
            {
                // stdout is gone (its reader exited): logs have nowhere to go, and the proxy goes on serving.
                _outputBroken = true;
            }
            finally
            {
                // A buffer grown by a burst is not kept for good.
                _spare = batch.Length > 1024 * 1024 ? new byte[16 * 1024] : batch;
            }
        }
    }

    private sealed class BatchedConsoleLogger(string category, BatchedConsoleLoggerProvider provider) : ILogger
    {
        public IDisposable? BeginScope<TState>(TState state) where TState : notnull => provider._scopes?.Push(state) ?? NullScope.Instance;

        // The factory applies the level filters; this sink takes whatever reaches it.
        public bool IsEnabled(LogLevel logLevel) => logLevel != LogLevel.None;

        public void Log<TState>(LogLevel logLevel, EventId eventId, TState state, Exception? exception, Func<TState, Exception?, string> formatter)
        {
            if (IsEnabled(logLevel))
            {
                provider.Log(category, logLevel, eventId, state, exception, formatter);
            }
        }
    }

    private sealed class NullScope : IDisposable
    {
        public static readonly NullScope Instance = new();

        public void Dispose()
        {
        }
    }
}

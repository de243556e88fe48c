using System.Collections.Concurrent;
using Microsoft.Extensions.Logging;

namespace Ambient.TestCommon;

/// <summary>One log record kept by <see cref="CapturedLogs"/>.</summary>
public sealed record CapturedLogEntry(string Category, LogLevel Level, EventId EventId, string Message, Exception? Exception);

/// <summary>Log records of an in-process server, so tests can assert that errors were (or were not) logged.</summary>
public sealed class CapturedLogs
{
    private readonly ConcurrentQueue<CapturedLogEntry> _entries = new();

    public IReadOnlyList<CapturedLogEntry> Entries => _entries.ToArray();

    internal void Add(CapturedLogEntry entry) => _entries.Enqueue(entry);

    /// <summary>Entries at <paramref name="level"/> or above.</summary>
    public IReadOnlyList<CapturedLogEntry> AtLeast(LogLevel level)
    {
        var result = new List<CapturedLogEntry>();
        foreach (var entry in _entries)
        {
            if (entry.Level >= level)
            {
                result.Add(entry);
            }
        }

        return result;
    }
}

public sealed class CapturedLogsProvider : ILoggerProvider
{
    private readonly CapturedLogs _logs;
    private readonly LogLevel _minimum;

    public CapturedLogsProvider(CapturedLogs logs, LogLevel minimum)
    {
        _logs = logs;
        _minimum = minimum;
    }

    public ILogger CreateLogger(string categoryName) => new Logger(categoryName, _logs, _minimum);

    public void Dispose()
    {
    }

    private sealed class Logger(string category, CapturedLogs logs, LogLevel minimum) : ILogger
    {
        public IDisposable? BeginScope<TState>(TState state) where TState : notnull => null;

        public bool IsEnabled(LogLevel logLevel) => logLevel >= minimum && logLevel != LogLevel.None;

        public void Log<TState>(LogLevel logLevel, EventId eventId, TState state, Exception? exception, Func<TState, Exception?, string> formatter)
        {
            if (IsEnabled(logLevel))
            {
                logs.Add(new CapturedLogEntry(category, logLevel, eventId, formatter(state, exception), exception));
            }
        }
    }
}

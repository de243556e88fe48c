using System.Collections.Concurrent;
using Microsoft.Extensions.Logging;

namespace Ambient.TestCommon;

/// <summary>One log record kept by <see cref="ListLogger"/>.</summary>
public sealed record CapturedLogEntry(string Category, LogLevel Level, EventId EventId, string Message, Exception? Exception);

/// <summary>
/// Keeps every log record (formatted) so a test can assert what was, or was not, logged. One instance is a logger
/// (category "") for code that takes an <see cref="ILogger"/>, and a provider for a logger factory or host: the
/// loggers it creates all add to the same list. <see cref="ListLogger{T}"/> is the typed logger. Thread-safe.
/// </summary>
public class ListLogger : ILogger, ILoggerProvider
{
    private readonly ConcurrentQueue<CapturedLogEntry> _entries = new();
    private readonly LogLevel _minimum;
    private readonly string _category;

    /// <param name="minimum">Records below this level are not kept (and <see cref="ILogger.IsEnabled"/> says so).</param>
    public ListLogger(LogLevel minimum = LogLevel.Trace)
        : this("", minimum)
    {
    }

    private protected ListLogger(string category, LogLevel minimum)
    {
        _category = category;
        _minimum = minimum;
    }

    /// <summary>A snapshot of the records so far, oldest first.</summary>
    public IReadOnlyList<CapturedLogEntry> Entries => _entries.ToArray();

    /// <summary>Records at <paramref name="level"/> or above.</summary>
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

    /// <summary>The messages at <paramref name="atLeast"/> or above that contain <paramref name="fragment"/>.</summary>
    public IReadOnlyList<string> Matching(string fragment, LogLevel atLeast = LogLevel.Trace)
    {
        var result = new List<string>();
        foreach (var entry in _entries)
        {
            if (entry.Level >= atLeast && entry.Message.Contains(fragment, StringComparison.Ordinal))
            {
                result.Add(entry.Message);
            }
        }
        return result;
    }

    /// <summary>How many messages <paramref name="match"/> accepts.</summary>
    public int Count(Func<string, bool> match)
    {
        var count = 0;
        foreach (var entry in _entries)
        {
            if (match(entry.Message))
            {
                count++;
            }
        }
        return count;
    }

    /// <summary>Whether an event of this name (a [LoggerMessage] method's name) was logged.</summary>
    public bool HasEvent(string eventName)
    {
        foreach (var entry in _entries)
        {
            if (entry.EventId.Name == eventName)
            {
                return true;
            }
        }
        return false;
    }

    public IDisposable? BeginScope<TState>(TState state) where TState : notnull => null;

    public bool IsEnabled(LogLevel logLevel) => logLevel >= _minimum && logLevel != LogLevel.None;

    public void Log<TState>(LogLevel logLevel, EventId eventId, TState state, Exception? exception, Func<TState, Exception?, string> formatter)
        => Add(_category, logLevel, eventId, state, exception, formatter);

    public ILogger CreateLogger(string categoryName) => new CategoryLogger(this, categoryName);

    // The list outlives the factory or host that disposes its providers: tests read it after shutdown.
    public void Dispose()
    {
    }

    private void Add<TState>(string category, LogLevel logLevel, EventId eventId, TState state, Exception? exception, Func<TState, Exception?, string> formatter)
    {
        if (IsEnabled(logLevel))
        {
            _entries.Enqueue(new CapturedLogEntry(category, logLevel, eventId, formatter(state, exception), exception));
        }
    }

    private sealed class CategoryLogger(ListLogger owner, string category) : ILogger
    {
        public IDisposable? BeginScope<TState>(TState state) where TState : notnull => null;

        public bool IsEnabled(LogLevel logLevel) => owner.IsEnabled(logLevel);

        public void Log<TState>(LogLevel logLevel, EventId eventId, TState state, Exception? exception, Func<TState, Exception?, string> formatter)
            => owner.Add(category, logLevel, eventId, state, exception, formatter);
    }
}

/// <summary>A <see cref="ListLogger"/> for code that takes an <see cref="ILogger{TCategoryName}"/>.</summary>
public sealed class ListLogger<T> : ListLogger, ILogger<T>
{
    public ListLogger(LogLevel minimum = LogLevel.Trace)
        : base(typeof(T).FullName ?? typeof(T).Name, minimum)
    {
    }
}

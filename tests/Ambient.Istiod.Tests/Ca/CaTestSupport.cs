using Ambient.Core.Identity;
using Ambient.Istiod.Ca;
using Microsoft.Extensions.Logging;

namespace Ambient.Istiod.Tests.Ca;

/// <summary>A clock the test moves by hand.</summary>
internal sealed class ManualTime(DateTimeOffset now) : TimeProvider
{
    public DateTimeOffset Now { get; set; } = now;

    public override DateTimeOffset GetUtcNow() => Now;
}

/// <summary>Pods by node, as the mesh snapshot would answer.</summary>
internal sealed class PodPlacement : IWorkloadDirectory
{
    private readonly HashSet<(string Node, SpiffeId Identity)> _pods = [];

    public PodPlacement Add(string node, string spiffeId)
    {
        _pods.Add((node, SpiffeId.Parse(spiffeId)));
        return this;
    }

    public bool HasPodOnNode(string node, SpiffeId identity) => _pods.Contains((node, identity));
}

/// <summary>Keeps formatted log lines so a test can check what was logged.</summary>
internal sealed class ListLogger<T> : ILogger<T>
{
    public List<(LogLevel Level, EventId Id, string Message)> Entries { get; } = [];

    public IDisposable? BeginScope<TState>(TState state) where TState : notnull => null;

    public bool IsEnabled(LogLevel logLevel) => true;

    public void Log<TState>(LogLevel logLevel, EventId eventId, TState state, Exception? exception, Func<TState, Exception?, string> formatter)
    {
        lock (Entries)
        {
            Entries.Add((logLevel, eventId, formatter(state, exception)));
        }
    }
}

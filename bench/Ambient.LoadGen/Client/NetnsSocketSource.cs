using System.Collections.Concurrent;
using System.Net;
using System.Net.Sockets;
using System.Runtime.InteropServices;

namespace Ambient.LoadGen.Client;

/// <summary>
/// TCP sockets created inside another network namespace (a pod's, <c>/run/netns/NAME</c>), so the generator can measure
/// a path as a program in that pod sees it (its loopback, its capture rules) beside setups in the host's namespace, in
/// one interleaved run. A socket belongs to the namespace its creating thread was in at socket(2) time and keeps it for
/// life, so only creation needs the namespace: one dedicated thread enters it once, stays there, and does nothing but
/// socket(2), keeping a small stock ready so that taking one costs no thread hand-off on the connection-rate path. The
/// thread never starts async work or queues to the thread pool, so no runtime thread is ever born inside the pod; the
/// socket engine and the pool are warmed in the host namespace before it starts (<see cref="WarmUpAsync"/>).
/// </summary>
internal sealed partial class NetnsSocketSource : IDisposable
{
    private const int CloneNewNet = 0x40000000;
    private const int Stock = 256;

    private static readonly ConcurrentDictionary<string, NetnsSocketSource> s_sources = new(StringComparer.Ordinal);

    private readonly BlockingCollection<Socket> _ready = new(Stock);
    private readonly CancellationTokenSource _stopping = new();
    private readonly AddressFamily _family;
    private volatile Exception? _failure;

    private NetnsSocketSource(string netnsPath, AddressFamily family)
    {
        _family = family;
        var netns = File.OpenHandle(netnsPath);
        new Thread(() => Fill(netns)) { IsBackground = true, Name = "loadgen sockets in " + Path.GetFileName(netnsPath) }.Start();
    }

    /// <summary>The one source per namespace and address family (setups in the same pod share it).</summary>
    public static NetnsSocketSource For(string netnsPath, AddressFamily family) =>
        s_sources.GetOrAdd(netnsPath + "|" + family, _ => new NetnsSocketSource(netnsPath, family));

    /// <summary>A fresh, unconnected TCP socket inside the namespace.</summary>
    public Socket Take()
    {
        if (_failure is { } failure)
        {
            throw new IOException($"cannot create sockets in the pod's network namespace: {failure.Message}", failure);
        }
        // Blocks only when the stock ran dry (the filler makes hundreds per millisecond).
        return _ready.Take(_stopping.Token);
    }

    private void Fill(SafeHandle netns)
    {
        try
        {
            using (netns)
            {
                if (SetNamespace((int)netns.DangerousGetHandle(), CloneNewNet) != 0)
                {
                    var errno = Marshal.GetLastPInvokeError();
                    throw new IOException($"setns: {Marshal.GetPInvokeErrorMessage(errno)} (errno {errno}; needs root)");
                }
            }
            while (!_stopping.IsCancellationRequested)
            {
                _ready.Add(new Socket(_family, SocketType.Stream, ProtocolType.Tcp) { NoDelay = true }, _stopping.Token);
            }
        }
        catch (OperationCanceledException)
        {
        }
        catch (Exception e)
        {
            _failure = e;
            _ready.CompleteAdding();
        }
    }

    /// <summary>
    /// One async loopback connect (starts the socket engine's threads) and a few pool work items, in the host
    /// namespace, before any thread enters a pod's.
    /// </summary>
    public static async Task WarmUpAsync(CancellationToken ct)
    {
        using var listener = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
        listener.Bind(new IPEndPoint(IPAddress.Loopback, 0));
        listener.Listen(1);
        using var client = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
        var accepting = listener.AcceptAsync(ct);
        await client.ConnectAsync(listener.LocalEndPoint!, ct).ConfigureAwait(false);
        using var accepted = await accepting.ConfigureAwait(false);
        var warm = new Task[Environment.ProcessorCount * 2];
        for (var i = 0; i < warm.Length; i++)
        {
            warm[i] = Task.Run(static () => Thread.Sleep(1), ct);
        }
        await Task.WhenAll(warm).ConfigureAwait(false);
    }

    public void Dispose()
    {
        _stopping.Cancel();
        while (_ready.TryTake(out var socket))
        {
            socket.Dispose();
        }
    }

    [LibraryImport("libc", EntryPoint = "setns", SetLastError = true)]
    private static partial int SetNamespace(int fd, int type);
}

using System.Collections.Concurrent;
using System.Net;
using System.Net.Sockets;
using System.Runtime.InteropServices;
using Microsoft.Win32.SafeHandles;

namespace Ambient.Ztunnel.InPod;

/// <summary>
/// Creates sockets inside pods' network namespaces. A socket belongs to the namespace its creating thread was in at
/// socket(2) time and keeps it for life (bind, connect and accept may then happen on any thread), so only creation
/// needs the switch. It happens on ONE dedicated thread that setns(2)es into the pod's namespace, creates the socket,
/// and switches back before it completes the caller's task: nothing the runtime starts from that thread (a socket
/// engine thread, a thread-pool worker woken by a completion) can be born inside a pod. The socket engine and the
/// thread pool are warmed in the root namespace first, so their threads already exist when the first switch happens.
/// </summary>
internal sealed partial class NetnsSockets : IDisposable
{
    /// <summary>SO_MARK the ztunnel's own sockets carry, so a pod's capture rules (mark 0x539/0xfff) let them pass.</summary>
    public const int ZtunnelMark = 0x539;

    private const int CloneNewNet = 0x40000000;
    private const int SolSocket = 1;
    private const int SoMark = 36;

    private readonly BlockingCollection<Action> _work = new();
    private readonly SafeFileHandle _root;
    private readonly Thread _thread;

    private NetnsSockets(SafeFileHandle root)
    {
        _root = root;
        _thread = new Thread(Run) { IsBackground = true, Name = "ztunnel netns sockets" };
        _thread.Start();
    }

    /// <summary>Warms the socket engine and thread pool in the current (root) namespace, then starts the thread.</summary>
    public static async Task<NetnsSockets> StartAsync(CancellationToken cancellationToken)
    {
        await WarmUpAsync(cancellationToken).ConfigureAwait(false);
        // The process's namespace (the main thread's), which the dedicated thread returns to after each switch.
        return new NetnsSockets(File.OpenHandle("/proc/self/ns/net"));
    }

    /// <summary>
    /// Runs <paramref name="create"/> on the dedicated thread inside <paramref name="netns"/> and returns its result.
    /// <paramref name="create"/> must be synchronous and quick (socket, setsockopt, bind, listen).
    /// </summary>
    public Task<T> RunInAsync<T>(SafeHandle netns, Func<T> create)
    {
        var done = new TaskCompletionSource<T>(TaskCreationOptions.RunContinuationsAsynchronously);
        _work.Add(() =>
        {
            T result;
            try
            {
                Enter(netns);
                try
                {
                    result = create();
                }
                finally
                {
                    Enter(_root, leaving: true);
                }
            }
            catch (Exception e)
            {
                done.TrySetException(e);
                return;
            }
            // Completed only once back in the root namespace (continuations run elsewhere, but a woken pool thread
            // could be started from here).
            done.TrySetResult(result);
        });
        return done.Task;
    }

    /// <summary>A TCP socket inside <paramref name="netns"/> carrying <see cref="ZtunnelMark"/>, ready to connect.</summary>
    public Task<Socket> CreateMarkedAsync(SafeHandle netns, AddressFamily family) =>
        RunInAsync(netns, () =>
        {
            var socket = new Socket(family, SocketType.Stream, ProtocolType.Tcp) { NoDelay = true };
            try
            {
                SetMark(socket);
                return socket;
            }
            catch
            {
                socket.Dispose();
                throw;
            }
        });

    /// <summary>A listening TCP socket on <paramref name="endpoint"/> inside <paramref name="netns"/>.</summary>
    public Task<Socket> ListenAsync(SafeHandle netns, IPEndPoint endpoint, int backlog = 512) =>
        RunInAsync(netns, () =>
        {
            var socket = new Socket(endpoint.AddressFamily, SocketType.Stream, ProtocolType.Tcp);
            try
            {
                // No ReuseAddress: on Linux .NET maps it to SO_REUSEPORT too, which would let a second listener share the port.
                socket.Bind(endpoint);
                socket.Listen(backlog);
                return socket;
            }
            catch
            {
                socket.Dispose();
                throw;
            }
        });

    /// <summary>A UDP socket bound to <paramref name="endpoint"/> inside <paramref name="netns"/>.</summary>
    public Task<Socket> BindUdpAsync(SafeHandle netns, IPEndPoint endpoint) =>
        RunInAsync(netns, () =>
        {
            var socket = new Socket(endpoint.AddressFamily, SocketType.Dgram, ProtocolType.Udp);
            try
            {
                socket.Bind(endpoint);
                return socket;
            }
            catch
            {
                socket.Dispose();
                throw;
            }
        });

    /// <summary>
    /// SO_REUSEPORT, for the node-level ports only (admin, metrics, readiness, the node's DNS): an upgrade starts the next
    /// ztunnel while this one drains. Never on a pod's listeners, where a program of the pod could then share them: those
    /// are handed over instead (ZDS HandOverListeners).
    /// </summary>
    public static void SetReusePort(Socket socket)
    {
        const int soReusePort = 15;
        Span<byte> on = stackalloc byte[sizeof(int)];
        BitConverter.TryWriteBytes(on, 1);
        socket.SetRawSocketOption(SolSocket, soReusePort, on);
    }

    /// <summary>Marks <paramref name="socket"/> with <see cref="ZtunnelMark"/> (needs CAP_NET_ADMIN).</summary>
    public static void SetMark(Socket socket)
    {
        Span<byte> mark = stackalloc byte[sizeof(int)];
        BitConverter.TryWriteBytes(mark, ZtunnelMark);
        socket.SetRawSocketOption(SolSocket, SoMark, mark);
    }

    public void Dispose()
    {
        _work.CompleteAdding();
        _thread.Join(TimeSpan.FromSeconds(5));
        _root.Dispose();
    }

    private void Run()
    {
        foreach (var work in _work.GetConsumingEnumerable())
        {
            work();
        }
    }

    private static void Enter(SafeHandle netns, bool leaving = false)
    {
        var added = false;
        netns.DangerousAddRef(ref added);
        try
        {
            if (SetNamespace((int)netns.DangerousGetHandle(), CloneNewNet) == 0)
            {
                return;
            }
            var errno = Marshal.GetLastPInvokeError();
            if (leaving)
            {
                // Stuck inside a pod: every later socket would be created there. Not recoverable in-process.
                Environment.FailFast($"setns back to the ztunnel's own network namespace failed: {Marshal.GetPInvokeErrorMessage(errno)}");
            }
            throw new IOException($"setns into the pod's network namespace failed: {Marshal.GetPInvokeErrorMessage(errno)} (errno {errno})");
        }
        finally
        {
            if (added)
            {
                netns.DangerousRelease();
            }
        }
    }

    /// <summary>One async loopback connect (starts the socket engine's threads) and a few pool work items.</summary>
    private static async Task WarmUpAsync(CancellationToken cancellationToken)
    {
        using var listener = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
        listener.Bind(new IPEndPoint(IPAddress.Loopback, 0));
        listener.Listen(1);
        using var client = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
        var accepting = listener.AcceptAsync(cancellationToken);
        await client.ConnectAsync(listener.LocalEndPoint!, cancellationToken).ConfigureAwait(false);
        using var accepted = await accepting.ConfigureAwait(false);
        var warm = new Task[Environment.ProcessorCount * 2];
        for (var i = 0; i < warm.Length; i++)
        {
            warm[i] = Task.Run(static () => Thread.Sleep(1), cancellationToken);
        }
        await Task.WhenAll(warm).ConfigureAwait(false);
    }

    [LibraryImport("libc", EntryPoint = "setns", SetLastError = true)]
    private static partial int SetNamespace(int fd, int type);
}

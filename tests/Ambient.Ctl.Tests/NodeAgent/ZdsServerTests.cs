using Ambient.Core.Protos.Zds;
using Ambient.Ctl.Local.NodeAgent;
using Ambient.TestCommon;
using Microsoft.Extensions.Logging.Abstractions;
using Microsoft.Win32.SafeHandles;
using Kind = Ambient.Core.Protos.Zds.WorkloadRequest.PayloadOneofCase;

namespace Ambient.Ctl.Tests.NodeAgent;

/// <summary>The node agent's ZDS server against a fake ztunnel, with this process's own netns as the pod's.</summary>
public sealed class ZdsServerTests : IDisposable
{
    private static CancellationToken Ct => TestContext.Current.CancellationToken;
    private static readonly TimeSpan Wait = TimeSpan.FromSeconds(10);

    private readonly TempDir _dir = new();
    private readonly List<SafeFileHandle> _fds = [];

    private string SocketPath => Path.Combine(_dir.Path, "zds.sock");

    private SafeFileHandle OpenNetns()
    {
        var fd = File.OpenHandle("/proc/self/ns/net");
        _fds.Add(fd);
        return fd;
    }

    /// <summary>What an nsfs fd names, e.g. "net:[4026531840]": equal for two fds of the same namespace.</summary>
    internal static string Namespace(SafeFileHandle fd) =>
        new FileInfo($"/proc/self/fd/{fd.DangerousGetHandle()}").LinkTarget ?? throw new InvalidOperationException("not a link");

    private static ZdsPod Pod(string name) => ZdsPod.For("Kubernetes", "demo", name, "sa-" + name);

    [Fact]
    public async Task Snapshot_sends_each_pod_with_a_usable_netns_fd_then_snapshot_sent_and_add_completes_on_the_ack()
    {
        Assert.SkipUnless(OperatingSystem.IsLinux(), "ZDS is Linux only");
        await using var server = ZdsServer.Start(SocketPath, NullLogger.Instance);
        var netns = OpenNetns();
        var added = server.AddAsync(Pod("client"), netns);

        using var ztunnel = await FakeZtunnel.ConnectAsync(SocketPath, Ct);
        var received = await ztunnel.ReceiveAsync(Ct);
        Assert.NotNull(received);
        var (request, fd) = received.Value;
        using (fd)
        {
            Assert.Equal(Kind.Add, request.PayloadCase);
            Assert.Equal("Kubernetes//Pod/demo/client", request.Add.Uid);
            Assert.Equal("client", request.Add.WorkloadInfo.Name);
            Assert.Equal("demo", request.Add.WorkloadInfo.Namespace);
            Assert.Equal("sa-client", request.Add.WorkloadInfo.ServiceAccount);
            Assert.NotNull(fd);
            Assert.StartsWith("net:[", Namespace(fd));
            Assert.Equal(Namespace(netns), Namespace(fd));
        }
        await Task.Delay(100, Ct);
        Assert.False(added.IsCompleted, "the Add completed before the ztunnel acked it");
        await ztunnel.AckAsync(Ct);
        await added.WaitAsync(Wait, Ct);

        await ztunnel.ExpectAsync(Kind.SnapshotSent, Ct);
        await ztunnel.AckAsync(Ct);
        await WaitUntil(() => server.ZtunnelConnected);
    }

    [Fact]
    public async Task Live_add_and_del_each_wait_for_their_ack()
    {
        Assert.SkipUnless(OperatingSystem.IsLinux(), "ZDS is Linux only");
        await using var server = ZdsServer.Start(SocketPath, NullLogger.Instance);
        using var ztunnel = await FakeZtunnel.ConnectPastEmptySnapshotAsync(SocketPath, Ct);

        var added = server.AddAsync(Pod("echo"), OpenNetns());
        var add = await ztunnel.ReceiveAsync(Ct);
        Assert.NotNull(add);
        add.Value.Fd?.Dispose();
        Assert.Equal("Kubernetes//Pod/demo/echo", add.Value.Request.Add.Uid);
        Assert.NotNull(add.Value.Fd);
        await ztunnel.AckAsync(Ct);
        await added.WaitAsync(Wait, Ct);

        var removed = server.RemoveAsync("Kubernetes//Pod/demo/echo");
        var del = await ztunnel.ExpectAsync(Kind.Del, Ct);
        Assert.Equal("Kubernetes//Pod/demo/echo", del.Del.Uid);
        await Task.Delay(100, Ct);
        Assert.False(removed.IsCompleted, "the Del completed before the ztunnel acked it");
        await ztunnel.AckAsync(Ct);
        await removed.WaitAsync(Wait, Ct);
    }

    [Fact]
    public async Task An_error_ack_fails_the_add_with_the_ztunnels_reason_and_the_pod_is_dropped()
    {
        Assert.SkipUnless(OperatingSystem.IsLinux(), "ZDS is Linux only");
        await using var server = ZdsServer.Start(SocketPath, NullLogger.Instance);
        using (var ztunnel = await FakeZtunnel.ConnectPastEmptySnapshotAsync(SocketPath, Ct))
        {
            var added = server.AddAsync(Pod("broken"), OpenNetns());
            await ztunnel.ExpectAsync(Kind.Add, Ct);
            await ztunnel.AckAsync(Ct, "cannot bind 15001 in the pod's namespace");
            var error = await Assert.ThrowsAsync<ZdsException>(() => added.WaitAsync(Wait, Ct));
            Assert.Contains("cannot bind 15001", error.Message, StringComparison.Ordinal);
        }
        // A reconnecting ztunnel is not handed the refused pod.
        using var again = await FakeZtunnel.ConnectAsync(SocketPath, Ct);
        await again.ExpectAsync(Kind.SnapshotSent, Ct);
    }

    [Fact]
    public async Task A_reconnecting_ztunnel_gets_the_pods_enrolled_now_and_not_those_that_left_meanwhile()
    {
        Assert.SkipUnless(OperatingSystem.IsLinux(), "ZDS is Linux only");
        await using var server = ZdsServer.Start(SocketPath, NullLogger.Instance);
        Task stays, leaves;
        using (var ztunnel = await FakeZtunnel.ConnectPastEmptySnapshotAsync(SocketPath, Ct))
        {
            stays = server.AddAsync(Pod("stays"), OpenNetns());
            await ztunnel.ExpectAsync(Kind.Add, Ct);
            await ztunnel.AckAsync(Ct);
            leaves = server.AddAsync(Pod("leaves"), OpenNetns());
            await ztunnel.ExpectAsync(Kind.Add, Ct);
            await ztunnel.AckAsync(Ct);
            await Task.WhenAll(stays, leaves).WaitAsync(Wait, Ct);
        }
        await WaitUntil(() => !server.ZtunnelConnected);
        // No ztunnel holds it now: leaving completes at once, the next snapshot will not name it.
        await server.RemoveAsync("Kubernetes//Pod/demo/leaves").WaitAsync(Wait, Ct);

        using var reconnected = await FakeZtunnel.ConnectAsync(SocketPath, Ct);
        var add = await reconnected.ExpectAsync(Kind.Add, Ct);
        Assert.Equal("Kubernetes//Pod/demo/stays", add.Add.Uid);
        await reconnected.AckAsync(Ct);
        await reconnected.ExpectAsync(Kind.SnapshotSent, Ct);
        await reconnected.AckAsync(Ct);
    }

    [Fact]
    public async Task After_an_agent_restart_the_reconnecting_ztunnel_gets_the_new_agents_snapshot()
    {
        Assert.SkipUnless(OperatingSystem.IsLinux(), "ZDS is Linux only");
        var first = ZdsServer.Start(SocketPath, NullLogger.Instance);
        using var ztunnel = await FakeZtunnel.ConnectPastEmptySnapshotAsync(SocketPath, Ct);
        await first.DisposeAsync();
        Assert.Null(await ztunnel.ReceiveAsync(Ct)); // the agent went away: end of stream

        await using var second = ZdsServer.Start(SocketPath, NullLogger.Instance);
        var added = second.AddAsync(Pod("client"), OpenNetns());
        using var reconnected = await FakeZtunnel.ConnectAsync(SocketPath, Ct);
        await reconnected.ExpectAsync(Kind.Add, Ct);
        await reconnected.AckAsync(Ct);
        await added.WaitAsync(Wait, Ct);
        await reconnected.ExpectAsync(Kind.SnapshotSent, Ct);
    }

    [Fact]
    public async Task A_ztunnel_that_does_not_ack_loses_its_connection_and_the_pod_waits_for_the_next_one()
    {
        Assert.SkipUnless(OperatingSystem.IsLinux(), "ZDS is Linux only");
        await using var server = ZdsServer.Start(SocketPath, NullLogger.Instance, ackTimeout: TimeSpan.FromMilliseconds(300));
        var added = server.AddAsync(Pod("client"), OpenNetns());
        using (var silent = await FakeZtunnel.ConnectAsync(SocketPath, Ct))
        {
            await silent.ExpectAsync(Kind.Add, Ct);
            Assert.Null(await silent.ReceiveAsync(Ct)); // no ack: the agent hangs up
        }
        Assert.False(added.IsCompleted);
        using var next = await FakeZtunnel.ConnectAsync(SocketPath, Ct);
        await next.ExpectAsync(Kind.Add, Ct);
        await next.AckAsync(Ct);
        await added.WaitAsync(Wait, Ct);
    }

    [Fact]
    public async Task A_second_ztunnel_gets_each_pod_with_the_listening_sockets_the_first_hands_over_and_the_first_is_retired_not_closed()
    {
        Assert.SkipUnless(OperatingSystem.IsLinux(), "ZDS is Linux only");
        await using var server = ZdsServer.Start(SocketPath, NullLogger.Instance);
        var netns = OpenNetns();
        var added = server.AddAsync(Pod("client"), netns);
        using var old = await FakeZtunnel.ConnectAsync(SocketPath, Ct);
        await old.ExpectAsync(Kind.Add, Ct);
        await old.AckAsync(Ct);
        await added.WaitAsync(Wait, Ct);
        await old.ExpectAsync(Kind.SnapshotSent, Ct);
        await old.AckAsync(Ct);
        await WaitUntil(() => server.SnapshotsAcked == 1);

        // The upgrade: the agent asks the old ztunnel for the pod's six listening sockets and passes them on.
        using var fresh = await FakeZtunnel.ConnectAsync(SocketPath, Ct);
        var (handOver, none) = await old.ReceiveWithFdsAsync(Ct);
        Assert.Equal(Kind.HandOver, handOver.PayloadCase);
        Assert.Equal("Kubernetes//Pod/demo/client", handOver.HandOver.Uid);
        Assert.Empty(none);
        var listeners = new List<System.Net.Sockets.Socket>();
        try
        {
            for (var i = 0; i < 6; i++)
            {
                var socket = new System.Net.Sockets.Socket(System.Net.Sockets.AddressFamily.InterNetwork, System.Net.Sockets.SocketType.Stream, System.Net.Sockets.ProtocolType.Tcp);
                listeners.Add(socket);
                socket.Bind(new System.Net.IPEndPoint(System.Net.IPAddress.Loopback, 0));
                socket.Listen(1);
            }
            await old.AckWithFdsAsync([.. listeners.Select(l => (System.Runtime.InteropServices.SafeHandle)l.SafeHandle)], Ct);

            var (add, fds) = await fresh.ReceiveWithFdsAsync(Ct);
            try
            {
                Assert.Equal(Kind.Add, add.PayloadCase);
                Assert.Equal(7, fds.Count);
                Assert.Equal(Namespace(netns), Namespace(fds[0]));
                for (var i = 0; i < 6; i++)
                {
                    // The very sockets the old ztunnel holds (same inode), in order: one accept queue for both.
                    Assert.Equal(Namespace(new SafeFileHandle(listeners[i].SafeHandle.DangerousGetHandle(), ownsHandle: false)), Namespace(fds[i + 1]));
                }
            }
            finally
            {
                foreach (var fd in fds) fd.Dispose();
            }
        }
        finally
        {
            foreach (var l in listeners) l.Dispose();
        }
        await fresh.AckAsync(Ct);
        await fresh.ExpectAsync(Kind.SnapshotSent, Ct);
        await fresh.AckAsync(Ct);
        await WaitUntil(() => server.SnapshotsAcked == 2);

        // The old one is retired: still connected (it drains; closed, it would reconnect), but sent nothing more.
        var late = server.AddAsync(Pod("late"), OpenNetns());
        var (lateAdd, lateFds) = await fresh.ReceiveWithFdsAsync(Ct);
        Assert.Equal("Kubernetes//Pod/demo/late", lateAdd.Add.Uid);
        Assert.Single(lateFds); // no hand-over: the old one never held it
        lateFds[0].Dispose();
        await fresh.AckAsync(Ct);
        await late.WaitAsync(Wait, Ct);
        Assert.True(await old.QuietForAsync(TimeSpan.FromMilliseconds(300), Ct), "the retired ztunnel was sent a request");
        Assert.True(server.ZtunnelConnected);
    }

    private static async Task WaitUntil(Func<bool> condition)
    {
        var deadline = DateTime.UtcNow + Wait;
        while (!condition())
        {
            Assert.True(DateTime.UtcNow < deadline, "condition not met in time");
            await Task.Delay(20, Ct);
        }
    }

    public void Dispose()
    {
        foreach (var fd in _fds) fd.Dispose();
        _dir.Dispose();
    }
}

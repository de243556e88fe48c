using System.Text;
using Ambient.Core.InPod;
using Ambient.TestCommon;
using Microsoft.Win32.SafeHandles;

namespace Ambient.Core.Tests.InPod;

/// <summary>
/// The ZDS transport: whole packets, each with the file descriptors it carries (a pod's netns fd), over a
/// Unix-domain SEQPACKET socket. Descriptors are checked by what they open, not by number (the receiver's fd number
/// differs from the sender's).
/// </summary>
public sealed class SeqPacketSocketTests
{
    private static readonly TimeSpan Timeout = TimeSpan.FromSeconds(10);

    [Fact]
    public async Task Packets_keep_their_boundaries_and_arrive_in_order()
    {
        var (a, b) = SeqPacketSocket.CreatePair();
        using (a)
        using (b)
        {
            using var cts = new CancellationTokenSource(Timeout);
            await a.SendAsync("first"u8.ToArray(), cts.Token);
            await a.SendAsync("second!"u8.ToArray(), cts.Token);
            var buffer = new byte[64];
            using (var first = await b.ReceiveAsync(buffer, cts.Token))
            {
                Assert.Equal("first", Encoding.ASCII.GetString(buffer, 0, first.Length));
                Assert.Equal(0, first.FdCount);
                Assert.False(first.IsEndOfStream);
            }
            using var second = await b.ReceiveAsync(buffer, cts.Token);
            Assert.Equal("second!", Encoding.ASCII.GetString(buffer, 0, second.Length));
        }
    }

    [Fact]
    public async Task A_file_descriptor_rides_along_and_opens_the_same_file()
    {
        using var dir = new TempDir();
        var path = dir.Write("payload.txt", "read through a passed fd");
        var (a, b) = SeqPacketSocket.CreatePair();
        using (a)
        using (b)
        {
            using var cts = new CancellationTokenSource(Timeout);
            using (var file = File.OpenHandle(path))
            {
                await a.SendAsync("add"u8.ToArray(), [file], cts.Token);
            }
            var buffer = new byte[16];
            using var packet = await b.ReceiveAsync(buffer, cts.Token);
            Assert.Equal("add", Encoding.ASCII.GetString(buffer, 0, packet.Length));
            using var received = packet.TakeSingleFd();
            Assert.Equal(0, packet.FdCount);
            using var stream = new FileStream(received, FileAccess.Read);
            Assert.Equal("read through a passed fd", await new StreamReader(stream).ReadToEndAsync(cts.Token));
        }
    }

    [Fact]
    public async Task A_network_namespace_fd_passed_over_a_listening_path_names_the_same_namespace()
    {
        if (!OperatingSystem.IsLinux())
        {
            Assert.Skip("network namespaces are Linux only");
        }
        using var dir = new TempDir();
        var socketPath = Path.Combine(dir.Path, "zds.sock");
        using var cts = new CancellationTokenSource(Timeout);
        using var listener = SeqPacketSocket.Listen(socketPath);
        var accepting = listener.AcceptAsync(cts.Token);
        using var client = await SeqPacketSocket.ConnectAsync(socketPath, cts.Token);
        using var server = await accepting;

        using (var netns = File.OpenHandle("/proc/self/ns/net"))
        {
            await server.SendAsync("netns"u8.ToArray(), [netns], cts.Token);
        }
        var buffer = new byte[16];
        using var packet = await client.ReceiveAsync(buffer, cts.Token);
        using var fd = packet.TakeSingleFd();
        var target = File.ResolveLinkTarget($"/proc/self/fd/{fd.DangerousGetHandle()}", returnFinalTarget: false)!.FullName;
        var expected = File.ResolveLinkTarget("/proc/self/ns/net", returnFinalTarget: false)!.FullName;
        Assert.Equal(Path.GetFileName(expected), Path.GetFileName(target)); // net:[inode]
    }

    [Fact]
    public async Task A_packet_without_a_descriptor_is_refused_by_TakeSingleFd_with_a_clear_error()
    {
        var (a, b) = SeqPacketSocket.CreatePair();
        using (a)
        using (b)
        {
            using var cts = new CancellationTokenSource(Timeout);
            await a.SendAsync("no fd"u8.ToArray(), cts.Token);
            using var packet = await b.ReceiveAsync(new byte[16], cts.Token);
            var error = Assert.Throws<SeqPacketException>(() => packet.TakeSingleFd());
            Assert.Contains("no file descriptor", error.Message);
        }
    }

    [Fact]
    public async Task A_packet_larger_than_the_buffer_is_dropped_with_an_error_and_its_fd_closed_and_the_next_one_arrives()
    {
        using var dir = new TempDir();
        var path = dir.Write("f", "x");
        var (a, b) = SeqPacketSocket.CreatePair();
        using (a)
        using (b)
        {
            using var cts = new CancellationTokenSource(Timeout);
            using (var file = File.OpenHandle(path))
            {
                await a.SendAsync(new byte[100], [file], cts.Token);
            }
            await a.SendAsync("ok"u8.ToArray(), cts.Token);
            var buffer = new byte[10];
            var error = await Assert.ThrowsAsync<SeqPacketException>(async () => await b.ReceiveAsync(buffer, cts.Token));
            Assert.Contains("larger than the 10-byte receive buffer", error.Message);
            using var next = await b.ReceiveAsync(buffer, cts.Token);
            Assert.Equal("ok", Encoding.ASCII.GetString(buffer, 0, next.Length));
        }
    }

    [Fact]
    public async Task A_packet_larger_than_the_socket_accepts_fails_to_send_with_a_clear_error()
    {
        var (a, b) = SeqPacketSocket.CreatePair();
        using (a)
        using (b)
        {
            using var cts = new CancellationTokenSource(Timeout);
            var error = await Assert.ThrowsAsync<SeqPacketException>(async () => await a.SendAsync(new byte[8 << 20], cts.Token));
            Assert.Contains("larger than the socket accepts", error.Message);
        }
    }

    [Fact]
    public async Task The_peer_closing_reads_as_the_end_of_the_stream()
    {
        var (a, b) = SeqPacketSocket.CreatePair();
        using (b)
        {
            using var cts = new CancellationTokenSource(Timeout);
            var receiving = b.ReceiveAsync(new byte[16], cts.Token);
            a.Dispose();
            using var packet = await receiving;
            Assert.True(packet.IsEndOfStream);
        }
    }

    [Fact]
    public async Task Waiting_for_a_packet_is_cancellable()
    {
        var (a, b) = SeqPacketSocket.CreatePair();
        using (a)
        using (b)
        {
            using var cts = new CancellationTokenSource(TimeSpan.FromMilliseconds(100));
            await Assert.ThrowsAnyAsync<OperationCanceledException>(async () => await b.ReceiveAsync(new byte[16], cts.Token));
        }
    }
}

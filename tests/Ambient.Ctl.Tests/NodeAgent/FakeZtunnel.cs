using Ambient.Core.InPod;
using Ambient.Core.Protos.Zds;
using Google.Protobuf;
using Microsoft.Win32.SafeHandles;

namespace Ambient.Ctl.Tests.NodeAgent;

/// <summary>The ztunnel's end of ZDS, driven by the test: says hello, reads requests, answers each with an ack.</summary>
internal sealed class FakeZtunnel : IDisposable
{
    private readonly SeqPacketSocket _socket;
    private readonly byte[] _buffer = new byte[1024];

    private FakeZtunnel(SeqPacketSocket socket) => _socket = socket;

    /// <summary>Connects (retrying while the agent is not listening yet, as the ztunnel does) and says hello.</summary>
    public static async Task<FakeZtunnel> ConnectAsync(string socketPath, CancellationToken cancellationToken)
    {
        while (true)
        {
            try
            {
                var socket = await SeqPacketSocket.ConnectAsync(socketPath, cancellationToken);
                var ztunnel = new FakeZtunnel(socket);
                await socket.SendAsync(new ZdsHello { Version = Core.Protos.Zds.Version.V1 }.ToByteArray(), cancellationToken);
                return ztunnel;
            }
            catch (System.Net.Sockets.SocketException)
            {
                await Task.Delay(20, cancellationToken);
            }
        }
    }

    /// <summary>Connects to an agent holding no pods and acks its empty snapshot.</summary>
    public static async Task<FakeZtunnel> ConnectPastEmptySnapshotAsync(string socketPath, CancellationToken cancellationToken)
    {
        var ztunnel = await ConnectAsync(socketPath, cancellationToken);
        await ztunnel.ExpectAsync(WorkloadRequest.PayloadOneofCase.SnapshotSent, cancellationToken);
        await ztunnel.AckAsync(cancellationToken);
        return ztunnel;
    }

    /// <summary>The next request and the fd it carried (the test owns it), or null at the end of the stream.</summary>
    public async Task<(WorkloadRequest Request, SafeFileHandle? Fd)?> ReceiveAsync(CancellationToken cancellationToken)
    {
        using var timeout = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
        timeout.CancelAfter(TimeSpan.FromSeconds(10));
        ReceivedPacket packet;
        try
        {
            packet = await _socket.ReceiveAsync(_buffer, timeout.Token);
        }
        catch (SeqPacketException e) when (e.Message.Contains("reset", StringComparison.Ordinal))
        {
            return null; // the agent closed with our last ack unread: the same end of the connection
        }
        using var _ = packet;
        if (packet.IsEndOfStream) return null;
        var request = WorkloadRequest.Parser.ParseFrom(_buffer, 0, packet.Length);
        return (request, packet.FdCount == 1 ? packet.TakeSingleFd() : null);
    }

    public async Task<WorkloadRequest> ExpectAsync(WorkloadRequest.PayloadOneofCase kind, CancellationToken cancellationToken)
    {
        var received = await ReceiveAsync(cancellationToken) ?? throw new Xunit.Sdk.XunitException("the agent closed the connection, expected " + kind);
        received.Fd?.Dispose();
        Assert.Equal(kind, received.Request.PayloadCase);
        return received.Request;
    }

    /// <summary>The next request and every fd it carried (the test owns them).</summary>
    public async Task<(WorkloadRequest Request, List<SafeFileHandle> Fds)> ReceiveWithFdsAsync(CancellationToken cancellationToken)
    {
        using var timeout = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
        timeout.CancelAfter(TimeSpan.FromSeconds(10));
        using var packet = await _socket.ReceiveAsync(_buffer, timeout.Token);
        if (packet.IsEndOfStream) throw new Xunit.Sdk.XunitException("the agent closed the connection");
        return (WorkloadRequest.Parser.ParseFrom(_buffer, 0, packet.Length), packet.TakeAllFds());
    }

    /// <summary>True if the agent sends nothing within <paramref name="time"/>.</summary>
    public async Task<bool> QuietForAsync(TimeSpan time, CancellationToken cancellationToken)
    {
        using var timeout = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
        timeout.CancelAfter(time);
        try
        {
            using var packet = await _socket.ReceiveAsync(_buffer, timeout.Token);
            return false;
        }
        catch (OperationCanceledException) when (!cancellationToken.IsCancellationRequested)
        {
            return true;
        }
    }

    /// <summary>An ack carrying <paramref name="fds"/> (a hand-over's listening sockets).</summary>
    public ValueTask AckWithFdsAsync(IReadOnlyList<System.Runtime.InteropServices.SafeHandle> fds, CancellationToken cancellationToken) =>
        _socket.SendAsync(new WorkloadResponse { Ack = new Ack() }.ToByteArray(), fds, cancellationToken);

    public ValueTask AckAsync(CancellationToken cancellationToken, string error = "") =>
        _socket.SendAsync(new WorkloadResponse { Ack = new Ack { Error = error } }.ToByteArray(), cancellationToken);

    public void Dispose() => _socket.Dispose();
}

using System.Net.Sockets;
using System.Runtime.InteropServices;
using Microsoft.Win32.SafeHandles;

namespace Ambient.Core.InPod;

/// <summary>A SEQPACKET packet could not be sent or received as one whole packet with its file descriptors.</summary>
internal sealed class SeqPacketException(string message) : IOException(message);

/// <summary>
/// A Unix-domain SOCK_SEQPACKET socket that moves whole packets, each optionally carrying file descriptors
/// (SCM_RIGHTS): the transport of ZDS, over which the node agent hands a pod's network namespace to its ztunnel as
/// an open fd, so the ztunnel never opens a path it would have to trust. SEQPACKET keeps packet boundaries, so a
/// packet is one protobuf message with no length prefix.
/// </summary>
/// <remarks>
/// Listen, accept and connect are the BCL's; only the fd-carrying send and receive call sendmsg(2)/recvmsg(2)
/// directly (the BCL cannot pass descriptors), which keeps this AOT- and trim-clean. The socket's fd is
/// non-blocking (the BCL's async engine owns it), so receiving waits for a packet with a 1-byte MSG_PEEK through the
/// BCL (cancellable, no thread parked) and then takes it with a non-blocking recvmsg. One receiver and one sender at
/// a time. Linux only.
/// </remarks>
internal sealed partial class SeqPacketSocket : IDisposable
{
    /// <summary>
    /// The most descriptors one received packet may carry; a packet with more is refused (the extra ones are closed).
    /// An upgrade's AddWorkload carries the most: the netns fd and the pod's six listening sockets.
    /// </summary>
    public const int MaxFdsPerPacket = 8;

    private readonly Socket _socket;
    private readonly byte[] _peekByte = new byte[1];

    private SeqPacketSocket(Socket socket) => _socket = socket;

    /// <summary>Binds <paramref name="path"/> and listens. A stale socket file at the path is the caller's to remove.</summary>
    public static SeqPacketSocket Listen(string path, int backlog = 16)
    {
        var socket = NewSocket();
        try
        {
            socket.Bind(new UnixDomainSocketEndPoint(path));
            socket.Listen(backlog);
            return new SeqPacketSocket(socket);
        }
        catch
        {
            socket.Dispose();
            throw;
        }
    }

    /// <summary>Connects to a listener at <paramref name="path"/>.</summary>
    public static async ValueTask<SeqPacketSocket> ConnectAsync(string path, CancellationToken cancellationToken)
    {
        var socket = NewSocket();
        try
        {
            await socket.ConnectAsync(new UnixDomainSocketEndPoint(path), cancellationToken).ConfigureAwait(false);
            return new SeqPacketSocket(socket);
        }
        catch
        {
            socket.Dispose();
            throw;
        }
    }

    /// <summary>Two connected ends (socketpair(2)); for tests and in-process peers.</summary>
    public static (SeqPacketSocket First, SeqPacketSocket Second) CreatePair()
    {
        Span<int> fds = stackalloc int[2];
        if (Native.SocketPair(Native.AfUnix, Native.SockSeqPacket | Native.SockCloExec, 0, ref fds[0]) != 0)
        {
            throw Native.Failure("socketpair", Marshal.GetLastPInvokeError());
        }
        return (Wrap(fds[0]), Wrap(fds[1]));

        static SeqPacketSocket Wrap(int fd) => new(new Socket(new SafeSocketHandle(fd, ownsHandle: true)));
    }

    /// <summary>Waits for the next connection on a listening socket.</summary>
    public async ValueTask<SeqPacketSocket> AcceptAsync(CancellationToken cancellationToken) =>
        new(await _socket.AcceptAsync(cancellationToken).ConfigureAwait(false));

    /// <summary>Sends <paramref name="packet"/> as one packet with no descriptors.</summary>
    public ValueTask SendAsync(ReadOnlyMemory<byte> packet, CancellationToken cancellationToken) =>
        SendAsync(packet, [], cancellationToken);

    /// <summary>
    /// Sends <paramref name="packet"/> as one packet carrying duplicates of <paramref name="fds"/> (the caller keeps
    /// and still owns its own). A packet larger than the socket allows fails with <see cref="SeqPacketException"/>.
    /// </summary>
    public async ValueTask SendAsync(ReadOnlyMemory<byte> packet, IReadOnlyList<SafeHandle> fds, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(fds);
        if (fds.Count > MaxFdsPerPacket)
        {
            throw new ArgumentException($"at most {MaxFdsPerPacket} descriptors per packet", nameof(fds));
        }
        // ZDS waits for an ack before its next packet, so a full send queue (EAGAIN) is rare and brief: poll for room
        // rather than keep a writability waiter the BCL does not offer for a raw sendmsg.
        while (!TrySend(packet.Span, fds))
        {
            await Task.Delay(5, cancellationToken).ConfigureAwait(false);
        }
    }

    /// <summary>
    /// Receives one packet into <paramref name="buffer"/> with the descriptors it carries (the returned packet owns
    /// them). At the end of the stream the packet is empty (<see cref="ReceivedPacket.IsEndOfStream"/>). A packet
    /// larger than <paramref name="buffer"/>, or with more than <see cref="MaxFdsPerPacket"/> descriptors, is consumed
    /// and refused with <see cref="SeqPacketException"/>; the connection stays usable.
    /// </summary>
    public async ValueTask<ReceivedPacket> ReceiveAsync(Memory<byte> buffer, CancellationToken cancellationToken)
    {
        while (true)
        {
            if (TryReceive(buffer.Span, out var packet))
            {
                return packet;
            }
            // Wait until a packet (or the end of the stream) is queued without taking it; a 1-byte peek on SEQPACKET
            // leaves the packet and its descriptors in place for the recvmsg above.
            await _socket.ReceiveAsync(_peekByte, SocketFlags.Peek, cancellationToken).ConfigureAwait(false);
        }
    }

    public void Dispose() => _socket.Dispose();

    private static Socket NewSocket() => new(AddressFamily.Unix, SocketType.Seqpacket, ProtocolType.Unspecified);

    private unsafe bool TrySend(ReadOnlySpan<byte> packet, IReadOnlyList<SafeHandle> fds)
    {
        var added = 0;
        var handle = _socket.SafeHandle;
        var handleAdded = false;
        try
        {
            handle.DangerousAddRef(ref handleAdded);
            var controlLength = fds.Count == 0 ? 0 : Native.ControlSpace(fds.Count * sizeof(int));
            var control = stackalloc byte[Native.ControlSpace(MaxFdsPerPacket * sizeof(int))];
            if (fds.Count > 0)
            {
                new Span<byte>(control, controlLength).Clear();
                var header = (Native.ControlHeader*)control;
                header->Length = (nuint)Native.ControlLength(fds.Count * sizeof(int));
                header->Level = Native.SolSocket;
                header->Type = Native.ScmRights;
                var data = (int*)(control + Native.ControlLength(0));
                for (; added < fds.Count; added++)
                {
                    var success = false;
                    fds[added].DangerousAddRef(ref success);
                    data[added] = (int)fds[added].DangerousGetHandle();
                }
            }
            fixed (byte* bytes = packet)
            {
                var vector = new Native.IoVector { Base = bytes, Length = (nuint)packet.Length };
                var message = new Native.MessageHeader
                {
                    Iov = &vector,
                    IovLength = 1,
                    Control = controlLength == 0 ? null : control,
                    ControlLength = (nuint)controlLength,
                };
                var sent = Native.SendMessage((int)handle.DangerousGetHandle(), &message, Native.MsgDontWait | Native.MsgNoSignal);
                if (sent >= 0)
                {
                    return true;
                }
                var errno = Marshal.GetLastPInvokeError();
                if (errno is Native.EAgain or Native.EIntr)
                {
                    return false;
                }
                if (errno == Native.EMsgSize)
                {
                    throw new SeqPacketException($"a {packet.Length}-byte packet is larger than the socket accepts");
                }
                throw Native.Failure("sendmsg", errno);
            }
        }
        finally
        {
            for (var i = 0; i < added; i++)
            {
                fds[i].DangerousRelease();
            }
            if (handleAdded)
            {
                handle.DangerousRelease();
            }
        }
    }

    private unsafe bool TryReceive(Span<byte> buffer, out ReceivedPacket packet)
    {
        packet = null!;
        var handle = _socket.SafeHandle;
        var handleAdded = false;
        try
        {
            handle.DangerousAddRef(ref handleAdded);
            var controlCapacity = Native.ControlSpace(MaxFdsPerPacket * sizeof(int));
            var control = stackalloc byte[controlCapacity];
            nint received;
            Native.MessageHeader message;
            fixed (byte* bytes = buffer)
            {
                var vector = new Native.IoVector { Base = bytes, Length = (nuint)buffer.Length };
                message = new Native.MessageHeader
                {
                    Iov = &vector,
                    IovLength = 1,
                    Control = control,
                    ControlLength = (nuint)controlCapacity,
                };
                received = Native.ReceiveMessage((int)handle.DangerousGetHandle(), &message, Native.MsgDontWait | Native.MsgCmsgCloExec);
            }
            if (received < 0)
            {
                var errno = Marshal.GetLastPInvokeError();
                if (errno is Native.EAgain or Native.EIntr)
                {
                    return false;
                }
                throw Native.Failure("recvmsg", errno);
            }
            var fds = TakeDescriptors(control, (int)message.ControlLength);
            if ((message.Flags & Native.MsgTrunc) != 0)
            {
                CloseAll(fds);
                throw new SeqPacketException($"a packet larger than the {buffer.Length}-byte receive buffer was dropped");
            }
            if ((message.Flags & Native.MsgCTrunc) != 0)
            {
                CloseAll(fds);
                throw new SeqPacketException($"a packet carrying more than {MaxFdsPerPacket} file descriptors was dropped");
            }
            packet = new ReceivedPacket((int)received, fds);
            return true;
        }
        finally
        {
            if (handleAdded)
            {
                handle.DangerousRelease();
            }
        }
    }

    private static unsafe List<SafeFileHandle> TakeDescriptors(byte* control, int controlLength)
    {
        var fds = new List<SafeFileHandle>(1);
        var headerSize = Native.ControlLength(0);
        var offset = 0;
        while (offset + headerSize <= controlLength)
        {
            var header = (Native.ControlHeader*)(control + offset);
            var length = (int)header->Length;
            if (length < headerSize || offset + length > controlLength)
            {
                break;
            }
            if (header->Level == Native.SolSocket && header->Type == Native.ScmRights)
            {
                var data = (int*)(control + offset + headerSize);
                for (var i = 0; i < (length - headerSize) / sizeof(int); i++)
                {
                    fds.Add(new SafeFileHandle(data[i], ownsHandle: true));
                }
            }
            offset += Native.Align(length);
        }
        return fds;
    }

    private static void CloseAll(List<SafeFileHandle> fds)
    {
        foreach (var fd in fds)
        {
            fd.Dispose();
        }
    }

    private static partial class Native
    {
        public const int AfUnix = 1;
        public const int SockSeqPacket = 5;
        public const int SockCloExec = 0x80000;
        public const int SolSocket = 1;
        public const int ScmRights = 1;
        public const int MsgCTrunc = 0x8;
        public const int MsgTrunc = 0x20;
        public const int MsgDontWait = 0x40;
        public const int MsgNoSignal = 0x4000;
        public const int MsgCmsgCloExec = 0x40000000;
        public const int EIntr = 4;
        public const int EAgain = 11;
        public const int EMsgSize = 90;

        [StructLayout(LayoutKind.Sequential)]
        public unsafe struct IoVector
        {
            public byte* Base;
            public nuint Length;
        }

        // struct msghdr (glibc and musl, 64- and 32-bit little-endian: musl's int+padding fields read as size_t).
        [StructLayout(LayoutKind.Sequential)]
        public unsafe struct MessageHeader
        {
            public void* Name;
            public uint NameLength;
            public IoVector* Iov;
            public nuint IovLength;
            public void* Control;
            public nuint ControlLength;
            public int Flags;
        }

        // struct cmsghdr; its data starts at CMSG_ALIGN(sizeof(cmsghdr)).
        [StructLayout(LayoutKind.Sequential)]
        public struct ControlHeader
        {
            public nuint Length;
            public int Level;
            public int Type;
        }

        public static int Align(int length) => (length + IntPtr.Size - 1) & ~(IntPtr.Size - 1);

        /// <summary>CMSG_LEN: header plus <paramref name="dataLength"/> bytes.</summary>
        public static unsafe int ControlLength(int dataLength) => Align(sizeof(ControlHeader)) + dataLength;

        /// <summary>CMSG_SPACE: the buffer room one control message of <paramref name="dataLength"/> bytes takes.</summary>
        public static unsafe int ControlSpace(int dataLength) => Align(sizeof(ControlHeader)) + Align(dataLength);

        public static SeqPacketException Failure(string call, int errno) =>
            new($"{call} failed: {Marshal.GetPInvokeErrorMessage(errno)} (errno {errno})");

        [LibraryImport("libc", EntryPoint = "socketpair", SetLastError = true)]
        public static partial int SocketPair(int domain, int type, int protocol, ref int fds);

        [LibraryImport("libc", EntryPoint = "sendmsg", SetLastError = true)]
        public static unsafe partial nint SendMessage(int fd, MessageHeader* message, int flags);

        [LibraryImport("libc", EntryPoint = "recvmsg", SetLastError = true)]
        public static unsafe partial nint ReceiveMessage(int fd, MessageHeader* message, int flags);
    }
}

/// <summary>
/// One received SEQPACKET packet: <see cref="Length"/> bytes in the caller's buffer and the descriptors it carried.
/// Disposing closes every descriptor not taken with <see cref="TakeSingleFd"/>.
/// </summary>
internal sealed class ReceivedPacket : IDisposable
{
    private readonly List<SafeFileHandle> _fds;

    internal ReceivedPacket(int length, List<SafeFileHandle> fds)
    {
        Length = length;
        _fds = fds;
    }

    /// <summary>Bytes of the packet, at the start of the buffer given to receive.</summary>
    public int Length { get; }

    /// <summary>Descriptors the packet carried and nobody took yet.</summary>
    public int FdCount => _fds.Count;

    /// <summary>The peer closed the connection (SEQPACKET reports it as an empty packet with no descriptors).</summary>
    public bool IsEndOfStream => Length == 0 && _fds.Count == 0;

    /// <summary>
    /// Takes the packet's only descriptor (the caller now owns it); <see cref="SeqPacketException"/> when it carried
    /// none or several (those are closed when the packet is disposed).
    /// </summary>
    public SafeFileHandle TakeSingleFd()
    {
        if (_fds.Count != 1)
        {
            throw new SeqPacketException(_fds.Count == 0
                ? "the packet carries no file descriptor"
                : $"the packet carries {_fds.Count} file descriptors, expected one");
        }
        var fd = _fds[0];
        _fds.Clear();
        return fd;
    }

    /// <summary>Takes every descriptor the packet carried, in the order they were sent (the caller now owns them).</summary>
    public List<SafeFileHandle> TakeAllFds()
    {
        var all = new List<SafeFileHandle>(_fds);
        _fds.Clear();
        return all;
    }

    public void Dispose()
    {
        foreach (var fd in _fds)
        {
            fd.Dispose();
        }
        _fds.Clear();
    }
}

using Ambient.Ctl.Local.Netns;

namespace Ambient.Ctl.Tests;

public sealed class ProcNetTcpTests
{
    private static readonly string[] Lines =
    [
        "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode",
        "   0: 00000000:3A9E 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 1 1 0 100 0 0 10 0",
        "   1: 99B701AC:1F90 0100007F:D431 01 00000000:00000000 00:00000000 00000000     0        0 2 1 0 20 4 30 10 -1",
    ];

    [Fact]
    public void A_listening_socket_counts_on_its_port_only()
    {
        Assert.True(ProcNetTcp.Listens(Lines, 15006)); // 0x3A9E, LISTEN
        Assert.False(ProcNetTcp.Listens(Lines, 8080)); // 0x1F90, but ESTABLISHED
        Assert.False(ProcNetTcp.Listens(Lines, 80));
    }

    [Fact]
    public void An_unreadable_file_is_not_listening()
    {
        Assert.False(ProcNetTcp.Listens("/proc/0/net/tcp-none", 8080));
    }
}

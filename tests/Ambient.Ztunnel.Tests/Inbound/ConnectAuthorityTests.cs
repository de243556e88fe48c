using System.Net;
using Ambient.Hbone.Server;

namespace Ambient.Ztunnel.Tests.Inbound;

public class ConnectAuthorityTests
{
    [Theory]
    [InlineData("10.0.0.5:8080", "10.0.0.5", 8080)]
    [InlineData("127.0.0.1:1", "127.0.0.1", 1)]
    [InlineData("255.255.255.255:65535", "255.255.255.255", 65535)]
    [InlineData("[fd00::5]:80", "fd00::5", 80)]
    [InlineData("[::1]:15008", "::1", 15008)]
    [InlineData("[2001:db8:0:0:0:0:0:1]:443", "2001:db8::1", 443)]
    public void Accepts_Ip_And_Port(string authority, string ip, int port)
    {
        Assert.True(ConnectAuthority.TryParse(authority, out var target, out var error), error);
        Assert.Equal(new IPEndPoint(IPAddress.Parse(ip), port), target);
    }

    [Theory]
    [InlineData("", "missing")]
    [InlineData("example.com:80", "IP address")]
    [InlineData("10.0.0.5", "ip:port")]
    [InlineData("10.0.0.5:", "port")]
    [InlineData("10.0.0.5:0", "port")]
    [InlineData("10.0.0.5:65536", "port")]
    [InlineData("10.0.0.5:+80", "port")]
    [InlineData("10.0.0.5:080x", "port")]
    [InlineData("10.1:80", "dotted-quad")]
    [InlineData("0x7f.0.0.1:80", "dotted-quad")]
    [InlineData("::1:80", "ip:port")]
    [InlineData("[::1]", "[ipv6]:port")]
    [InlineData("[::1]80", "[ipv6]:port")]
    [InlineData("[fe80::1%eth0]:80", "IP address")]
    [InlineData("[10.0.0.5]:80", "IPv6")]
    [InlineData("[::ffff:10.0.0.5]:80", "IPv6")]
    public void Rejects_Anything_Else_With_A_Reason(string authority, string reasonPart)
    {
        Assert.False(ConnectAuthority.TryParse(authority, out var target, out var error));
        Assert.Null(target);
        Assert.Contains(reasonPart, error, StringComparison.Ordinal);
    }
}

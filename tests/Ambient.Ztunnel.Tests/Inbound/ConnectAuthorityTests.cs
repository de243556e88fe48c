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

    [Theory]
    [InlineData("echo.demo.svc.cluster.local:80", "echo.demo.svc.cluster.local", 80)]
    [InlineData("Echo.Demo.svc.cluster.local:8080", "echo.demo.svc.cluster.local", 8080)]
    [InlineData("localhost:1", "localhost", 1)]
    [InlineData("a-b.c9:65535", "a-b.c9", 65535)]
    public void TryParseTarget_Accepts_A_Service_Hostname(string authority, string host, int port)
    {
        Assert.True(ConnectAuthority.TryParseTarget(authority, out var address, out var hostname, out int parsedPort, out var error), error);
        Assert.Null(address);
        Assert.Equal(host, hostname);
        Assert.Equal(port, parsedPort);
    }

    [Fact]
    public void TryParseTarget_Still_Takes_Addresses_As_Addresses()
    {
        Assert.True(ConnectAuthority.TryParseTarget("10.0.0.5:8080", out var address, out var hostname, out int port, out _));
        Assert.Equal(IPEndPoint.Parse("10.0.0.5:8080"), address);
        Assert.Null(hostname);
        Assert.Equal(8080, port);
    }

    [Theory]
    [InlineData("127.1:80", "dotted-quad")]
    [InlineData("0x7f.0.0.1:80", "dotted-quad")]
    [InlineData("echo.demo:0", "port")]
    [InlineData("echo.demo:", "port")]
    [InlineData("echo.demo", "ip:port")]
    [InlineData("-echo.demo:80", "IP address")]
    [InlineData("echo..demo:80", "IP address")]
    [InlineData("echo_demo:80", "IP address")]
    [InlineData("echo.demo:80:80", "ip:port")]
    public void TryParseTarget_Rejects_Malformed_Hostnames_With_A_Reason(string authority, string reasonPart)
    {
        Assert.False(ConnectAuthority.TryParseTarget(authority, out var address, out var hostname, out _, out var error));
        Assert.Null(address);
        Assert.Null(hostname);
        Assert.Contains(reasonPart, error, StringComparison.Ordinal);
    }
}

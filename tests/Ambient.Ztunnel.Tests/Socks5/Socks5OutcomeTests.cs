using System.Net;
using System.Net.Sockets;
using Ambient.Core.Model;
using Ambient.Ztunnel.Proxy.Outbound;
using Ambient.Ztunnel.Proxy.Socks5;
using Microsoft.Extensions.Logging.Abstractions;
using static Ambient.Ztunnel.Tests.Outbound.OutboundTestMesh;

namespace Ambient.Ztunnel.Tests.Socks5;

/// <summary>The SOCKS5 front door's answer for every outcome of the outbound proxy.</summary>
public sealed class Socks5OutcomeTests
{
    [Theory]
    [InlineData(nameof(OutboundError.None), (byte)0)]
    [InlineData(nameof(OutboundError.NoRoute), (byte)4)]
    [InlineData(nameof(OutboundError.PortNotExposed), (byte)5)]
    [InlineData(nameof(OutboundError.MeshEndpoint), (byte)2)]
    [InlineData(nameof(OutboundError.SourceNotInMesh), (byte)2)]
    [InlineData(nameof(OutboundError.Denied), (byte)2)]
    [InlineData(nameof(OutboundError.ConnectionRefused), (byte)5)]
    [InlineData(nameof(OutboundError.Unreachable), (byte)4)]
    public void Every_outcome_has_its_reply_code(string error, byte expected)
    {
        Assert.Equal(expected, (byte)Socks5Reply.CodeFor(Enum.Parse<OutboundError>(error)));
    }

    [Fact]
    public void No_outcome_falls_through_to_general_failure()
    {
        foreach (var error in Enum.GetValues<OutboundError>())
        {
            Assert.NotEqual(Socks5ReplyCode.GeneralFailure, Socks5Reply.CodeFor(error));
        }
    }

    public static TheoryData<string, byte> Refusals => new()
    {
        { "unknown host", 4 },
        { "port the service does not expose", 5 },
        { "a ztunnel port", 2 },
        { "closed port", 5 },
        { "in-mesh pod, source not in the mesh", 2 },
    };

    [Theory]
    [MemberData(nameof(Refusals))]
    public async Task The_real_outbound_proxy_behind_the_listener_answers_each_refusal(string what, byte expectedReply)
    {
        using var closed = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
        closed.Bind(new IPEndPoint(IPAddress.Loopback, 0));
        var service = Service(waypoint: null);
        var inMeshPod = IPAddress.Parse("10.0.0.7");
        var state = Mesh(service, Pod("echo-1", "demo", "echo", inMeshPod, serviceKey: service.Key));
        await using var pool = NoTunnelPool();
        var proxy = new OutboundProxy(state, pool, new Ambient.Ztunnel.Telemetry.ConnectionMetrics(), NullLogger.Instance);
        await using var listener = Socks5Listener.Start(new IPEndPoint(IPAddress.Loopback, 0), proxy, NullLogger.Instance);
        byte[] request = what switch
        {
            "unknown host" => Socks5Wire.ConnectDomain("nowhere.example", 80),
            "port the service does not expose" => Socks5Wire.ConnectIPv4(new IPEndPoint(ServiceVip, 81)),
            "a ztunnel port" => Socks5Wire.ConnectIPv4(new IPEndPoint(IPAddress.Loopback, 15000)),
            "closed port" => Socks5Wire.ConnectIPv4((IPEndPoint)closed.LocalEndPoint!),
            _ => Socks5Wire.ConnectIPv4(new IPEndPoint(inMeshPod, 8080)),
        };

        using var client = await Socks5Wire.OpenAsync(listener.LocalEndPoint);
        var reply = await Socks5Wire.HandshakeAsync(client, request);

        Assert.Equal(expectedReply, reply[1]);
    }
}

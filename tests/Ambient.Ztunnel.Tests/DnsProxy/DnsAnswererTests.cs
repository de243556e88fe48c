using System.Net;
using Ambient.Ztunnel.DnsProxy;
using static Ambient.Ztunnel.Tests.DnsProxy.DnsTestKit;

namespace Ambient.Ztunnel.Tests.DnsProxy;

/// <summary>What the proxy answers from the mesh, and what it leaves to the upstream resolver.</summary>
public class DnsAnswererTests
{
    private readonly DnsAnswerer _answerer = new(Mesh());

    private (DnsAction Action, Response? Response) Ask(byte[] query, IPAddress? from = null, bool overTcp = false)
    {
        var buffer = new byte[overTcp ? 65535 : 1232];
        var action = _answerer.Answer(query, from ?? DemoClient, overTcp, buffer, out var length, out _);
        return (action, action == DnsAction.Respond ? Read(buffer.AsSpan(0, length)) : null);
    }

    [Theory]
    [InlineData("echo")]
    [InlineData("echo.demo")]
    [InlineData("echo.demo.svc")]
    [InlineData("echo.demo.svc.cluster.local")]
    [InlineData("echo.demo.svc.cluster.local.")]
    [InlineData("ECHO.Demo.SVC.cluster.LOCAL")]
    public void EveryNameForm_AnswersTheVip_Authoritatively(string name)
    {
        var (action, response) = Ask(Query(name, id: 0x4242));
        Assert.Equal(DnsAction.Respond, action);
        Assert.Equal(0x4242, response!.Id);
        Assert.True(response.IsResponse);
        Assert.True(response.Authoritative);
        Assert.Equal(0, response.ResponseCode);
        Assert.Equal([IPAddress.Parse("10.96.0.10")], response.Addresses);
        Assert.Equal(30u, response.Answers[0].Ttl);
    }

    [Fact]
    public void BareName_IsRelativeToTheClientsNamespace()
    {
        Assert.Equal([IPAddress.Parse("10.96.0.10")], Ask(Query("echo"), DemoClient).Response!.Addresses);
        Assert.Equal([IPAddress.Parse("10.96.1.10")], Ask(Query("echo"), OtherClient).Response!.Addresses);
        // Qualified names mean the same service from anywhere.
        Assert.Equal([IPAddress.Parse("10.96.0.10")], Ask(Query("echo.demo"), OtherClient).Response!.Addresses);
        Assert.Equal([IPAddress.Parse("10.96.1.10")], Ask(Query("echo.other.svc"), DemoClient).Response!.Addresses);
    }

    [Fact]
    public void BareName_FromAnAddressThatIsNoWorkload_IsForwarded_QualifiedNamesStillAnswered()
    {
        var host = IPAddress.Parse("127.0.0.1");
        Assert.Equal(DnsAction.Forward, Ask(Query("echo"), host).Action);
        Assert.Equal([IPAddress.Parse("10.96.0.10")], Ask(Query("echo.demo"), host).Response!.Addresses);
    }

    [Fact]
    public void Aaaa_WithNoV6Vip_IsNoData_AndDualStackAnswersBoth()
    {
        var noData = Ask(Query("echo.demo", TypeAaaa)).Response!;
        Assert.Equal(0, noData.ResponseCode);
        Assert.True(noData.Authoritative);
        Assert.Empty(noData.Answers);

        Assert.Equal([IPAddress.Parse("fd00::11")], Ask(Query("dual", TypeAaaa)).Response!.Addresses);
        Assert.Equal([IPAddress.Parse("10.96.0.11")], Ask(Query("dual", TypeA)).Response!.Addresses);
    }

    [Fact]
    public void OtherTypes_ForAServiceName_AreNoData()
    {
        var response = Ask(Query("echo.demo", TypeTxt)).Response!;
        Assert.Equal(0, response.ResponseCode);
        Assert.Empty(response.Answers);
    }

    [Theory]
    [InlineData("nope.demo.svc.cluster.local")]
    [InlineData("google.com.demo.svc.cluster.local")]
    [InlineData("db-0.headless.demo.svc.cluster.local")]
    public void UnknownNames_UnderTheServiceZone_AreNxDomain(string name)
    {
        var response = Ask(Query(name)).Response!;
        Assert.Equal(3, response.ResponseCode);
        Assert.True(response.Authoritative);
        Assert.Empty(response.Answers);
    }

    [Fact]
    public void NamespaceLevelName_IsNoData_NotNxDomain()
    {
        // An NXDOMAIN here would tell an RFC 8020 resolver that no service exists in the namespace.
        var response = Ask(Query("demo.svc.cluster.local")).Response!;
        Assert.Equal(0, response.ResponseCode);
        Assert.Empty(response.Answers);
    }

    [Theory]
    [InlineData("example.com")]
    [InlineData("nope")]
    [InlineData("nope.demo")]
    [InlineData("nope.demo.svc")]
    [InlineData("cluster.local")]
    [InlineData("")]
    public void OtherNames_AreForwarded(string name)
    {
        // Shorter forms that expand to nothing may be real names elsewhere (example.com has two labels too): forwarded,
        // as Istio's ztunnel does; the client's search list gets to the FQDN form, which is NXDOMAIN.
        Assert.Equal(DnsAction.Forward, Ask(Query(name)).Action);
    }

    [Fact]
    public void HeadlessService_AnswersItsEndpoints()
    {
        Assert.Equal([IPAddress.Parse("10.244.0.5")], Ask(Query("headless")).Response!.Addresses);
    }

    [Fact]
    public void Edns_IsEchoed_AndAnUnknownVersionIsBadVers()
    {
        var response = Ask(Query("echo", ednsPayload: 1232)).Response!;
        Assert.True(response.HasOpt);
        Assert.Single(response.Addresses);

        var badVersion = Ask(Query("echo", ednsPayload: 1232, ednsVersion: 1)).Response!;
        Assert.True(badVersion.HasOpt);
        Assert.Equal(1, badVersion.ExtendedResponseCode);
        Assert.Empty(badVersion.Answers);
    }

    [Fact]
    public void TooManyAddresses_ForUdp_AreTruncated_AndWholeOverTcp()
    {
        var udp = Ask(Query("wide")).Response!;
        Assert.True(udp.Truncated);
        Assert.Empty(udp.Answers);

        var tcp = Ask(Query("wide"), overTcp: true).Response!;
        Assert.False(tcp.Truncated);
        Assert.Equal(100, tcp.Addresses.Count);
    }

    [Fact]
    public void FollowsTheSnapshot()
    {
        var state = Mesh();
        var answerer = new DnsAnswerer(state);
        var buffer = new byte[512];
        Assert.Equal(DnsAction.Respond, answerer.Answer(Query("echo.demo"), DemoClient, false, buffer, out _, out _));
        state.Update(Ambient.Core.Model.MeshSnapshot.Create([], [Service("fresh", "demo", "10.96.9.9")], Ambient.Core.Model.MeshOptions.Default));
        answerer.Answer(Query("echo.demo.svc.cluster.local"), DemoClient, false, buffer, out var length, out _);
        Assert.Equal(3, Read(buffer.AsSpan(0, length)).ResponseCode);
        answerer.Answer(Query("fresh.demo"), DemoClient, false, buffer, out length, out _);
        Assert.Equal([IPAddress.Parse("10.96.9.9")], Read(buffer.AsSpan(0, length)).Addresses);
    }

    [Fact]
    public void LocalAnswers_AllocateNothing()
    {
        var query = Query("echo", id: 7);
        var buffer = new byte[512];
        _answerer.Answer(query, DemoClient, false, buffer, out _, out _);
        var before = GC.GetAllocatedBytesForCurrentThread();
        for (var i = 0; i < 1000; i++)
        {
            _answerer.Answer(query, DemoClient, false, buffer, out _, out _);
        }
        Assert.Equal(0, GC.GetAllocatedBytesForCurrentThread() - before);
    }

    [Fact]
    public void RandomAndMangledMessages_NeverThrow()
    {
        var random = new Random(1035);
        var valid = Query("echo.demo", ednsPayload: 1232);
        var buffer = new byte[1232];
        for (var i = 0; i < 200_000; i++)
        {
            var message = Junk(random, valid, maxRandomLength: 300, keepResponses: false);
            try
            {
                _answerer.Answer(message, DemoClient, overTcp: i % 3 == 0, buffer, out var length, out _);
                Assert.InRange(length, 0, buffer.Length);
            }
            catch (Exception e) when (e is not Xunit.Sdk.XunitException)
            {
                Assert.Fail($"message {Convert.ToHexString(message)}: {e}");
            }
        }
    }
}

using Ambient.Ctl.Local.NodeAgent;
using Ambient.TestCommon;
using Microsoft.Extensions.Logging.Abstractions;
using Kind = Ambient.Core.Protos.Zds.WorkloadRequest.PayloadOneofCase;

namespace Ambient.Ctl.Tests.NodeAgent;

/// <summary>Enrol and leave end to end (root): the rules in a test namespace and the ZDS exchange with a fake ztunnel.</summary>
public sealed class InPodNodeAgentTests : IDisposable
{
    private static CancellationToken Ct => TestContext.Current.CancellationToken;
    private static readonly TimeSpan Wait = TimeSpan.FromSeconds(10);
    private readonly TempDir _dir = new();

    private NodeAgentOptions Options(TimeSpan? enrollTimeout = null) =>
        NodeAgentOptions.Default(Path.Combine(_dir.Path, "zds.sock"), redirectDns: true) with { EnrollTimeout = enrollTimeout ?? Wait };

    private static readonly ZdsPod Client = ZdsPod.For("Kubernetes", "demo", "client", "client");

    private static bool Captured(PodNetns netns) => netns.Exec("iptables-save").Contains("-j ISTIO_OUTPUT", StringComparison.Ordinal);

    [Fact]
    public async Task Enrol_waits_for_the_ztunnel_with_the_rules_already_in_place_and_leave_removes_the_capture_then_deletes_then_the_return_path()
    {
        using var netns = TestNetns.Create();
        var options = Options();
        await using var agent = InPodNodeAgent.Start(options, NullLogger.Instance);

        var enrolling = agent.EnrollAsync(Client, netns.Path, Ct);
        // The rules go in first; enrolment then waits for a ztunnel.
        var deadline = DateTime.UtcNow + Wait;
        while (!Captured(netns))
        {
            Assert.True(DateTime.UtcNow < deadline, "the rules were not installed");
            await Task.Delay(50, Ct);
        }
        await Task.Delay(200, Ct);
        Assert.False(enrolling.IsCompleted, "enrolment completed with no ztunnel connected");

        using var ztunnel = await FakeZtunnel.ConnectAsync(options.SocketPath, Ct);
        var add = await ztunnel.ReceiveAsync(Ct);
        Assert.NotNull(add);
        using (var fd = add.Value.Fd)
        {
            Assert.NotNull(fd);
            using var expected = File.OpenHandle(netns.Path);
            Assert.Equal(ZdsServerTests.Namespace(expected), ZdsServerTests.Namespace(fd));
        }
        Assert.Equal("Kubernetes//Pod/demo/client", add.Value.Request.Add.Uid);
        await ztunnel.AckAsync(Ct);
        await enrolling.WaitAsync(Wait, Ct);
        await ztunnel.ExpectAsync(Kind.SnapshotSent, Ct);
        await ztunnel.AckAsync(Ct);
        Assert.Equal(["Kubernetes//Pod/demo/client"], agent.EnrolledUids);

        var leaving = agent.UnenrollAsync(Client.Uid, Ct);
        await ztunnel.ExpectAsync(Kind.Del, Ct);
        // Istio's order: the capture is gone before the ztunnel is told (it still answers what the capture gave it);
        // the return path to the ztunnel stays until it has let go of the pod.
        var save = netns.Exec("iptables-save");
        Assert.DoesNotContain("REDIRECT", save, StringComparison.Ordinal);
        Assert.DoesNotContain("*raw\n:ISTIO", save, StringComparison.Ordinal);
        Assert.Contains("CONNMARK --restore-mark", save, StringComparison.Ordinal);
        Assert.Contains("fwmark 0x111/0xfff lookup 100", netns.Exec("ip", "rule", "show"), StringComparison.Ordinal);
        await ztunnel.AckAsync(Ct);
        await leaving.WaitAsync(Wait, Ct);
        Assert.False(Captured(netns));
        Assert.DoesNotContain("0x111", netns.Exec("ip", "rule", "show"), StringComparison.Ordinal);
        Assert.Equal("", netns.Exec("ip", "route", "show", "table", "100").Trim());
        Assert.Empty(agent.EnrolledUids);
    }

    [Fact]
    public async Task A_refused_enrolment_fails_and_leaves_the_pod_uncaptured()
    {
        using var netns = TestNetns.Create();
        var options = Options();
        await using var agent = InPodNodeAgent.Start(options, NullLogger.Instance);
        using var ztunnel = await FakeZtunnel.ConnectPastEmptySnapshotAsync(options.SocketPath, Ct);

        var enrolling = agent.EnrollAsync(Client, netns.Path, Ct);
        await ztunnel.ExpectAsync(Kind.Add, Ct);
        await ztunnel.AckAsync(Ct, "no such workload");
        var error = await Assert.ThrowsAsync<ZdsException>(() => enrolling.WaitAsync(Wait, Ct));
        Assert.Contains("no such workload", error.Message, StringComparison.Ordinal);
        Assert.False(Captured(netns));
        Assert.Empty(agent.EnrolledUids);
    }

    [Fact]
    public async Task With_no_ztunnel_enrolment_times_out_and_leaves_the_pod_uncaptured()
    {
        using var netns = TestNetns.Create();
        await using var agent = InPodNodeAgent.Start(Options(TimeSpan.FromMilliseconds(500)), NullLogger.Instance);
        var error = await Assert.ThrowsAsync<ZdsException>(() => agent.EnrollAsync(Client, netns.Path, Ct));
        Assert.Contains("no ztunnel acked", error.Message, StringComparison.Ordinal);
        Assert.False(Captured(netns));
    }

    [Fact]
    public async Task Pods_keep_their_capture_while_the_agent_is_down()
    {
        using var netns = TestNetns.Create();
        var options = Options();
        var agent = InPodNodeAgent.Start(options, NullLogger.Instance);
        try
        {
            using var ztunnel = await FakeZtunnel.ConnectPastEmptySnapshotAsync(options.SocketPath, Ct);
            var enrolling = agent.EnrollAsync(Client, netns.Path, Ct);
            await ztunnel.ExpectAsync(Kind.Add, Ct);
            await ztunnel.AckAsync(Ct);
            await enrolling.WaitAsync(Wait, Ct);
        }
        finally
        {
            await agent.DisposeAsync();
        }
        Assert.True(Captured(netns));
        Assert.Contains("fwmark 0x111/0xfff lookup 100", netns.Exec("ip", "rule", "show"), StringComparison.Ordinal);
    }

    [Fact]
    public async Task Reconcile_enrols_the_labelled_pods_and_lets_the_unlabelled_leave()
    {
        using var first = TestNetns.Create();
        using var second = TestNetns.Create();
        var options = Options();
        await using var agent = InPodNodeAgent.Start(options, NullLogger.Instance);
        using var ztunnel = await FakeZtunnel.ConnectPastEmptySnapshotAsync(options.SocketPath, Ct);
        var echo = ZdsPod.For("Kubernetes", "demo", "echo", "echo");
        var acker = Task.Run(async () =>
        {
            // Acks every request until the agent goes away.
            while (await ztunnel.ReceiveAsync(Ct) is { } received)
            {
                received.Fd?.Dispose();
                await ztunnel.AckAsync(Ct);
            }
        }, Ct);

        await agent.ReconcileAsync(new Dictionary<string, (ZdsPod, string)> { [Client.Uid] = (Client, first.Path), [echo.Uid] = (echo, second.Path) }, Ct);
        Assert.True(Captured(first));
        Assert.True(Captured(second));

        await agent.ReconcileAsync(new Dictionary<string, (ZdsPod, string)> { [echo.Uid] = (echo, second.Path) }, Ct);
        Assert.False(Captured(first));
        Assert.True(Captured(second));
        Assert.Equal([echo.Uid], agent.EnrolledUids);
    }

    public void Dispose() => _dir.Dispose();
}

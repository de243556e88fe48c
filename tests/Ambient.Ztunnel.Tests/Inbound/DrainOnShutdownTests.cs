using System.Diagnostics;
using Ambient.TestCommon;
using Ambient.Hbone.Server;

namespace Ambient.Ztunnel.Tests.Inbound;

/// <summary>
/// Stopping the HBONE server with an independent client's tunnels open (python3-h2's frame layer): GOAWAY NO_ERROR
/// arrives, a stream opened after it is refused, the open tunnel finishes its transfer, and a tunnel that never ends
/// is cut with its connection once the drain timeout has passed.
/// </summary>
public class DrainOnShutdownTests
{
    private static readonly TimeSpan DrainTimeout = TimeSpan.FromSeconds(4);

    [Fact]
    public async Task Stopping_the_server_sends_GOAWAY_lets_the_open_tunnel_finish_and_cuts_after_the_drain_timeout()
    {
        await using var env = await InboundTestEnvironment.StartAsync(new HboneInboundOptions { Port = 0, DrainTimeout = DrainTimeout });
        await using var client = H2SessionClient.Start(
        [
            "--addr", env.Listener.ToString(), "--ca", env.CaFile, "--cert", env.ClientCertFile, "--key", env.ClientKeyFile,
            "--authority", env.EchoAuthority, "--scenario", "drain", "--send-len", "262144",
        ]);
        await client.WaitForReadyAsync(TimeSpan.FromSeconds(30));

        var clock = Stopwatch.StartNew();
        await env.Server.DisposeAsync();
        var stopped = clock.Elapsed;
        var result = await client.ResultAsync(TimeSpan.FromSeconds(60));

        TestContext.Current.TestOutputHelper?.WriteLine($"{result} (DisposeAsync {stopped.TotalSeconds:F2} s)");
        DrainVerdict.Check(result, DrainTimeout, lastStreamId: 3);
        // The server's own view: it waited for the drain, and not much longer.
        Assert.True(stopped >= DrainTimeout * 0.9 && stopped < DrainTimeout + TimeSpan.FromSeconds(10),
            $"DisposeAsync took {stopped.TotalSeconds:F1} s with a tunnel that never ends (drain timeout {DrainTimeout.TotalSeconds} s)");
    }
}

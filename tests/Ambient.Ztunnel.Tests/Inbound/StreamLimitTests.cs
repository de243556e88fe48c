using System.Globalization;
using System.Text.Json;
using Ambient.TestCommon;

namespace Ambient.Ztunnel.Tests.Inbound;

/// <summary>
/// The inbound server's 200-stream limit against a client that does not wait for SETTINGS_MAX_CONCURRENT_STREAMS:
/// streams over the limit must be refused at once (RST_STREAM REFUSED_STREAM, so the client may retry them
/// elsewhere), never left without an answer.
/// </summary>
public class StreamLimitTests
{
    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public async Task Streams_over_the_limit_get_REFUSED_STREAM_at_once_while_the_others_stay_open(bool staged)
    {
        await using var env = await InboundTestEnvironment.StartAsync();
        // A workload that accepts and then says nothing: the 200 tunnels it takes stay open for the whole test.
        using var silent = new ScriptedServer(static (_, ct) => Task.Delay(Timeout.Infinite, ct));
        env.Targets.Serve(InboundTestEnvironment.Workload, silent.EndPoint);

        await using var client = H2SessionClient.Start(
        [
            "--addr", env.Listener.ToString(), "--ca", env.CaFile, "--cert", env.ClientCertFile, "--key", env.ClientKeyFile,
            "--authority", silent.EndPoint.ToString(), "--scenario", "over-limit", "--streams", "300", "--wait", "20",
            .. staged ? new[] { "--staged" } : [],
        ]);
        var result = await client.ResultAsync(TimeSpan.FromSeconds(60));

        Assert.True(result.GetProperty("error").ValueKind == JsonValueKind.Null, $"client error: {result}");
        Assert.Equal(200, result.GetProperty("server_settings").GetProperty("MAX_CONCURRENT_STREAMS").GetInt32());
        var outcomes = result.GetProperty("outcomes");
        Assert.True(Count(outcomes, "200") == 200, $"expected 200 tunnels answered 200: {result}");
        Assert.True(Count(outcomes, "RST_STREAM REFUSED_STREAM") == 100, $"expected 100 streams refused: {result}");
        Assert.True(Count(outcomes, "none") == 0, $"streams left without an answer: {result}");
        // "At once": well before the 10 s upstream connect timeout could have answered anything for them.
        double lastRefusal = result.GetProperty("last_refusal_s").GetDouble();
        Assert.True(lastRefusal < 5, $"the last refusal came {lastRefusal.ToString(CultureInfo.InvariantCulture)} s after the burst: {result}");
        Assert.False(result.GetProperty("closed").GetBoolean(), $"the connection was closed: {result}");
    }

    private static int Count(JsonElement outcomes, string key) => outcomes.TryGetProperty(key, out var n) ? n.GetInt32() : 0;
}

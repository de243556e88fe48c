using System.Text.Json;
using Ambient.TestCommon;
using Microsoft.Extensions.Logging;

namespace Ambient.Istiod.Tests.Functional;

/// <summary>
/// A NACK over a real stream (python3-grpcio client against a real istiod-lite): istiod-lite logs the client's
/// error_detail, and since the client rolled the rejected response back, the next push re-sends what it lacks.
/// </summary>
public sealed class XdsNackTests : IAsyncLifetime
{
    private const string Uid = "Kubernetes//Pod/";
    private readonly ListLogger _logs = new();
    private IstiodFixture _istiod = null!;

    public async ValueTask InitializeAsync()
    {
        _istiod = await IstiodFixture.StartForGrpcioAsync(Meshes.Demo(), logs: _logs);
    }

    public async ValueTask DisposeAsync() => await _istiod.DisposeAsync();

    private XdsClient StartClient(int nackIndex) => new([IstiodFixture.Interop("xds_client.py"), "--protos", IstiodFixture.ProtoRoot,
        "--target", _istiod.Target, "--root", _istiod.Root, "--token=" + _istiod.TokenOf("node-1"), "--seconds", "60",
        "--nack-index", nackIndex.ToString(System.Globalization.CultureInfo.InvariantCulture)]);

    private async Task<JsonElement> NextAsync(XdsClient client)
    {
        var response = await client.NextAsync();
        Assert.True(!response.TryGetProperty("end", out _), $"the stream ended ({response}); istiod logged: " + string.Join(" | ", _logs.Entries.Select(e => e.Message)));
        return response;
    }

    private static string[] Names(JsonElement response) =>
        response.GetProperty("resources").EnumerateArray().Select(r => r.GetProperty("name").GetString()!).Order(StringComparer.Ordinal).ToArray();

    private async Task<CapturedLogEntry> WaitForLogAsync(Func<CapturedLogEntry, bool> match)
    {
        var deadline = DateTime.UtcNow + TimeSpan.FromSeconds(20);
        while (DateTime.UtcNow < deadline)
        {
            if (_logs.Entries.FirstOrDefault(match) is { } entry)
            {
                return entry;
            }
            await Task.Delay(20);
        }
        Assert.Fail("no such log line; logged: " + string.Join(" | ", _logs.Entries.Select(e => e.Message)));
        return null!;
    }

    [Fact]
    public async Task After_a_nack_the_next_push_resends_the_rejected_resource_with_the_new_change()
    {
        await using var client = StartClient(nackIndex: 1);
        var first = await NextAsync(client);
        Assert.Contains(Uid + "demo/client", Names(first));

        // Push 2 (the client pod at v3) is NACKed: the client keeps the v1 it had.
        _istiod.WriteConfig("client.yaml", Meshes.Pod("client", "demo", "node-1", "client", "client", version: "v3"));
        var rejected = await NextAsync(client);
        Assert.Equal([Uid + "demo/client"], Names(rejected));
        var nack = await WaitForLogAsync(e => e.Message.Contains("xDS NACK", StringComparison.Ordinal));
        Assert.Equal(LogLevel.Warning, nack.Level);
        Assert.Contains("test NACK", nack.Message, StringComparison.Ordinal);
        Assert.Contains("nonce " + rejected.GetProperty("nonce").GetString(), nack.Message, StringComparison.Ordinal);

        // An unrelated change: its push must carry the client pod again, which the client does not hold.
        _istiod.WriteConfig("echo.yaml", Meshes.Pod("echo-v1", "demo", "node-2", "echo", "echo", version: "v2") + Meshes.EchoService);
        var next = await NextAsync(client);
        Assert.Equal([Uid + "demo/client", Uid + "demo/echo-v1"], Names(next));
        var resent = next.GetProperty("resources").EnumerateArray().Single(r => r.GetProperty("name").GetString() == Uid + "demo/client");
        Assert.Equal("v3", resent.GetProperty("labelsVersion").GetString());
    }

    [Fact]
    public async Task A_nack_of_a_removal_removes_again_on_the_next_push()
    {
        await using var client = StartClient(nackIndex: 1);
        await NextAsync(client);
        File.Delete(Path.Combine(_istiod.ConfigFolder, "legacy.yaml"));
        var removal = await NextAsync(client);
        Assert.Equal([Uid + "legacy/legacy-echo"], removal.GetProperty("removed").EnumerateArray().Select(e => e.GetString()));
        await WaitForLogAsync(e => e.Message.Contains("xDS NACK", StringComparison.Ordinal));

        _istiod.WriteConfig("client.yaml", Meshes.Pod("client", "demo", "node-1", "client", "client", version: "v4"));
        var next = await NextAsync(client);
        Assert.Equal([Uid + "demo/client"], Names(next));
        Assert.Equal([Uid + "legacy/legacy-echo"], next.GetProperty("removed").EnumerateArray().Select(e => e.GetString()));
    }
}

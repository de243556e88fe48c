using System.Diagnostics;
using System.Text.Json;

namespace Ambient.Istiod.Tests.Functional;

/// <summary>
/// Delta xDS against a real istiod-lite from python3-grpcio acting as a ztunnel: the initial state of the world,
/// only the changed resources after a YAML edit, removals, reconnects with initial_resource_versions, auth.
/// </summary>
public sealed class XdsInteropTests : IAsyncLifetime
{
    private const string Uid = "Kubernetes//Pod/";
    private readonly Ambient.TestCommon.ListLogger _logs = new();
    private IstiodFixture _istiod = null!;

    public async ValueTask InitializeAsync()
    {
        _istiod = await IstiodFixture.StartForGrpcioAsync(Meshes.Demo(), logs: _logs);
    }

    public async ValueTask DisposeAsync() => await _istiod.DisposeAsync();

    private XdsClient Connect(string? token, string type = "type.googleapis.com/istio.workload.Address", string? initial = null, int nackIndex = -1)
    {
        var args = new List<string> { IstiodFixture.Interop("xds_client.py"), "--protos", IstiodFixture.ProtoRoot,
            "--target", _istiod.Target, "--root", _istiod.Root, "--type", type, "--seconds", "60" };
        // "=" form: a base64url token may start with "-", which argparse would take for an option.
        if (token is not null) { args.Add("--token=" + token); }
        if (initial is not null) { args.AddRange(["--initial", initial]); }
        if (nackIndex >= 0) { args.AddRange(["--nack-index", nackIndex.ToString(System.Globalization.CultureInfo.InvariantCulture)]); }
        return new XdsClient(args);
    }

    private static Dictionary<string, JsonElement> ByName(JsonElement response) =>
        response.GetProperty("resources").EnumerateArray().ToDictionary(r => r.GetProperty("name").GetString()!);

    [Fact]
    public async Task Initial_push_then_only_the_changed_workload_after_a_yaml_edit_then_removal()
    {
        await using var client = Connect(_istiod.TokenOf("node-1"));
        var first = await client.NextAsync();
        var all = ByName(first);
        Assert.Equal("HBONE", all[Uid + "demo/client"].GetProperty("tunnel").GetString());
        Assert.Equal("HBONE", all[Uid + "demo/echo-v1"].GetProperty("tunnel").GetString());
        Assert.Equal("NONE", all[Uid + "legacy/legacy-echo"].GetProperty("tunnel").GetString());
        Assert.Equal("node-2", all[Uid + "demo/echo-v1"].GetProperty("node").GetString());
        Assert.Equal("echo", all[Uid + "demo/echo-v1"].GetProperty("serviceAccount").GetString());
        Assert.Contains("demo/echo.demo.svc.cluster.local", all[Uid + "demo/echo-v1"].GetProperty("services").EnumerateArray().Select(e => e.GetString()));
        var svc = all["demo/echo.demo.svc.cluster.local"];
        Assert.Equal("service", svc.GetProperty("kind").GetString());
        Assert.Equal(80, svc.GetProperty("ports")[0][0].GetInt32());
        // Every pod got its own loopback address.
        var addresses = all.Values.Where(r => r.GetProperty("kind").GetString() == "workload")
            .Select(r => r.GetProperty("addresses")[0].GetString()!).ToArray();
        Assert.All(addresses, a => Assert.StartsWith("127.", a));
        Assert.Equal(addresses.Length, addresses.Distinct().Count());

        // Edit one pod's version label: exactly that workload comes again, nothing else.
        _istiod.WriteConfig("echo.yaml", Meshes.Pod("echo-v1", "demo", "node-2", "echo", "echo", version: "v2") + Meshes.EchoService);
        var update = await client.NextAsync(TimeSpan.FromSeconds(10));
        var changed = ByName(update);
        Assert.Equal([Uid + "demo/echo-v1"], changed.Keys);
        Assert.Equal("v2", changed[Uid + "demo/echo-v1"].GetProperty("labelsVersion").GetString());
        Assert.Empty(update.GetProperty("removed").EnumerateArray());

        // Delete a file: its workload is removed by name.
        File.Delete(Path.Combine(_istiod.ConfigFolder, "legacy.yaml"));
        var removal = await client.NextAsync(TimeSpan.FromSeconds(10));
        Assert.Empty(removal.GetProperty("resources").EnumerateArray());
        Assert.Equal([Uid + "legacy/legacy-echo"], removal.GetProperty("removed").EnumerateArray().Select(e => e.GetString()));
    }

    [Fact]
    public async Task Reconnect_with_initial_resource_versions_gets_only_the_difference()
    {
        Dictionary<string, string> known;
        await using (var client = Connect(_istiod.TokenOf("node-1")))
        {
            var first = await client.NextAsync();
            known = ByName(first).ToDictionary(kv => kv.Key, kv => kv.Value.GetProperty("version").GetString()!);
        }
        // While "disconnected": one pod changes; the client also claims a resource that never existed.
        var before = _istiod.Host.Mesh.Discovery.Current.Number;
        _istiod.WriteConfig("client.yaml", Meshes.Pod("client", "demo", "node-1", "client", "client", version: "v9"));
        await _istiod.Host.Mesh.Discovery.WaitForChangeAsync(before, CancellationToken.None).WaitAsync(TimeSpan.FromSeconds(10));
        known["Kubernetes//Pod/demo/ghost"] = "stale";

        await using var again = Connect(_istiod.TokenOf("node-1"), initial: JsonSerializer.Serialize(known));
        var resume = await again.NextAsync();
        Assert.Equal([Uid + "demo/client"], ByName(resume).Keys);
        Assert.Equal(["Kubernetes//Pod/demo/ghost"], resume.GetProperty("removed").EnumerateArray().Select(e => e.GetString()));
    }

    [Fact]
    public async Task Authorization_type_answers_empty_until_policies_exist()
    {
        await using var client = Connect(_istiod.TokenOf("node-1"), type: "type.googleapis.com/istio.security.Authorization");
        var first = await client.NextAsync();
        Assert.Equal("type.googleapis.com/istio.security.Authorization", first.GetProperty("type_url").GetString());
        Assert.Empty(first.GetProperty("resources").EnumerateArray());
    }

    [Fact]
    public async Task Missing_token_is_unauthenticated()
    {
        await using var client = Connect(token: null);
        var end = await client.NextAsync();
        Assert.Equal("UNAUTHENTICATED", end.GetProperty("code").GetString());
    }

    [Fact]
    public async Task A_nack_of_the_first_push_is_logged_and_the_next_push_resends_everything()
    {
        await using var client = Connect(_istiod.TokenOf("node-1"), nackIndex: 0);
        var first = await client.NextAsync();
        Assert.NotEmpty(first.GetProperty("resources").EnumerateArray());
        var nonce = first.GetProperty("nonce").GetString();
        var deadline = DateTime.UtcNow + TimeSpan.FromSeconds(20);
        while (!_logs.Entries.Any(e => e.Message.Contains($"xDS NACK from node-1: type.googleapis.com/istio.workload.Address nonce {nonce}: test NACK", StringComparison.Ordinal)))
        {
            Assert.True(DateTime.UtcNow < deadline, "the NACK was not logged: " + string.Join(" | ", _logs.Entries.Select(e => e.Message)));
            await Task.Delay(20);
        }

        // The client rolled the whole first push back, so the next push carries everything, not just the change.
        _istiod.WriteConfig("client.yaml", Meshes.Pod("client", "demo", "node-1", "client", "client", version: "v3"));
        var update = await client.NextAsync(TimeSpan.FromSeconds(10));
        Assert.Equal(ByName(first).Keys.Order(StringComparer.Ordinal), ByName(update).Keys.Order(StringComparer.Ordinal));
        Assert.Equal("v3", ByName(update)[Uid + "demo/client"].GetProperty("labelsVersion").GetString());
        Assert.NotEqual(nonce, update.GetProperty("nonce").GetString());
    }
}

namespace Ambient.E2E.Tests;

/// <summary>
/// A request from a pod on one node to a service whose pod is on another node crosses two real ztunnel processes;
/// both report it with both SPIFFE identities, in /metrics and in their access logs (the files ambientctl writes).
/// </summary>
public sealed class CrossNodeAccessLogE2ETests : IAsyncLifetime
{
    private MeshRun? _mesh;
    private MeshRun Mesh => _mesh!;

    public async ValueTask InitializeAsync()
    {
        _mesh = await MeshRun.UpAsync("xnode", ns =>
            MeshYaml.Namespace(ns) + MeshYaml.ServiceAccount(ns, "client") + MeshYaml.ServiceAccount(ns, "echo-sa")
            + MeshYaml.Sleep(ns, "client", "client", "xnode-a") + MeshYaml.Echo(ns, "echo", "echo-sa", "xnode-b"));
    }

    [Fact]
    public async Task CrossNodeRequest_BothZtunnelsLogAndCountBothIdentities()
    {
        var ct = TestContext.Current.CancellationToken;
        var client = Mesh.Pod("client");
        var echo = Mesh.Pod("echo");
        var source = Mesh.Ztunnel("xnode-a");
        var destination = Mesh.Ztunnel("xnode-b");
        Assert.Equal("xnode-a", client.Node);
        Assert.Equal("xnode-b", echo.Node);
        string src = Mesh.Spiffe("client"), dst = Mesh.Spiffe("echo-sa");

        using (var http = MeshRun.ClientIn(client, keepAlive: false))
        {
            Assert.Equal("echo", await http.GetAsync($"http://echo.{Mesh.Namespace}.svc.cluster.local/xnode", ct));
        }

        // Both ends log when the connection closes, which is a moment after the response.
        string? outbound = null, inbound = null;
        await MeshRun.EventuallyAsync(() =>
        {
            outbound = Array.Find(MeshRun.ReadLog(source).Split('\n'), l =>
                l.Contains($"src.identity={src} dst.addr={echo.Address}:15008 dst.hbone_addr={echo.Address}:8080", StringComparison.Ordinal)
                && l.Contains("direction=outbound", StringComparison.Ordinal));
            inbound = Array.Find(MeshRun.ReadLog(destination).Split('\n'), l =>
                l.Contains($"src.identity={src} dst.addr={echo.Address}:8080", StringComparison.Ordinal)
                && l.Contains("direction=inbound", StringComparison.Ordinal));
            return Task.FromResult(outbound is not null && inbound is not null);
        }, TimeSpan.FromSeconds(10), () => Task.FromResult(
            $"missing access log lines (outbound found: {outbound is not null}, inbound found: {inbound is not null})\n"
            + $"--- {source.Name} ---\n{MeshRun.ReadLog(source)}\n--- {destination.Name} ---\n{MeshRun.ReadLog(destination)}"));
        // One format both ways: the same fields, each end naming both identities.
        Assert.Contains($"dst.identity={dst} direction=outbound", outbound, StringComparison.Ordinal);
        Assert.Contains($"dst.identity={dst} direction=inbound", inbound, StringComparison.Ordinal);
        Assert.Contains($"dst.service=echo.{Mesh.Namespace}.svc.cluster.local", outbound, StringComparison.Ordinal);
        // The echo answered with a body, so the byte counts cannot be zero on either side.
        Assert.DoesNotContain("bytes_recv=0 ", outbound, StringComparison.Ordinal);
        Assert.DoesNotContain("bytes_recv=0 ", inbound, StringComparison.Ordinal);

        string[] both = [$"source_principal=\"{src}\"", $"destination_principal=\"{dst}\"", "connection_security_policy=\"mutual_tls\""];
        var sourceMetrics = await MeshRun.MetricsAsync(source);
        var destinationMetrics = await MeshRun.MetricsAsync(destination);
        Assert.True(MeshRun.Sum(sourceMetrics, "istio_tcp_connections_opened_total", [.. both, "reporter=\"source\""]) == 1,
            $"{source.Name} should count exactly one source-side connection with both identities:\n{sourceMetrics}");
        Assert.True(MeshRun.Sum(destinationMetrics, "istio_tcp_connections_opened_total", [.. both, "reporter=\"destination\""]) == 1,
            $"{destination.Name} should count exactly one destination-side connection with both identities:\n{destinationMetrics}");
        Assert.True(MeshRun.Sum(destinationMetrics, "istio_tcp_received_bytes_total", [.. both, "reporter=\"destination\""]) > 0,
            $"{destination.Name} counted no request bytes:\n{destinationMetrics}");
    }

    public ValueTask DisposeAsync()
    {
        _mesh?.Dispose();
        return ValueTask.CompletedTask;
    }
}

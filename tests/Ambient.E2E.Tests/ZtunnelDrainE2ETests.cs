using System.Diagnostics;
using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;
using System.Text.Json;
using Ambient.TestCommon;

namespace Ambient.E2E.Tests;

/// <summary>
/// SIGTERM to a running ztunnel process while an independent HBONE client (python3-h2's frame layer, with a certificate
/// the mesh CA issued) has two tunnels open through it to a raw TCP echo pod: the ztunnel drains as the in-process
/// server does - GOAWAY NO_ERROR, the open tunnel finishes its transfer, the connection is cut after the drain
/// timeout (5 s) - instead of dying at once.
/// </summary>
public sealed class ZtunnelDrainE2ETests : IAsyncLifetime
{
    private const string Python = "/usr/bin/python3";
    private const int EchoPort = 9000;
    private static readonly TimeSpan DrainTimeout = TimeSpan.FromSeconds(5);
    private MeshRun? _mesh;
    private MeshRun Mesh => _mesh!;

    public async ValueTask InitializeAsync()
    {
        var echo = RepoPaths.Interop("tcp_echo_server.py");
        _mesh = await MeshRun.UpAsync("drain", ns =>
            MeshYaml.Namespace(ns) + MeshYaml.ServiceAccount(ns, "client") + MeshYaml.Sleep(ns, "client", "client", "drain-a") + $$$"""
                apiVersion: v1
                kind: Pod
                metadata: {name: tcp-echo, namespace: {{{ns}}}, labels: {app: tcp-echo}}
                spec:
                  nodeName: drain-b
                  containers:
                    - name: echo
                      command: ["{{{Python}}}", "{{{echo}}}"]
                      ports: [{name: tcp, containerPort: {{{EchoPort}}}}]

                """);
    }

    [Fact]
    public async Task Sigterm_sends_GOAWAY_lets_the_open_tunnel_finish_and_cuts_after_the_drain_timeout()
    {
        var echo = Mesh.Pod("tcp-echo");
        var node = Mesh.Ztunnel("drain-b");
        var (cert, key) = await IssueAsync("drain-a", Mesh.Spiffe("client"));

        await using var client = H2SessionClient.Start(
        [
            "--addr", $"{echo.Address}:15008", "--ca", Mesh.RootCertPath, "--cert", cert, "--key", key,
            "--authority", $"{echo.Address}:{EchoPort}", "--scenario", "drain", "--send-len", "262144",
        ]);
        await client.WaitForReadyAsync(TimeSpan.FromSeconds(30));

        Assert.True(MeshRun.Alive(node.Pid, node.StartTicks), $"{node.Name} (pid {node.Pid}) is not running");
        var (code, output) = await MeshRun.RunAsync(new ProcessStartInfo("/bin/kill") { ArgumentList = { "-TERM", node.Pid.ToString(System.Globalization.CultureInfo.InvariantCulture) } },
            TimeSpan.FromSeconds(10));
        Assert.True(code == 0, $"kill -TERM {node.Pid}: {output}");
        var result = await client.ResultAsync(TimeSpan.FromSeconds(60));

        TestContext.Current.TestOutputHelper?.WriteLine(result.ToString());
        DrainVerdict.Check(result, DrainTimeout, lastStreamId: 3);
        // The log is written in batches by one thread: the line may land a moment after the client saw the GOAWAY.
        await MeshRun.EventuallyAsync(() => Task.FromResult(MeshRun.ReadLog(node).Contains("HBONE server stopping: GOAWAY sent on", StringComparison.Ordinal)),
            TimeSpan.FromSeconds(10), () => Task.FromResult($"{node.Name}'s log does not show the drain:\n{MeshRun.ReadLog(node)}"));
    }

    /// <summary>A certificate for <paramref name="identity"/> from the mesh CA, asked for as <paramref name="node"/>'s
    /// ztunnel would (its token, ImpersonatedIdentity), with python3-grpcio.</summary>
    private async Task<(string Cert, string Key)> IssueAsync(string node, string identity)
    {
        var state = Mesh.ReadState();
        var dir = Directory.CreateDirectory(Path.Combine(Mesh.TempPath, "client-pki")).FullName;
        using var key = ECDsa.Create(ECCurve.NamedCurves.nistP256);
        var csrPath = Path.Combine(dir, "client.csr");
        await File.WriteAllTextAsync(csrPath, TestCertificates.CreateWorkloadCsr(key, identity));

        var istiod = state.Components.Single(c => c.Name == "istiod").Address;
        var psi = new ProcessStartInfo(Python);
        foreach (var a in new[]
        {
            RepoPaths.Interop("ca_client.py"), "--protos", Path.Combine(RepoPaths.Root, "core", "Ambient.Core", "Protos"),
            "--target", $"{istiod}:15012", "--root", Mesh.RootCertPath, "--identity", identity, "--csr", csrPath, "--ttl", "3600",
            // "=" form: a base64url token may start with "-", which argparse would read as an option.
            "--token=" + (await File.ReadAllTextAsync(Path.Combine(state.StateFolder, "tokens", node + ".token"))).Trim(),
        })
        {
            psi.ArgumentList.Add(a);
        }
        var (code, output) = await MeshRun.RunAsync(psi, TimeSpan.FromSeconds(60));
        var json = output[..(output.LastIndexOf('}') + 1)];
        Assert.True(code == 0 && json.Contains("\"code\": \"OK\"", StringComparison.Ordinal), $"ca_client.py failed ({code}): {output}");
        using var doc = JsonDocument.Parse(json);
        var chain = string.Join("\n", doc.RootElement.GetProperty("chain").EnumerateArray().Select(c => c.GetString()));
        string certPath = Path.Combine(dir, "client.pem"), keyPath = Path.Combine(dir, "client.key");
        await File.WriteAllTextAsync(certPath, chain);
        await File.WriteAllTextAsync(keyPath, key.ExportPkcs8PrivateKeyPem());
        return (certPath, keyPath);
    }

    public ValueTask DisposeAsync()
    {
        _mesh?.Dispose();
        return ValueTask.CompletedTask;
    }
}

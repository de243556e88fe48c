using System.Diagnostics;
using System.Net.Security;
using System.Net.Sockets;
using System.Security.Authentication;
using System.Security.Cryptography.X509Certificates;
using System.Text.Json;

namespace Ambient.E2E.Tests;

/// <summary>
/// `ambientctl local rotate-root` while about 500 requests/s flow from a client pod through its ztunnel (SOCKS5),
/// HBONE and the echo pod's ztunnel, half on kept-alive connections and half on a new connection each: not one
/// request fails, istiod-lite logs the three phases, and afterwards every ztunnel trusts the new root only and
/// every pod presents a leaf of the new root.
/// </summary>
/// <remarks>
/// Client connections ride pooled HBONE connections, which were authenticated before the rotation and stay up. So
/// that TLS handshakes happen in every phase too, probe pods (an identity each, so a pool entry each) send their
/// first request one after another across the rotation: each opens a new HBONE connection with whichever leaf its
/// identity holds at that moment, to an echo ztunnel holding whichever leaf and bundle it holds then.
/// </remarks>
public sealed class RootRotationE2ETests : IAsyncLifetime
{
    private const int Workers = 16;
    private const int Probes = 14;
    private static readonly TimeSpan ProbeEvery = TimeSpan.FromMilliseconds(500);
    private const double TargetRate = 500;
    private static readonly TimeSpan LoadDuration = TimeSpan.FromSeconds(30);
    private static readonly TimeSpan RotateAt = TimeSpan.FromSeconds(5);
    private MeshRun? _mesh;
    private MeshRun Mesh => _mesh!;

    public async ValueTask InitializeAsync()
    {
        _mesh = await MeshRun.UpAsync("rotate", ns =>
            MeshYaml.Namespace(ns) + MeshYaml.ServiceAccount(ns, "client")
            + MeshYaml.Sleep(ns, "client", "client", "rotate-a") + MeshYaml.Echo(ns, "echo", "default", "rotate-b")
            + string.Concat(Enumerable.Range(0, Probes).Select(i => MeshYaml.ServiceAccount(ns, $"probe-{i}") + ProbePod(ns, i))));
    }

    // A pod that only needs an identity and a SOCKS5 port: a host sleep, not a .NET process.
    private static string ProbePod(string ns, int i) => $$$"""
        apiVersion: v1
        kind: Pod
        metadata: {name: probe-{{{i}}}, namespace: {{{ns}}}}
        spec:
          serviceAccountName: probe-{{{i}}}
          nodeName: rotate-a
          containers: [{name: sleep, command: ["/bin/sleep", "3600"]}]
        ---

        """;

    [Fact]
    public async Task RotateRoot_UnderSteadyTraffic_NoRequestFails_AndOnlyTheNewRootRemains()
    {
        var ct = TestContext.Current.CancellationToken;
        var url = $"http://echo.{Mesh.Namespace}.svc.cluster.local/rotate";
        var clients = new List<MeshRun.PodClient>();
        for (var i = 0; i < Workers; i++)
        {
            clients.Add(MeshRun.ClientIn(Mesh.Pod("client"), keepAlive: i % 2 == 0));
        }
        try
        {
            foreach (var client in clients)
            {
                Assert.Equal("echo", await client.GetAsync(url, ct));
            }
            using var oldRoot = X509Certificate2.CreateFromPem(File.ReadAllText(Mesh.RootCertPath));

            var clock = Stopwatch.StartNew();
            var interval = TimeSpan.FromSeconds(Workers / TargetRate);
            var load = clients.Select((c, i) => PacedAsync(c, keepAlive: i % 2 == 0, url, interval, clock, ct)).ToList();
            await Task.Delay(RotateAt, ct);
            var probes = ProbeAsync(url, clock, ct);
            var rotated = await Mesh.CtlAsync(TimeSpan.FromSeconds(60), "local", "rotate-root");
            var rotatedAt = clock.Elapsed;
            var results = (await Task.WhenAll(load)).SelectMany(r => r).ToList();
            var probeResults = await probes;

            Assert.True(rotated.Code == 0, $"rotate-root failed ({rotated.Code}):\n{rotated.Output}\n{MeshRun.ReadLog(Mesh.Get("istiod"))}");
            var failures = results.Where(r => r.Error is not null).ToList();
            var kept = results.Count(r => r.KeepAlive);
            var rate = results.Count / LoadDuration.TotalSeconds;
            TestContext.Current.TestOutputHelper?.WriteLine(
                $"{results.Count} requests ({kept} kept-alive, {results.Count - kept} new connections) in {LoadDuration.TotalSeconds:F0} s = {rate:F0}/s; rotation done at {rotatedAt.TotalSeconds:F1} s");
            Assert.True(failures.Count == 0, $"{failures.Count} of {results.Count} requests failed during the rotation (done at {rotatedAt.TotalSeconds:F1} s):\n"
                + string.Join("\n", failures.Take(10).Select(f => $"{f.At.TotalSeconds:F2}s {(f.KeepAlive ? "kept" : "new")}: {f.Error}")));
            var probeFailures = probeResults.Where(r => r.Error is not null).ToList();
            Assert.True(probeFailures.Count == 0, $"{probeFailures.Count} of {Probes} first requests on a new HBONE connection failed (rotation done at {rotatedAt.TotalSeconds:F1} s):\n"
                + string.Join("\n", probeFailures.Select(f => $"{f.At.TotalSeconds:F2}s: {f.Error}")));
            TestContext.Current.TestOutputHelper?.WriteLine(
                $"new HBONE connections at {string.Join(", ", probeResults.Select(r => r.At.TotalSeconds.ToString("F1", System.Globalization.CultureInfo.InvariantCulture)))} s");
            // Traffic kept flowing across the whole run, before, during and after the rotation.
            Assert.True(rate >= TargetRate * 0.6, $"only {rate:F0} requests/s");
            Assert.Contains(results, r => r.At > rotatedAt + TimeSpan.FromSeconds(5));

            var istiodLog = MeshRun.ReadLog(Mesh.Get("istiod"));
            foreach (var phase in new[] { "phase 1/3 DistributingBundle", "phase 2/3 Reissuing", "phase 3/3 DroppingOldRoot", "root rotation done" })
            {
                Assert.True(istiodLog.Contains(phase, StringComparison.Ordinal), $"istiod-lite did not log '{phase}':\n{istiodLog}");
            }

            using var newRoot = X509Certificate2.CreateFromPem(File.ReadAllText(Mesh.RootCertPath));
            Assert.NotEqual(oldRoot.Thumbprint, newRoot.Thumbprint);
            foreach (var node in new[] { "rotate-a", "rotate-b" })
            {
                await CheckConfigDumpAsync(Mesh.Ztunnel(node), oldRoot, newRoot);
            }
            foreach (var pod in new[] { "client", "echo" })
            {
                using var presented = await PresentedCertificateAsync(Mesh.Pod(pod).Address!);
                Assert.True(ChainsTo(presented, newRoot), $"pod {pod} presents a leaf that does not chain to the new root");
                Assert.False(ChainsTo(presented, oldRoot), $"pod {pod} still presents a leaf of the old root");
            }
        }
        finally
        {
            foreach (var client in clients)
            {
                client.Dispose();
            }
        }
    }

    private sealed record Outcome(TimeSpan At, bool KeepAlive, string? Error);

    /// <summary>One first request per probe pod, <see cref="ProbeEvery"/> apart: a new HBONE handshake each.</summary>
    private async Task<List<Outcome>> ProbeAsync(string url, Stopwatch clock, CancellationToken ct)
    {
        var outcomes = new List<Outcome>();
        for (var i = 0; i < Probes; i++)
        {
            using var probe = MeshRun.ClientIn(Mesh.Pod($"probe-{i}"), keepAlive: false);
            string? error = null;
            try
            {
                var pod = await probe.GetAsync(url, ct);
                if (pod != "echo") error = $"answered by {pod}";
            }
            catch (Exception e) when (e is not OperationCanceledException || !ct.IsCancellationRequested)
            {
                error = $"probe-{i}: " + e.GetType().Name + ": " + e.Message + (e.InnerException is { } inner ? " <- " + inner.Message : "");
            }
            outcomes.Add(new Outcome(clock.Elapsed, KeepAlive: false, error));
            await Task.Delay(ProbeEvery, ct);
        }
        return outcomes;
    }

    /// <summary>One request every <paramref name="interval"/> (no catching up in bursts) until the load duration ends.</summary>
    private static async Task<List<Outcome>> PacedAsync(MeshRun.PodClient client, bool keepAlive, string url, TimeSpan interval, Stopwatch clock, CancellationToken ct)
    {
        var outcomes = new List<Outcome>();
        var next = clock.Elapsed;
        while (clock.Elapsed < LoadDuration)
        {
            string? error = null;
            try
            {
                var pod = await client.GetAsync(url, ct);
                if (pod != "echo") error = $"answered by {pod}";
            }
            catch (Exception e) when (e is not OperationCanceledException || !ct.IsCancellationRequested)
            {
                error = e.GetType().Name + ": " + e.Message + (e.InnerException is { } i ? " <- " + i.Message : "");
            }
            outcomes.Add(new Outcome(clock.Elapsed, keepAlive, error));
            next += interval;
            var wait = next - clock.Elapsed;
            if (wait > TimeSpan.Zero)
            {
                await Task.Delay(wait, ct);
            }
            else
            {
                next = clock.Elapsed;
            }
        }
        return outcomes;
    }

    /// <summary>The ztunnel's bundle holds the new root alone, and each certificate it holds chains to it only.</summary>
    private static async Task CheckConfigDumpAsync(MeshRun.Component ztunnel, X509Certificate2 oldRoot, X509Certificate2 newRoot)
    {
        var text = await MeshRun.Plain.GetStringAsync($"http://{ztunnel.Address}:15000/config_dump", TestContext.Current.CancellationToken);
        using var dump = JsonDocument.Parse(text);
        var bundle = dump.RootElement.GetProperty("trustBundle").EnumerateArray()
            .Select(e => X509Certificate2.CreateFromPem(e.GetString())).ToList();
        Assert.True(bundle.Count == 1 && bundle[0].Thumbprint == newRoot.Thumbprint,
            $"{ztunnel.Name} trusts {string.Join(", ", bundle.Select(b => b.Subject + " " + b.Thumbprint))}, not the new root alone");
        var certificates = dump.RootElement.GetProperty("certificates").EnumerateArray().ToList();
        Assert.NotEmpty(certificates);
        foreach (var cert in certificates)
        {
            using var leaf = X509Certificate2.CreateFromPem(cert.GetProperty("certChain")[0].GetString());
            var identity = cert.GetProperty("identity").GetString();
            Assert.True(ChainsTo(leaf, newRoot), $"{ztunnel.Name}: {identity} holds a leaf that does not chain to the new root");
            Assert.False(ChainsTo(leaf, oldRoot), $"{ztunnel.Name}: {identity} still holds a leaf of the old root");
        }
    }

    /// <summary>The certificate a pod's HBONE port presents to a fresh TLS 1.3 handshake (we offer none back).</summary>
    private static async Task<X509Certificate2> PresentedCertificateAsync(string podAddress)
    {
        X509Certificate2? presented = null;
        using var socket = new Socket(SocketType.Stream, ProtocolType.Tcp);
        await socket.ConnectAsync(podAddress, 15008, TestContext.Current.CancellationToken);
        await using var ssl = new SslStream(new NetworkStream(socket, ownsSocket: false));
        try
        {
            await ssl.AuthenticateAsClientAsync(new SslClientAuthenticationOptions
            {
                TargetHost = "",
                EnabledSslProtocols = SslProtocols.Tls13,
                ApplicationProtocols = [SslApplicationProtocol.Http2],
                CertificateRevocationCheckMode = X509RevocationMode.NoCheck,
                RemoteCertificateValidationCallback = (_, cert, _, _) =>
                {
                    presented = X509CertificateLoader.LoadCertificate(cert!.GetRawCertData());
                    return true;
                },
            }).WaitAsync(TimeSpan.FromSeconds(10), TestContext.Current.CancellationToken);
        }
        catch (Exception e) when (e is AuthenticationException or IOException)
        {
            // The server wants a client certificate; what it presented is all this check needs.
        }
        return presented ?? throw new InvalidOperationException($"{podAddress}:15008 presented no certificate");
    }

    private static bool ChainsTo(X509Certificate2 leaf, X509Certificate2 root)
    {
        using var chain = new X509Chain();
        chain.ChainPolicy.TrustMode = X509ChainTrustMode.CustomRootTrust;
        chain.ChainPolicy.CustomTrustStore.Add(root);
        chain.ChainPolicy.RevocationMode = X509RevocationMode.NoCheck;
        chain.ChainPolicy.DisableCertificateDownloads = true;
        return chain.Build(leaf);
    }

    public ValueTask DisposeAsync()
    {
        _mesh?.Dispose();
        return ValueTask.CompletedTask;
    }
}

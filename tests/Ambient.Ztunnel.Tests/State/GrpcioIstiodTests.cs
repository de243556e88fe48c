using System.Diagnostics;
using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;
using System.Text.Json;
using System.Threading.Channels;
using Ambient.Core.Identity;
using Ambient.Core.Xds;
using Ambient.Dataplane.Xds;
using Ambient.TestCommon;
using Ambient.Dataplane.Identity;
using Microsoft.Extensions.Logging;

namespace Ambient.Ztunnel.Tests.State;

/// <summary>
/// The ztunnel's CA and xDS clients against another gRPC stack: tests/interop/istiod_server.py on Debian's
/// python3-grpcio, serving TLS with a test PKI. Certificates must come back chained, pushed workloads must land in
/// the client's state, and the python server must see our ACKs and NACKs (with error_detail) on the wire.
/// </summary>
public sealed class GrpcioIstiodTests : IAsyncLifetime
{
    private const string Echo = "Kubernetes//Pod/demo/echo-v1";
    private readonly TempDir _dir = new();
    private readonly ListLogger _logs = new();
    private readonly string _token = Convert.ToBase64String(RandomNumberGenerator.GetBytes(32));
    private X509Certificate2 _root = null!;
    private GrpcioIstiod _server = null!;

    public async ValueTask InitializeAsync()
    {
        _root = TestCertificates.CreateRoot("grpcio-test-root");
        using var serverCert = TestCertificates.IssueServer(_root, IstiodChannel.DefaultServerName);
        var (caCert, caKey) = TestCertificates.WritePem(_dir, "ca", _root);
        var (cert, key) = TestCertificates.WritePem(_dir, "server", serverCert);
        var workloads = JsonSerializer.Serialize(new[] { Workload(Echo, "echo-v1", "127.0.9.9", "echo") });
        _server = await GrpcioIstiod.StartAsync(["--cert", cert, "--key", key, "--ca-cert", caCert, "--ca-key", caKey,
            "--token=" + _token, "--workloads", workloads]);
    }

    public async ValueTask DisposeAsync()
    {
        await _server.DisposeAsync();
        _root.Dispose();
        _dir.Dispose();
    }

    private static Dictionary<string, string> Workload(string uid, string name, string address, string serviceAccount) => new()
    {
        ["uid"] = uid, ["name"] = name, ["namespace"] = "demo", ["address"] = address, ["node"] = "node-1", ["serviceAccount"] = serviceAccount,
    };

    private Uri Address => new($"https://127.0.0.1:{_server.Port}");

    private TrustBundle Trust() => TrustBundle.FromPem(_root.ExportCertificatePem());

    private ILoggerFactory Loggers() => LoggerFactory.Create(b => b.AddProvider(_logs).SetMinimumLevel(LogLevel.Debug));

    private DeltaXdsClient XdsClient(ILoggerFactory loggers) => new(new DeltaXdsClientOptions
    {
        Address = Address,
        Roots = Trust().Roots,
        Token = () => _token,
        NodeName = "node-1",
    }, loggers.CreateLogger("Ambient.Dataplane.Xds"));

    private static Func<JsonElement, bool> Naming(string uid) =>
        e => e.GetProperty("names").EnumerateArray().Any(n => n.GetString() == uid);

    private static Func<JsonElement, bool> WithNonce(JsonElement pushed) =>
        e => e.GetProperty("nonce").GetString() == pushed.GetProperty("nonce").GetString();

    private static async Task UntilAsync(Func<bool> condition, string what)
    {
        var deadline = DateTime.UtcNow + TimeSpan.FromSeconds(30);
        while (!condition())
        {
            Assert.True(DateTime.UtcNow < deadline, "timed out waiting for " + what);
            await Task.Delay(20);
        }
    }

    [Fact]
    public async Task The_ca_client_gets_a_chained_certificate_from_a_grpcio_ca()
    {
        var identity = SpiffeId.Parse("spiffe://cluster.local/ns/demo/sa/echo");
        using var loggers = Loggers();
        var trust = Trust();
        await using var certificates = new CertificateManager(new CertificateManagerOptions
        {
            CaAddress = Address,
            Token = () => _token,
        }, trust, loggers.CreateLogger("Ambient.Dataplane.Identity"));

        certificates.SetIdentities([identity]);

        var csr = await _server.NextAsync("csr");
        Assert.Equal(identity.ToString(), csr.GetProperty("identity").GetString());
        Assert.Equal("Bearer " + _token, csr.GetProperty("authorization").GetString());
        Assert.Equal(86400, csr.GetProperty("ttl").GetInt64());
        Assert.Equal("Kubernetes", csr.GetProperty("clusterid").GetString());
        X509Certificate2? leaf = null;
        X509Certificate2Collection? chain = null;
        await UntilAsync(() => certificates.TryGetCertificate(identity, out leaf, out chain), "the certificate");
        Assert.True(leaf!.HasPrivateKey);
        Assert.True(trust.ValidateChain(leaf, chain, out var chained, out var error), error);
        Assert.Equal(identity, chained);
        Assert.Equal(_root.Thumbprint, chain![^1].Thumbprint);
    }

    [Fact]
    public async Task The_xds_client_applies_pushed_workloads_and_the_grpcio_server_gets_each_ack()
    {
        using var loggers = Loggers();
        await using var xds = XdsClient(loggers);
        xds.Start();
        await xds.WaitForSyncAsync().WaitAsync(TimeSpan.FromSeconds(30));

        Assert.Equal("127.0.9.9", xds.Current.FindWorkloadByUid(Echo)?.Addresses[0].ToString());
        var first = await _server.NextAsync("pushed", Naming(Echo));
        var ack = await _server.NextAsync("ack", WithNonce(first));
        Assert.Equal(XdsTypeUrls.Address, ack.GetProperty("type_url").GetString());

        await _server.SendAsync(new { push = new[] { Workload("Kubernetes//Pod/demo/echo-v2", "echo-v2", "127.0.9.10", "echo") } });
        var second = await _server.NextAsync("pushed", Naming("Kubernetes//Pod/demo/echo-v2"));
        await _server.NextAsync("ack", WithNonce(second));
        await UntilAsync(() => xds.Current.FindWorkloadByUid("Kubernetes//Pod/demo/echo-v2") is not null, "the pushed workload in the client's state");
        Assert.NotNull(xds.Current.FindWorkloadByUid(Echo));
    }

    [Fact]
    public async Task A_bad_resource_pushed_over_the_wire_is_nacked_with_error_detail_logged_and_rolled_back()
    {
        using var loggers = Loggers();
        await using var xds = XdsClient(loggers);
        xds.Start();
        await xds.WaitForSyncAsync().WaitAsync(TimeSpan.FromSeconds(30));
        await _server.NextAsync("ack", WithNonce(await _server.NextAsync("pushed", Naming(Echo))));

        await _server.SendAsync(new { bad = Workload("Kubernetes//Pod/demo/broken", "broken", "127.0.9.11", "echo") });

        var pushed = await _server.NextAsync("pushed", Naming("Kubernetes//Pod/demo/broken"));
        var nack = await _server.NextAsync("nack");
        Assert.Equal(pushed.GetProperty("nonce").GetString(), nack.GetProperty("nonce").GetString());
        Assert.Equal(XdsTypeUrls.Address, nack.GetProperty("type_url").GetString());
        Assert.Equal(3, nack.GetProperty("code").GetInt32());
        var message = nack.GetProperty("message").GetString()!;
        Assert.Contains("demo/broken", message, StringComparison.Ordinal);
        Assert.Contains("3 address bytes", message, StringComparison.Ordinal);
        await UntilAsync(() => _logs.AtLeast(LogLevel.Warning).Any(e => e.Message.Contains("xDS NACK", StringComparison.Ordinal)
            && e.Message.Contains("nonce " + pushed.GetProperty("nonce").GetString(), StringComparison.Ordinal)), "the NACK log line");
        Assert.Null(xds.Current.FindWorkloadByUid("Kubernetes//Pod/demo/broken"));
        Assert.NotNull(xds.Current.FindWorkloadByUid(Echo));
        Assert.Equal(1, xds.Stats.Nacks);

        // The stream stays usable: the next good push is applied and ACKed.
        await _server.SendAsync(new { push = new[] { Workload("Kubernetes//Pod/demo/fixed", "fixed", "127.0.9.12", "echo") } });
        await _server.NextAsync("ack", WithNonce(await _server.NextAsync("pushed", Naming("Kubernetes//Pod/demo/fixed"))));
        await UntilAsync(() => xds.Current.FindWorkloadByUid("Kubernetes//Pod/demo/fixed") is not null, "the fixed workload");
    }
}

/// <summary>tests/interop/istiod_server.py on Debian's /usr/bin/python3 (python3-grpcio), with its events as JSON.</summary>
internal sealed class GrpcioIstiod : IAsyncDisposable
{
    private const string Python = "/usr/bin/python3";
    private readonly Process _process;
    private readonly Channel<JsonElement> _events = Channel.CreateUnbounded<JsonElement>();
    private readonly List<JsonElement> _skipped = [];
    private readonly Task<string> _stderr;

    private GrpcioIstiod(Process process)
    {
        _process = process;
        _stderr = process.StandardError.ReadToEndAsync();
        _ = Task.Run(async () =>
        {
            while (await process.StandardOutput.ReadLineAsync() is { } line)
            {
                _events.Writer.TryWrite(JsonDocument.Parse(line).RootElement.Clone());
            }
            _events.Writer.TryComplete();
        });
    }

    public int Port { get; private set; }

    public static async Task<GrpcioIstiod> StartAsync(IEnumerable<string> args)
    {
        var repo = new DirectoryInfo(AppContext.BaseDirectory);
        while (repo is not null && !File.Exists(Path.Combine(repo.FullName, "Ambient.sln")))
        {
            repo = repo.Parent;
        }
        Assert.NotNull(repo);
        var psi = new ProcessStartInfo(Python)
        {
            RedirectStandardInput = true, RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false,
        };
        psi.ArgumentList.Add(Path.Combine(repo.FullName, "tests", "interop", "istiod_server.py"));
        psi.ArgumentList.Add("--protos");
        psi.ArgumentList.Add(Path.Combine(repo.FullName, "core", "Ambient.Core", "Protos"));
        foreach (var a in args)
        {
            psi.ArgumentList.Add(a);
        }
        Assert.True(File.Exists(Python), $"{Python} is missing: the interop tests need Debian's python3 with python3-grpcio and python3-grpc-tools");
        var server = new GrpcioIstiod(Process.Start(psi)!);
        var listening = await server.NextAsync("listening");
        server.Port = listening.GetProperty("port").GetInt32();
        return server;
    }

    /// <summary>The next event of <paramref name="kind"/> (matching <paramref name="match"/>); other events are kept for later calls.</summary>
    public async Task<JsonElement> NextAsync(string kind, Func<JsonElement, bool>? match = null)
    {
        bool Wanted(JsonElement e) => e.GetProperty("event").GetString() == kind && (match is null || match(e));
        for (var i = 0; i < _skipped.Count; i++)
        {
            if (Wanted(_skipped[i]))
            {
                var found = _skipped[i];
                _skipped.RemoveAt(i);
                return found;
            }
        }
        using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(60));
        try
        {
            while (true)
            {
                var e = await _events.Reader.ReadAsync(timeout.Token);
                if (Wanted(e))
                {
                    return e;
                }
                _skipped.Add(e);
            }
        }
        catch (Exception ex) when (ex is OperationCanceledException or ChannelClosedException)
        {
            var seen = string.Join(", ", _skipped.Select(s => s.GetRawText()));
            var stderr = _process.HasExited ? await _stderr : "(still running)";
            Assert.Fail($"istiod_server.py sent no '{kind}' event; seen: {seen}; stderr: {stderr}");
            throw;
        }
    }

    public async Task SendAsync(object command)
    {
        await _process.StandardInput.WriteLineAsync(JsonSerializer.Serialize(command));
        await _process.StandardInput.FlushAsync();
    }

    public async ValueTask DisposeAsync()
    {
        try
        {
            await SendAsync(new { quit = true });
            await _process.WaitForExitAsync().WaitAsync(TimeSpan.FromSeconds(10));
        }
        catch (Exception e) when (e is TimeoutException or IOException)
        {
            _process.Kill(entireProcessTree: true);
        }
        _process.Dispose();
    }
}

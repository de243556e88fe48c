using System.Diagnostics;
using System.Net;
using System.Net.Sockets;
using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;
using System.Text.Json;
using Ambient.TestCommon;
using Ambient.Core.Memory;
using Ambient.Hbone.Server;
using Ambient.Ztunnel.Proxy.Inbound;
using Microsoft.Extensions.Logging;

namespace Ambient.Ztunnel.Tests.Inbound;

/// <summary>
/// Everything one inbound test needs, on loopback: a test CA, a client cert for ns/client-ns sa/client, the HBONE
/// server listening for workload 127.0.0.1 (port 0) with a server cert for ns/server-ns sa/server, and a TCP echo
/// workload that target 127.0.0.1:echoPort resolves to. Disposing stops everything and deletes the PEM files.
/// </summary>
internal sealed class InboundTestEnvironment : IAsyncDisposable
{
    public static readonly IPAddress Workload = IPAddress.Loopback;

    private InboundTestEnvironment(HboneInboundOptions options, MemoryTrimmer? trimmer)
    {
        Ca = TestCertificates.CreateRoot("test-mesh-root");
        Identity = new TestInboundIdentity(Ca);
        ServerCert = TestCertificates.IssueWorkload(Ca, TestCertificates.Spiffe("server-ns", "server"));
        Identity.SetServerCertificate(Workload, ServerCert);
        Echo = new EchoServer();
        Targets.Serve(Workload, Echo.EndPoint);
        LoggerFactory = Microsoft.Extensions.Logging.LoggerFactory.Create(b => b.AddProvider(Logs).SetMinimumLevel(LogLevel.Debug));
        Server = new HboneInboundServer(options, Identity, Targets, Observer, LoggerFactory,
            trimmer is null ? null : new TrimmingConnectionCounter(trimmer));
        CaFile = Dir.Write("ca.crt", Ca.ExportCertificatePem());
        ClientCert = TestCertificates.IssueWorkload(Ca, TestCertificates.Spiffe("client-ns", "client"));
        (ClientCertFile, ClientKeyFile) = TestCertificates.WritePem(Dir, "client", ClientCert);
    }

    public TempDir Dir { get; } = new();
    public X509Certificate2 Ca { get; }
    public TestInboundIdentity Identity { get; }
    public TestTargets Targets { get; } = new();
    public RecordingObserver Observer { get; } = new();
    public ListLogger Logs { get; } = new();
    public ILoggerFactory LoggerFactory { get; }
    public HboneInboundServer Server { get; }
    public EchoServer Echo { get; }
    public X509Certificate2 ServerCert { get; }
    public X509Certificate2 ClientCert { get; }
    public string CaFile { get; }
    public string ClientCertFile { get; }
    public string ClientKeyFile { get; }
    public IPEndPoint Listener { get; private set; } = null!;

    public string EchoAuthority => Echo.EndPoint.ToString();

    public static Task<InboundTestEnvironment> StartAsync(HboneInboundOptions? options = null, MemoryTrimmer? trimmer = null)
    {
        var env = new InboundTestEnvironment(options ?? new HboneInboundOptions { Port = 0, DrainTimeout = TimeSpan.FromSeconds(1) }, trimmer);
        env.Listener = env.Server.AddListener(Workload);
        return Task.FromResult(env);
    }

    /// <summary>Runs the python3-h2 client with the environment's client cert unless <paramref name="cert"/> says otherwise.</summary>
    public Task<H2Result> ConnectAsync(string authority, int sendLen = 0, IPEndPoint? listener = null,
        (string Cert, string Key)? cert = null, bool noCert = false, params string[] extra)
    {
        var args = new List<string> { "--addr", (listener ?? Listener).ToString(), "--ca", CaFile, "--authority", authority,
            "--send-len", sendLen.ToString(System.Globalization.CultureInfo.InvariantCulture) };
        if (!noCert)
        {
            var (c, k) = cert ?? (ClientCertFile, ClientKeyFile);
            args.AddRange(["--cert", c, "--key", k]);
        }
        args.AddRange(extra);
        return H2Client.RunAsync(args);
    }

    public async ValueTask DisposeAsync()
    {
        await Server.DisposeAsync();
        Echo.Dispose();
        LoggerFactory.Dispose();
        ServerCert.Dispose();
        ClientCert.Dispose();
        Ca.Dispose();
        Dir.Dispose();
    }

    /// <summary>SHA-256 (hex) of the client's payload: byte i = i % 251.</summary>
    public static string PatternSha256(int length)
    {
        var data = new byte[length];
        for (int i = 0; i < length; i++)
            data[i] = (byte)(i % 251);
        return Convert.ToHexStringLower(SHA256.HashData(data));
    }
}

internal sealed record H2Result(int? Status, long EchoedLen, string? EchoedSha256, string Body, string? PeerSerial,
    string? Error, IReadOnlyList<H2Result> Streams, bool Reset, string Raw);

/// <summary>Runs tests/interop/h2_connect_client.py with the Debian python (python3-h2), never the one on PATH.</summary>
internal static class H2Client
{
    private const string Python = "/usr/bin/python3";

    public static async Task<H2Result> RunAsync(IEnumerable<string> args, int timeoutSeconds = 40)
    {
        Assert.True(File.Exists(Python), $"{Python} is missing; the HBONE interop tests need Debian's python3 with python3-h2");
        var psi = new ProcessStartInfo(Python) { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
        psi.ArgumentList.Add(Path.Combine(RepoRoot(), "tests", "interop", "h2_connect_client.py"));
        foreach (var a in args)
            psi.ArgumentList.Add(a);

        using var process = Process.Start(psi)!;
        var stdout = process.StandardOutput.ReadToEndAsync();
        var stderr = process.StandardError.ReadToEndAsync();
        using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(timeoutSeconds));
        try
        {
            await process.WaitForExitAsync(timeout.Token);
        }
        catch (OperationCanceledException)
        {
            process.Kill(entireProcessTree: true);
            Assert.Fail($"h2_connect_client.py did not finish in {timeoutSeconds} s; stderr: {await stderr}");
        }

        string output = (await stdout).Trim();
        string errors = await stderr;
        if (process.ExitCode == 3)
            Assert.Fail("python3-h2 is not installed for /usr/bin/python3: install it (apt-get install python3-h2). " + output);
        Assert.True(process.ExitCode == 0 && output.Length > 0, $"h2 client failed (exit {process.ExitCode}): {output} {errors}");
        using var doc = JsonDocument.Parse(output);
        return Parse(doc.RootElement, output + "\n" + errors);
    }

    private static H2Result Parse(JsonElement e, string raw)
    {
        var streams = new List<H2Result>();
        if (e.TryGetProperty("streams", out var s))
            foreach (var item in s.EnumerateArray())
                streams.Add(Parse(item, item.GetRawText()));
        return new H2Result(
            e.TryGetProperty("status", out var st) && st.ValueKind == JsonValueKind.Number ? st.GetInt32() : null,
            e.TryGetProperty("echoed_len", out var len) && len.ValueKind == JsonValueKind.Number ? len.GetInt64() : 0,
            Str(e, "echoed_sha256"), Str(e, "body") ?? "", Str(e, "peer_serial"), Str(e, "error"), streams,
            e.TryGetProperty("reset", out var r) && r.ValueKind == JsonValueKind.True, raw);
    }

    private static string? Str(JsonElement e, string name) =>
        e.TryGetProperty(name, out var v) && v.ValueKind == JsonValueKind.String ? v.GetString() : null;

    public static string RepoRoot() => RepoPaths.Root;
}

/// <summary>The workload: echoes every byte and answers the client's half-close with its own.</summary>
internal sealed class EchoServer : IDisposable
{
    private readonly Socket _listener;
    private readonly CancellationTokenSource _stop = new();
    private readonly List<Socket> _accepted = new();

    public EchoServer()
    {
        _listener = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
        _listener.Bind(new IPEndPoint(IPAddress.Loopback, 0));
        _listener.Listen(64);
        EndPoint = (IPEndPoint)_listener.LocalEndPoint!;
        _ = AcceptAsync();
    }

    public IPEndPoint EndPoint { get; }

    public int Accepted { get { lock (_accepted) return _accepted.Count; } }

    private async Task AcceptAsync()
    {
        while (!_stop.IsCancellationRequested)
        {
            Socket s;
            try
            {
                s = await _listener.AcceptAsync(_stop.Token);
            }
            catch (Exception)
            {
                return;
            }
            lock (_accepted)
                _accepted.Add(s);
            _ = EchoAsync(s);
        }
    }

    private async Task EchoAsync(Socket s)
    {
        var buffer = new byte[64 * 1024];
        try
        {
            while (true)
            {
                int n = await s.ReceiveAsync(buffer, SocketFlags.None, _stop.Token);
                if (n == 0)
                {
                    s.Shutdown(SocketShutdown.Send);
                    return;
                }
                await s.SendAsync(buffer.AsMemory(0, n), SocketFlags.None, _stop.Token);
            }
        }
        catch (Exception)
        {
        }
    }

    public void Dispose()
    {
        _stop.Cancel();
        _listener.Dispose();
        lock (_accepted)
            foreach (var s in _accepted)
                s.Dispose();
    }
}

/// <summary>A workload whose behaviour per accepted connection is given by the test.</summary>
internal sealed class ScriptedServer : IDisposable
{
    private readonly Socket _listener;
    private readonly CancellationTokenSource _stop = new();

    public ScriptedServer(Func<Socket, CancellationToken, Task> onAccept)
    {
        _listener = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
        _listener.Bind(new IPEndPoint(IPAddress.Loopback, 0));
        _listener.Listen(16);
        EndPoint = (IPEndPoint)_listener.LocalEndPoint!;
        _ = Task.Run(async () =>
        {
            while (!_stop.IsCancellationRequested)
            {
                Socket s;
                try
                {
                    s = await _listener.AcceptAsync(_stop.Token);
                }
                catch (Exception)
                {
                    return;
                }
                _ = Task.Run(async () =>
                {
                    using (s)
                    {
                        try
                        {
                            await onAccept(s, _stop.Token);
                        }
                        catch (Exception)
                        {
                        }
                    }
                });
            }
        });
    }

    public IPEndPoint EndPoint { get; }

    public void Dispose()
    {
        _stop.Cancel();
        _listener.Dispose();
    }
}

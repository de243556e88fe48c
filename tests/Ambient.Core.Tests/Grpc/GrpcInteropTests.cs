using System.Diagnostics;
using System.Text.Json;
using Ambient.Core.Protos.Ca;
using Google.Protobuf;

namespace Ambient.Core.Tests.Grpc;

/// <summary>
/// Our server against an independent client: grpcio (gRPC C-core) from Debian's python3-grpcio, driven by
/// tests/interop/grpc_unary_client.py. Missing tooling fails the test; it is never skipped.
/// </summary>
public sealed class GrpcInteropTests
{
    private const string Python = "/usr/bin/python3";

    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    [Fact]
    public async Task Grpcio_unary_call_ok_with_metadata()
    {
        await using var host = await GrpcTestHost.StartAsync(tls: false);
        var request = new IstioCertificateRequest { Csr = "from-python", ValidityDuration = 42 };

        var result = await RunClientAsync(host, GrpcTestHost.UnaryPath, request.ToByteArray(),
            ["authorization=Bearer py-token", "clusterid=Kubernetes"]);

        Assert.Equal("OK", result.Code);
        var response = IstioCertificateResponse.Parser.ParseFrom(Convert.FromHexString(result.ResponseHex!));
        Assert.Equal("from-python", response.CertChain[0]);
        Assert.Equal("authorization=Bearer py-token", response.CertChain[1]);
        Assert.Equal("clusterid=Kubernetes", response.CertChain[2]);
        Assert.Equal("deadline=set", response.CertChain[3]); // grpcio sent grpc-timeout and we parsed it
        Assert.Equal("validity=42", response.CertChain[6]);
    }

    [Fact]
    public async Task Grpcio_sees_error_status_and_decoded_non_ascii_message()
    {
        await using var host = await GrpcTestHost.StartAsync(tls: false);
        var request = new IstioCertificateRequest { Csr = "fail:16:denied: ünïcødé ✓ 100%" };

        var result = await RunClientAsync(host, GrpcTestHost.UnaryPath, request.ToByteArray(), []);

        Assert.Equal("UNAUTHENTICATED", result.Code);
        Assert.Equal("denied: ünïcødé ✓ 100%", result.Details);
        Assert.Null(result.ResponseHex);
    }

    [Fact]
    public async Task Grpcio_unknown_path_and_deadline()
    {
        await using var host = await GrpcTestHost.StartAsync(tls: false);

        var unknown = await RunClientAsync(host, "/no.Such/Method", [], []);
        var late = await RunClientAsync(host, GrpcTestHost.UnaryPath,
            new IstioCertificateRequest { Csr = "delay:20000" }.ToByteArray(), [], timeoutSeconds: 0.5);

        Assert.Equal("UNIMPLEMENTED", unknown.Code);
        Assert.Equal("DEADLINE_EXCEEDED", late.Code);
        Assert.Equal("cancelled", await host.DelayOutcome.Task.WaitAsync(TimeSpan.FromSeconds(10), Ct));
    }

    private sealed record ClientResult(string Code, string Details, string? ResponseHex);

    private static async Task<ClientResult> RunClientAsync(
        GrpcTestHost host, string path, byte[] request, string[] metadata, double timeoutSeconds = 30)
    {
        EnsureGrpcio();
        var start = NewPython();
        start.ArgumentList.Add(FindScript());
        start.ArgumentList.Add($"127.0.0.1:{host.Server.Port}");
        start.ArgumentList.Add(path);
        start.ArgumentList.Add(Convert.ToHexString(request));
        foreach (var item in metadata)
        {
            start.ArgumentList.Add("--metadata");
            start.ArgumentList.Add(item);
        }

        start.ArgumentList.Add("--timeout");
        start.ArgumentList.Add(timeoutSeconds.ToString(System.Globalization.CultureInfo.InvariantCulture));

        var (exitCode, stdout, stderr) = await RunAsync(start, TimeSpan.FromSeconds(60));
        Assert.True(exitCode == 0, $"grpc_unary_client.py exited with {exitCode}: {stderr}");
        using var json = JsonDocument.Parse(stdout);
        var root = json.RootElement;
        return new ClientResult(
            root.GetProperty("code").GetString()!,
            root.GetProperty("details").GetString()!,
            root.GetProperty("response_hex").GetString());
    }

    private static void EnsureGrpcio()
    {
        if (!File.Exists(Python))
        {
            Assert.Fail($"{Python} not found: install Debian's python3 and python3-grpcio (apt-get install -y python3 python3-grpcio) for the gRPC interop tests.");
        }

        var check = NewPython();
        check.ArgumentList.Add("-c");
        check.ArgumentList.Add("import grpc");
        var (exitCode, _, stderr) = RunAsync(check, TimeSpan.FromSeconds(30)).GetAwaiter().GetResult();
        if (exitCode != 0)
        {
            Assert.Fail($"{Python} cannot import grpc: install python3-grpcio (apt-get install -y python3-grpcio) for the gRPC interop tests. {stderr}");
        }
    }

    private static ProcessStartInfo NewPython()
    {
        var start = new ProcessStartInfo(Python)
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            UseShellExecute = false,
        };

        // Debian's interpreter with Debian's packages only: no virtualenv/pyenv paths leaking in.
        start.Environment.Remove("PYTHONPATH");
        start.Environment.Remove("PYTHONHOME");
        start.Environment["PYTHONIOENCODING"] = "utf-8";
        start.Environment["no_grpc_proxy"] = "*";
        return start;
    }

    private static async Task<(int ExitCode, string Stdout, string Stderr)> RunAsync(ProcessStartInfo start, TimeSpan timeout)
    {
        using var process = Process.Start(start) ?? throw new InvalidOperationException($"could not start {start.FileName}");
        var stdout = process.StandardOutput.ReadToEndAsync(Ct);
        var stderr = process.StandardError.ReadToEndAsync(Ct);
        using var cts = CancellationTokenSource.CreateLinkedTokenSource(Ct);
        cts.CancelAfter(timeout);
        try
        {
            await process.WaitForExitAsync(cts.Token);
        }
        catch (OperationCanceledException)
        {
            process.Kill(entireProcessTree: true);
            throw new TimeoutException($"{start.FileName} {string.Join(' ', start.ArgumentList)} did not finish within {timeout}");
        }

        return (process.ExitCode, await stdout, await stderr);
    }

    private static string FindScript()
    {
        for (var dir = new DirectoryInfo(AppContext.BaseDirectory); dir is not null; dir = dir.Parent)
        {
            var candidate = Path.Combine(dir.FullName, "tests", "interop", "grpc_unary_client.py");
            if (File.Exists(candidate))
            {
                return candidate;
            }
        }

        throw new FileNotFoundException("tests/interop/grpc_unary_client.py not found above " + AppContext.BaseDirectory);
    }
}

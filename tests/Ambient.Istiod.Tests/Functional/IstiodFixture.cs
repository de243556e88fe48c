using System.Diagnostics;
using System.Net;
using System.Text;
using System.Text.Json;
using Ambient.TestCommon;
using Microsoft.Extensions.Logging;

namespace Ambient.Istiod.Tests.Functional;

/// <summary>
/// A real istiod-lite (the same host Program runs) on 127.0.0.1 with an ephemeral port, over a scratch copy of a
/// mesh folder, plus helpers to drive it with the independent python3-grpcio clients in tests/interop.
/// </summary>
internal sealed class IstiodFixture : IAsyncDisposable
{
    private readonly TempDir _dir;

    private IstiodFixture(TempDir dir, IstiodHost host)
    {
        _dir = dir;
        Host = host;
    }

    public IstiodHost Host { get; }
    public string ConfigFolder => Host.Options.ConfigFolder;
    public string StateFolder => Host.Options.StateFolder;
    public string Target => $"127.0.0.1:{Host.GrpcEndpoint.Port}";
    public string Root => Host.RootCertificatePath;
    public string Scratch => _dir.Path;

    /// <param name="logs">Receives istiod-lite's log records (Information and up) when given.</param>
    /// <param name="monitoring">Also serve the plain HTTP /ready and /debug endpoints (on a free loopback port).</param>
    public static async Task<IstiodFixture> StartAsync(IReadOnlyDictionary<string, string> files, TempDir? reuse = null, ListLogger? logs = null, bool monitoring = false)
    {
        var dir = reuse ?? new TempDir();
        var config = Path.Combine(dir.Path, "mesh");
        Directory.CreateDirectory(config);
        foreach (var (name, text) in files)
        {
            File.WriteAllText(Path.Combine(config, name), text);
        }
        var options = new IstiodOptions(config, Path.Combine(dir.Path, "state"), new IPEndPoint(IPAddress.Loopback, 0),
            monitoring ? new IPEndPoint(IPAddress.Loopback, 0) : null, "Kubernetes", "cluster.local");
        var host = await IstiodHost.StartAsync(options, l =>
        {
            l.SetMinimumLevel(LogLevel.Warning);
            if (logs is not null)
            {
                l.SetMinimumLevel(LogLevel.Information);
                l.AddFilter<Microsoft.Extensions.Logging.Console.ConsoleLoggerProvider>(null, LogLevel.Warning);
                l.AddProvider(logs);
            }
        }, CancellationToken.None);
        return new IstiodFixture(dir, host);
    }

    public string TokenOf(string node) => File.ReadAllText(Path.Combine(StateFolder, "tokens", node + ".token")).Trim();

    /// <summary>Starts istiod-lite for tests driven by the python3-grpcio clients, failing first if those are missing.</summary>
    public static Task<IstiodFixture> StartForGrpcioAsync(IReadOnlyDictionary<string, string> files, ListLogger? logs = null)
    {
        Python.Require("grpc", "python3-grpcio");
        Python.Require("grpc_tools.protoc", "python3-grpc-tools");
        return StartAsync(files, reuse: null, logs);
    }

    /// <summary>CreateCertificate through tests/interop/ca_client.py (python3-grpcio); returns its JSON answer.</summary>
    public async Task<JsonElement> CallCaAsync(string csrFile, string? token, string? identity, long ttl = 0)
    {
        var args = new List<string> { Interop("ca_client.py"), "--protos", ProtoRoot,
            "--target", Target, "--root", Root, "--csr", csrFile, "--ttl", ttl.ToString(System.Globalization.CultureInfo.InvariantCulture) };
        // "=" form: a base64url token may start with "-", which argparse would take for an option.
        if (token is not null) { args.Add("--token=" + token); }
        if (identity is not null) { args.AddRange(["--identity", identity]); }
        var (code, stdout, stderr) = await Python.RunAsync(args, TimeSpan.FromSeconds(60));
        Assert.True(code == 0, $"ca_client.py exited {code}: {stderr}");
        return Python.LastJson(stdout);
    }

    public void WriteConfig(string name, string text)
    {
        // Write then rename so the watcher never sees a half-written file.
        var path = Path.Combine(ConfigFolder, name);
        var tmp = Path.Combine(Scratch, name + ".tmp");
        File.WriteAllText(tmp, text);
        File.Move(tmp, path, overwrite: true);
    }

    public async ValueTask DisposeAsync()
    {
        await Host.DisposeAsync();
        _dir.Dispose();
    }

    public static string RepoRoot
    {
        get
        {
            var dir = new DirectoryInfo(AppContext.BaseDirectory);
            while (dir is not null && !File.Exists(Path.Combine(dir.FullName, "Ambient.sln")))
            {
                dir = dir.Parent;
            }
            return dir?.FullName ?? throw new InvalidOperationException("cannot find Ambient.sln above " + AppContext.BaseDirectory);
        }
    }

    public static string ProtoRoot => Path.Combine(RepoRoot, "core", "Ambient.Core", "Protos");

    public static string Interop(string script) => Path.Combine(RepoRoot, "tests", "interop", script);
}

/// <summary>Runs Debian's /usr/bin/python3 (not a pyenv one), failing loudly when a module the test needs is missing.</summary>
internal static class Python
{
    public const string Path = "/usr/bin/python3";

    public static void Require(string module, string package)
    {
        var (code, _, err) = RunAsync(["-c", "import " + module], TimeSpan.FromSeconds(30)).GetAwaiter().GetResult();
        Assert.True(code == 0, $"{Path} cannot import {module}: install the Debian package {package} (scripts/test.sh does it as root). {err}");
    }

    public static async Task<(int Code, string Out, string Err)> RunAsync(IEnumerable<string> args, TimeSpan timeout)
    {
        using var p = Start(args);
        var stdout = p.StandardOutput.ReadToEndAsync();
        var stderr = p.StandardError.ReadToEndAsync();
        using var cts = new CancellationTokenSource(timeout);
        try
        {
            await p.WaitForExitAsync(cts.Token);
        }
        catch (OperationCanceledException)
        {
            p.Kill(entireProcessTree: true);
            throw new TimeoutException($"python {string.Join(' ', args)} did not finish in {timeout}: {await stderr}");
        }
        return (p.ExitCode, await stdout, await stderr);
    }

    public static Process Start(IEnumerable<string> args)
    {
        var psi = new ProcessStartInfo(Path)
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            RedirectStandardInput = true,
            UseShellExecute = false,
            StandardOutputEncoding = Encoding.UTF8,
        };
        foreach (var a in args)
        {
            psi.ArgumentList.Add(a);
        }
        return Process.Start(psi) ?? throw new InvalidOperationException("cannot start " + Path);
    }

    public static JsonElement LastJson(string stdout)
    {
        var lines = stdout.Split('\n', StringSplitOptions.RemoveEmptyEntries);
        Assert.True(lines.Length > 0, "python printed nothing");
        return JsonDocument.Parse(lines[^1]).RootElement.Clone();
    }
}

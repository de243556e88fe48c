using System.Diagnostics;
using System.Net;
using System.Security.Cryptography.X509Certificates;
using Ambient.TestCommon;

namespace Ambient.Core.Tests.Hbone;

/// <summary>
/// Runs tests/interop/h2_connect_server.py (python3-h2, an independent HTTP/2 stack) on /usr/bin/python3 — the Debian
/// interpreter, not a pyenv one on PATH. Missing python3-h2 is a test failure with the install hint, never a skip.
/// </summary>
internal sealed class PythonH2Server : IAsyncDisposable
{
    private const string Python = "/usr/bin/python3";
    private const string InstallHint = "install the Debian package python3-h2 for /usr/bin/python3: apt-get install -y python3-h2";

    private readonly Process _process;
    private readonly List<string> _lines = [];
    private readonly System.Text.StringBuilder _stderr = new();
    private readonly SemaphoreSlim _lineArrived = new(0);

    private PythonH2Server(Process process) => _process = process;

    public int Port { get; private set; }

    public IPEndPoint EndPoint => new(IPAddress.Loopback, Port);

    public static async Task<PythonH2Server> StartAsync(X509Certificate2 root, TempDir dir, string serverIdentity, params string[] flags)
    {
        if (!File.Exists(Python))
        {
            Assert.Fail($"{Python} not found; {InstallHint}");
        }
        RequireH2();
        string name = Guid.NewGuid().ToString("N")[..8];
        string ca = dir.Write(name + "-ca.crt", root.ExportCertificatePem());
        using X509Certificate2 leaf = TestCertificates.IssueWorkload(root, serverIdentity);
        (string cert, string key) = TestCertificates.WritePem(dir, name, leaf);
        var psi = new ProcessStartInfo(Python)
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            UseShellExecute = false,
        };
        psi.ArgumentList.Add("-u");
        psi.ArgumentList.Add(FindScript());
        foreach (string arg in (string[])["--ca", ca, "--cert", cert, "--key", key, .. flags])
        {
            psi.ArgumentList.Add(arg);
        }
        var server = new PythonH2Server(Process.Start(psi)!);
        server._process.OutputDataReceived += (_, e) => server.OnLine(e.Data);
        server._process.ErrorDataReceived += (_, e) =>
        {
            if (e.Data is not null)
            {
                lock (server._stderr)
                {
                    server._stderr.AppendLine(e.Data);
                }
            }
        };
        server._process.BeginOutputReadLine();
        server._process.BeginErrorReadLine();
        string portLine = await server.WaitForLineAsync("PORT ", TimeSpan.FromSeconds(20));
        server.Port = int.Parse(portLine["PORT ".Length..], System.Globalization.CultureInfo.InvariantCulture);
        return server;
    }

    private static void RequireH2()
    {
        var psi = new ProcessStartInfo(Python) { RedirectStandardError = true, RedirectStandardOutput = true, UseShellExecute = false };
        psi.ArgumentList.Add("-c");
        psi.ArgumentList.Add("import h2, hyperframe");
        using var check = Process.Start(psi)!;
        string error = check.StandardError.ReadToEnd();
        check.WaitForExit();
        if (check.ExitCode != 0)
        {
            Assert.Fail($"{Python} cannot import h2 ({error.Trim()}); {InstallHint}");
        }
    }

    private static string FindScript()
    {
        for (DirectoryInfo? dir = new(AppContext.BaseDirectory); dir is not null; dir = dir.Parent)
        {
            string candidate = Path.Combine(dir.FullName, "tests", "interop", "h2_connect_server.py");
            if (File.Exists(candidate))
            {
                return candidate;
            }
        }
        throw new FileNotFoundException("tests/interop/h2_connect_server.py not found above " + AppContext.BaseDirectory);
    }

    private void OnLine(string? line)
    {
        if (line is null)
        {
            return;
        }
        lock (_lines)
        {
            _lines.Add(line);
        }
        _lineArrived.Release();
    }

    public IReadOnlyList<string> Lines
    {
        get { lock (_lines) { return [.. _lines]; } }
    }

    /// <summary>Waits for an output line starting with <paramref name="prefix"/>; fails with the server's output if none.</summary>
    public async Task<string> WaitForLineAsync(string prefix, TimeSpan timeout)
    {
        var deadline = Stopwatch.StartNew();
        while (true)
        {
            lock (_lines)
            {
                foreach (string line in _lines)
                {
                    if (line.StartsWith(prefix, StringComparison.Ordinal))
                    {
                        return line;
                    }
                }
            }
            TimeSpan left = timeout - deadline.Elapsed;
            if (left <= TimeSpan.Zero || _process.HasExited && _lineArrived.CurrentCount == 0)
            {
                string stderr;
                lock (_stderr)
                {
                    stderr = _stderr.ToString();
                }
                Assert.Fail($"python h2 server printed no '{prefix}' line within {timeout}; stdout: [{string.Join(" | ", Lines)}] stderr: {stderr}");
            }
            await _lineArrived.WaitAsync(left < TimeSpan.FromMilliseconds(200) ? left : TimeSpan.FromMilliseconds(200));
        }
    }

    public async ValueTask DisposeAsync()
    {
        if (!_process.HasExited)
        {
            _process.Kill(entireProcessTree: true);
        }
        await _process.WaitForExitAsync();
        _process.Dispose();
    }
}

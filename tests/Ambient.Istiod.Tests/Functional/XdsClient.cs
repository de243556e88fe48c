using System.Diagnostics;
using System.Text.Json;

namespace Ambient.Istiod.Tests.Functional;

/// <summary>tests/interop/xds_client.py (python3-grpcio) as a delta-xDS client: one JSON line per response it got.</summary>
internal sealed class XdsClient : IAsyncDisposable
{
    private readonly Process _process;
    private readonly Task<string> _stderr;

    public XdsClient(IEnumerable<string> args)
    {
        _process = Python.Start(args);
        _stderr = _process.StandardError.ReadToEndAsync();
    }

    public async Task<JsonElement> NextAsync(TimeSpan? timeout = null)
    {
        var line = await _process.StandardOutput.ReadLineAsync().WaitAsync(timeout ?? TimeSpan.FromSeconds(30));
        if (line is null)
        {
            await _process.WaitForExitAsync().WaitAsync(TimeSpan.FromSeconds(10));
            Assert.Fail($"xds_client.py ended early (exit {_process.ExitCode}): {await _stderr}");
        }
        return JsonDocument.Parse(line!).RootElement.Clone();
    }

    public async ValueTask DisposeAsync()
    {
        try
        {
            await _process.StandardInput.WriteLineAsync("quit");
            await _process.StandardInput.FlushAsync();
            await _process.WaitForExitAsync().WaitAsync(TimeSpan.FromSeconds(10));
        }
        catch (Exception e) when (e is TimeoutException or IOException)
        {
            _process.Kill(entireProcessTree: true);
        }
        _process.Dispose();
    }
}

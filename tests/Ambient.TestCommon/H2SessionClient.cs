using System.Diagnostics;
using System.Text.Json;

namespace Ambient.TestCommon;

/// <summary>
/// tests/interop/h2_session_client.py (python3-h2's frame and HPACK layers over Python's ssl) as a running process: an
/// independent HBONE client a test can wait on between phases (its "ready" line), then read its verdict from.
/// </summary>
public sealed class H2SessionClient : IAsyncDisposable
{
    private const string Python = "/usr/bin/python3";

    private readonly Process _process;
    private readonly Task<string> _stderr;
    private readonly List<string> _lines = [];

    private H2SessionClient(Process process)
    {
        _process = process;
        _stderr = process.StandardError.ReadToEndAsync();
    }

    /// <summary>Starts the script with <paramref name="args"/> (everything after the script path).</summary>
    public static H2SessionClient Start(IEnumerable<string> args)
    {
        if (!File.Exists(Python))
        {
            throw new H2SessionException($"{Python} is missing; these tests need Debian's python3 with python3-h2 (apt-get install python3-h2)");
        }
        var psi = new ProcessStartInfo(Python)
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            RedirectStandardInput = true,
            UseShellExecute = false,
        };
        psi.ArgumentList.Add(RepoPaths.Interop("h2_session_client.py"));
        foreach (var a in args)
        {
            psi.ArgumentList.Add(a);
        }
        var process = Process.Start(psi)!;
        process.StandardInput.Close();
        return new H2SessionClient(process);
    }

    /// <summary>Waits for the script's <c>{"ready": true}</c> line: its tunnels are open and have echoed.</summary>
    public async Task WaitForReadyAsync(TimeSpan timeout)
    {
        using var cts = new CancellationTokenSource(timeout);
        while (true)
        {
            string? line;
            try
            {
                line = await _process.StandardOutput.ReadLineAsync(cts.Token);
            }
            catch (OperationCanceledException)
            {
                await FailAsync($"was not ready within {timeout.TotalSeconds:0} s");
                return;
            }
            if (line is null)
            {
                await FailAsync("ended before it was ready");
                return;
            }
            _lines.Add(line);
            if (line.Contains("\"ready\": true", StringComparison.Ordinal))
            {
                return;
            }
            if (line.Contains("\"error\"", StringComparison.Ordinal))
            {
                await FailAsync("failed before it was ready");
            }
        }
    }

    /// <summary>Waits for the script to end and returns its JSON verdict (the last line).</summary>
    public async Task<JsonElement> ResultAsync(TimeSpan timeout)
    {
        using var cts = new CancellationTokenSource(timeout);
        try
        {
            string rest = await _process.StandardOutput.ReadToEndAsync(cts.Token);
            _lines.AddRange(rest.Split('\n', StringSplitOptions.RemoveEmptyEntries));
            await _process.WaitForExitAsync(cts.Token);
        }
        catch (OperationCanceledException)
        {
            await FailAsync($"did not finish within {timeout.TotalSeconds:0} s");
        }
        if (_process.ExitCode == 3)
        {
            throw new H2SessionException($"python3-h2 is not installed for {Python}: apt-get install python3-h2. {string.Join('\n', _lines)}");
        }
        if (_process.ExitCode != 0 || _lines.Count == 0)
        {
            throw new H2SessionException($"h2_session_client.py failed (exit {_process.ExitCode}): {string.Join('\n', _lines)} {await _stderr}");
        }
        using var doc = JsonDocument.Parse(_lines[^1]);
        return doc.RootElement.Clone();
    }

    private async Task FailAsync(string what)
    {
        if (!_process.HasExited)
        {
            _process.Kill(entireProcessTree: true);
        }
        throw new H2SessionException($"h2_session_client.py {what}; stdout: {string.Join('\n', _lines)}; stderr: {await _stderr}");
    }

    public async ValueTask DisposeAsync()
    {
        if (!_process.HasExited)
        {
            _process.Kill(entireProcessTree: true);
            await _process.WaitForExitAsync();
        }
        _process.Dispose();
    }
}

/// <summary>The script could not run or did not finish: the test fails with what it printed.</summary>
public sealed class H2SessionException(string message) : Exception(message);

/// <summary>The three facts of a graceful stop, read from h2_session_client.py's drain verdict.</summary>
public static class DrainVerdict
{
    /// <summary>Throws, naming the first fact that does not hold: GOAWAY NO_ERROR (naming
    /// <paramref name="lastStreamId"/>) and a refusal for the stream opened after it; the open tunnel's transfer
    /// finished intact; the connection cut once <paramref name="drainTimeout"/> had passed (not before: a tunnel was
    /// still open; not long after).</summary>
    public static void Check(JsonElement result, TimeSpan drainTimeout, int lastStreamId)
    {
        That(result.GetProperty("error").ValueKind == JsonValueKind.Null, "the client failed", result);

        var goaway = result.GetProperty("goaway");
        That(goaway.ValueKind == JsonValueKind.Object, "no GOAWAY", result);
        That(goaway.GetProperty("error_name").GetString() == "NO_ERROR", "the GOAWAY is not NO_ERROR", result);
        That(goaway.GetProperty("last_stream_id").GetInt32() == lastStreamId, $"the GOAWAY does not name stream {lastStreamId} as the last", result);
        That(result.GetProperty("refused_after_goaway").ValueKind == JsonValueKind.String
            && result.GetProperty("refused_after_goaway").GetString() == "REFUSED_STREAM", "a stream opened after GOAWAY was not refused", result);

        var transfer = result.GetProperty("transfer");
        That(transfer.GetProperty("intact").GetBoolean() && transfer.GetProperty("sent").GetInt32() == transfer.GetProperty("echoed").GetInt32(),
            "the open tunnel did not finish its transfer intact", result);
        That(transfer.GetProperty("ended_after_goaway_s").ValueKind == JsonValueKind.Number, "no END_STREAM on the transfer tunnel", result);

        // The lower bound allows for the GOAWAY reaching the client a little after the drain started.
        That(result.GetProperty("closed").GetBoolean(), "the connection was never closed", result);
        double closedAfter = result.GetProperty("closed_after_goaway_s").GetDouble();
        That(closedAfter >= drainTimeout.TotalSeconds * 0.75 && closedAfter < drainTimeout.TotalSeconds + 10,
            $"the connection closed {closedAfter:F2} s after GOAWAY, with a drain timeout of {drainTimeout.TotalSeconds} s", result);
    }

    private static void That(bool fact, string problem, JsonElement result)
    {
        if (!fact)
        {
            throw new H2SessionException($"{problem}: {result}");
        }
    }
}

using System.Diagnostics;
using System.Globalization;
using System.Security.Cryptography.X509Certificates;
using System.Text.RegularExpressions;
using Ambient.LoadGen.Client;
using Ambient.LoadGen.Measure;

namespace Ambient.LoadGen.Memory;

internal sealed record MemorySettings(
    Target Hbone,
    int Connections,
    int ConnectConcurrency,
    TimeSpan Hold,
    TimeSpan Observe,
    long FloodBytes,
    string ConfigFolder,
    string StagingFolder,
    string IstiodLog,
    int BaseWorkloads,
    int BaseServices);

/// <summary>Before / peak / after of one process in one phase, in MiB; <see cref="ReturnedAfterSeconds"/> is when RSS
/// first came back within the target after the load was gone (null: not within the observation window).</summary>
internal sealed record PhaseResult(
    double ColdMib,
    double BeforeMib,
    double PeakMib,
    double AfterMib,
    double? ReturnedAfterSeconds,
    double HwmMib,
    double LoadSeconds,
    int Failures,
    string Load);

/// <summary>
/// One run of the memory bench against an already running ztunnel and istiod-lite:
/// <list type="number">
/// <item>ztunnel: <c>Connections</c> idle mutual-TLS HTTP/2 connections to a workload's 15008, held for
///   <c>Hold</c>, closed; then RSS is watched for <c>Observe</c>.</item>
/// <item>istiod-lite: a YAML file of <c>FloodBytes</c> of valid resources moved into the watched config folder,
///   held until published, removed; then RSS is watched for <c>Observe</c>.</item>
/// </list>
/// Each phase first warms up with the same load at small scale (a first TLS handshake or a first rebuild loads
/// libraries and compiles code once per process, which is not memory held for load), and records the RSS before that
/// warm-up too ("cold").
/// </summary>
internal sealed partial class MemoryRun
{
    /// <summary>Within this factor of the pre-load value counts as returned (the target: within 20%).</summary>
    public const double ReturnFactor = 1.2;

    private readonly MemorySettings _settings;
    private readonly TextWriter _log;
    private readonly Stopwatch _clock = Stopwatch.StartNew();

    public MemoryRun(MemorySettings settings, TextWriter log)
    {
        _settings = settings;
        _log = log;
    }

    public async Task<PhaseResult> ZtunnelAsync(int pid, X509Certificate2 clientCertificate, X509Certificate2 meshRoot, CancellationToken ct)
    {
        await using var rss = new RssSampler(pid);
        var cold = await rss.SteadyAsync(TimeSpan.FromSeconds(2), ct).ConfigureAwait(false);
        var (warm, _) = await OpenAsync(20, clientCertificate, meshRoot, ct).ConfigureAwait(false);
        await CloseAsync(warm).ConfigureAwait(false);
        await Task.Delay(TimeSpan.FromSeconds(10), ct).ConfigureAwait(false);
        var before = await rss.SteadyAsync(TimeSpan.FromSeconds(3), ct).ConfigureAwait(false);
        Log($"ztunnel: cold {cold:F1} MiB, before {before:F1} MiB; opening {_settings.Connections} idle mTLS connections to {_settings.Hbone}");

        rss.StartWindow();
        var opened = Stopwatch.StartNew();
        var (clients, failures) = await OpenAsync(_settings.Connections, clientCertificate, meshRoot, ct).ConfigureAwait(false);
        var openSeconds = opened.Elapsed.TotalSeconds;
        Log($"ztunnel: {clients.Count} open in {openSeconds:F1} s ({failures} failed), RSS {rss.Now():F1} MiB; holding them {_settings.Hold.TotalSeconds:F0} s");
        await Task.Delay(_settings.Hold, ct).ConfigureAwait(false);
        var cut = 0;
        foreach (var c in clients)
        {
            cut += c.ClosedByServer ? 1 : 0;
        }
        Log($"ztunnel: held, RSS {rss.Now():F1} MiB ({cut} closed by the server while idle); closing them");
        await CloseAsync(clients).ConfigureAwait(false);
        var (after, returned) = await ObserveAsync("ztunnel", rss, before, ct).ConfigureAwait(false);
        var peak = rss.WindowPeak();
        var hwm = ProcessStats.StatusMiB(pid, "VmHWM");
        return new PhaseResult(cold, before, peak, after, returned, hwm, openSeconds, failures + cut,
            $"{clients.Count} idle mTLS HTTP/2 connections held {_settings.Hold.TotalSeconds:F0} s");
    }

    public async Task<PhaseResult> IstiodAsync(int pid, CancellationToken ct)
    {
        await using var rss = new RssSampler(pid);
        var cold = await rss.SteadyAsync(TimeSpan.FromSeconds(2), ct).ConfigureAwait(false);
        var log = new IstiodLog(_settings.IstiodLog);
        await FloodAsync(log, 200 * 1024, "warm", ct).ConfigureAwait(false);
        await Task.Delay(TimeSpan.FromSeconds(10), ct).ConfigureAwait(false);
        var before = await rss.SteadyAsync(TimeSpan.FromSeconds(3), ct).ConfigureAwait(false);
        Log($"istiod-lite: cold {cold:F1} MiB, before {before:F1} MiB");

        rss.StartWindow();
        var loadSeconds = await FloodAsync(log, _settings.FloodBytes, "flood", ct, rss).ConfigureAwait(false);
        var (after, returned) = await ObserveAsync("istiod-lite", rss, before, ct).ConfigureAwait(false);
        var peak = rss.WindowPeak();
        var hwm = ProcessStats.StatusMiB(pid, "VmHWM");
        return new PhaseResult(cold, before, peak, after, returned, hwm, loadSeconds, 0,
            $"{_settings.FloodBytes / (1024.0 * 1024):F0} MiB YAML file of valid resources added, published, removed");
    }

    /// <summary>Writes the file outside the folder, moves it in (one rename, as `mv` does), waits until istiod-lite
    /// published it, removes it and waits until it published the mesh without it. Returns seconds until published.</summary>
    private async Task<double> FloodAsync(IstiodLog log, long bytes, string prefix, CancellationToken ct, RssSampler? rss = null)
    {
        var staged = Path.Combine(_settings.StagingFolder, prefix + ".yaml");
        var (pods, services) = ConfigFlood.Write(staged, bytes, prefix);
        var size = new FileInfo(staged).Length;
        var target = Path.Combine(_settings.ConfigFolder, prefix + ".yaml");
        var moved = Stopwatch.StartNew();
        File.Move(staged, target);
        await log.WaitForPublishedAsync(_settings.BaseWorkloads + pods, _settings.BaseServices + services, TimeSpan.FromMinutes(5), ct).ConfigureAwait(false);
        var loaded = moved.Elapsed.TotalSeconds;
        if (rss is not null)
        {
            Log($"istiod-lite: {size / (1024.0 * 1024):F1} MiB file ({pods} pods, {services} services) published in {loaded:F1} s, RSS {rss.Now():F1} MiB");
            await Task.Delay(TimeSpan.FromSeconds(5), ct).ConfigureAwait(false);
            Log($"istiod-lite: RSS {rss.Now():F1} MiB; removing the file");
        }
        File.Delete(target);
        await log.WaitForPublishedAsync(_settings.BaseWorkloads, _settings.BaseServices, TimeSpan.FromMinutes(5), ct).ConfigureAwait(false);
        return loaded;
    }

    /// <summary>Watches RSS for the observation window after the load is gone: the value at its end, and when it first
    /// came within <see cref="ReturnFactor"/> of <paramref name="before"/>.</summary>
    private async Task<(double After, double? ReturnedAfter)> ObserveAsync(string name, RssSampler rss, double before, CancellationToken ct)
    {
        var start = _clock.Elapsed;
        double? returned = null;
        var nextLog = TimeSpan.FromSeconds(10);
        while (true)
        {
            var elapsed = _clock.Elapsed - start;
            var now = rss.Now();
            if (returned is null && now <= before * ReturnFactor)
            {
                returned = elapsed.TotalSeconds;
            }
            if (elapsed >= nextLog)
            {
                Log($"{name}: {elapsed.TotalSeconds:F0} s after the load: RSS {now:F1} MiB ({now / before:F2}x before)");
                nextLog += TimeSpan.FromSeconds(10);
            }
            if (elapsed >= _settings.Observe)
            {
                return (now, returned);
            }
            await Task.Delay(TimeSpan.FromMilliseconds(250), ct).ConfigureAwait(false);
        }
    }

    private async Task<(List<IdleHboneClient> Clients, int Failures)> OpenAsync(int count, X509Certificate2 cert, X509Certificate2 root, CancellationToken ct)
    {
        var clients = new List<IdleHboneClient>(count);
        var failures = 0;
        string? firstError = null;
        using var gate = new SemaphoreSlim(_settings.ConnectConcurrency);
        var tasks = new Task[count];
        for (var i = 0; i < count; i++)
        {
            await gate.WaitAsync(ct).ConfigureAwait(false);
            tasks[i] = Task.Run(async () =>
            {
                try
                {
                    var client = await IdleHboneClient.OpenAsync(_settings.Hbone, cert, root, ct).ConfigureAwait(false);
                    lock (clients)
                    {
                        clients.Add(client);
                    }
                }
                catch (Exception e) when (e is not OperationCanceledException)
                {
                    Interlocked.Increment(ref failures);
                    Interlocked.CompareExchange(ref firstError, e.Message, null);
                }
                finally
                {
                    gate.Release();
                }
            }, ct);
        }
        await Task.WhenAll(tasks).ConfigureAwait(false);
        if (firstError is not null)
        {
            Log($"{failures} connections failed, the first: {firstError}");
        }
        return (clients, failures);
    }

    private static async Task CloseAsync(List<IdleHboneClient> clients)
    {
        var tasks = new Task[clients.Count];
        for (var i = 0; i < clients.Count; i++)
        {
            tasks[i] = clients[i].DisposeAsync().AsTask();
        }
        await Task.WhenAll(tasks).ConfigureAwait(false);
    }

    private void Log(string message) =>
        _log.WriteLine(string.Create(CultureInfo.InvariantCulture, $"{DateTime.Now:HH:mm:ss} memory: {message}"));

    /// <summary>Follows istiod-lite's log for "discovery generation N published: W workloads, S services" lines.</summary>
    private sealed partial class IstiodLog(string path)
    {
        private long _offset = File.Exists(path) ? new FileInfo(path).Length : 0;

        public async Task WaitForPublishedAsync(int workloads, int services, TimeSpan timeout, CancellationToken ct)
        {
            var deadline = Stopwatch.StartNew();
            string? last = null;
            while (deadline.Elapsed < timeout)
            {
                using (var stream = new FileStream(path, FileMode.Open, FileAccess.Read, FileShare.ReadWrite))
                {
                    stream.Seek(_offset, SeekOrigin.Begin);
                    using var reader = new StreamReader(stream);
                    var text = await reader.ReadToEndAsync(ct).ConfigureAwait(false);
                    // Only whole lines; a partly written one is read again next time.
                    var end = text.LastIndexOf('\n');
                    if (end >= 0)
                    {
                        _offset += System.Text.Encoding.UTF8.GetByteCount(text.AsSpan(0, end + 1));
                        foreach (Match m in Published().Matches(text[..(end + 1)]))
                        {
                            last = m.Value;
                            if (int.Parse(m.Groups[1].Value, CultureInfo.InvariantCulture) == workloads
                                && int.Parse(m.Groups[2].Value, CultureInfo.InvariantCulture) == services)
                            {
                                return;
                            }
                        }
                    }
                }
                await Task.Delay(100, ct).ConfigureAwait(false);
            }
            throw new TimeoutException($"istiod-lite did not publish {workloads} workloads and {services} services within {timeout.TotalSeconds:F0} s (last: {last ?? "no publication logged"})");
        }

        [GeneratedRegex(@"published: (\d+) workloads, (\d+) services")]
        private static partial Regex Published();
    }
}

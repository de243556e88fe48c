using System.Net;
using System.Security.Cryptography.X509Certificates;
using Ambient.Core.Model;
using Ambient.Core.Xds;
using Ambient.Dataplane.Xds;
using Ambient.Istiod;
using Ambient.TestCommon;
using Microsoft.Extensions.Logging;

namespace Ambient.Ztunnel.Tests.State;

/// <summary>
/// A real istiod-lite in-process on 127.0.0.1 over a scratch config folder, which can be stopped and started
/// again on the same port and state folder (root and node tokens survive, as across a real istiod restart).
/// The port is picked below the kernel's ephemeral range (32768 and up on Linux), checked free by starting on it:
/// bind(0) and outgoing connections never hand such a port out, so nothing takes it while istiod is stopped.
/// </summary>
internal sealed class IstiodTestHost : IAsyncDisposable
{
    private readonly TempDir _dir = new();
    private IstiodHost? _host;
    private int _port;
    private string? _caDirectory;

    public ListLogger Log { get; } = new();

    public string ConfigFolder => Path.Combine(_dir.Path, "mesh");
    public string StateFolder => Path.Combine(_dir.Path, "state");
    public int Port => _port;
    public Uri Address => new($"https://127.0.0.1:{_port}");
    public bool IsRunning => _host is not null;

    /// <summary>The running istiod-lite.</summary>
    public IstiodHost Host => _host ?? throw new InvalidOperationException("istiod-lite is stopped");

    /// <summary>The trust bundle proxies load: the state folder's root, or the plug-in CA's root-cert.pem.</summary>
    public string RootCertificatePath => Path.Combine(_caDirectory ?? StateFolder, "root-cert.pem");

    /// <param name="caDirectory">A plug-in CA folder (istiod-lite --ca-dir); null for the self-signed root.</param>
    public static async Task<IstiodTestHost> StartAsync(IReadOnlyDictionary<string, string> files, string? caDirectory = null)
    {
        var host = new IstiodTestHost { _caDirectory = caDirectory };
        Directory.CreateDirectory(host.ConfigFolder);
        foreach (var (name, text) in files)
        {
            File.WriteAllText(Path.Combine(host.ConfigFolder, name), text);
        }
        for (var attempt = 1; ; attempt++)
        {
            host._port = Random.Shared.Next(20000, 32768);
            try
            {
                await host.StartAgainAsync();
                return host;
            }
            catch (IOException) when (attempt < 20)
            {
                // Someone listens there already: another port.
                host._host = null;
            }
        }
    }

    /// <summary>Starts istiod (again) on the same port.</summary>
    public async Task StartAgainAsync()
    {
        Assert.Null(_host);
        var options = new IstiodOptions(ConfigFolder, StateFolder, new IPEndPoint(IPAddress.Loopback, _port), null, "Kubernetes", "cluster.local", _caDirectory);
        _host = await IstiodHost.StartAsync(options, l =>
        {
            l.SetMinimumLevel(LogLevel.Debug);
            l.AddFilter("Microsoft", LogLevel.Warning);
            l.AddProvider(Log);
        }, CancellationToken.None);
        _port = _host.GrpcEndpoint.Port;
    }

    public async Task StopAsync()
    {
        if (_host is { } host)
        {
            _host = null;
            await host.DisposeAsync();
        }
    }

    public string TokenOf(string node) => File.ReadAllText(Path.Combine(StateFolder, "tokens", node + ".token")).Trim();

    public X509Certificate2Collection Roots()
    {
        var roots = new X509Certificate2Collection();
        roots.ImportFromPemFile(RootCertificatePath);
        return roots;
    }

    public void WriteConfig(string name, string text)
    {
        // Write then rename so the watcher never sees a half-written file.
        var tmp = Path.Combine(_dir.Path, name + ".tmp");
        File.WriteAllText(tmp, text);
        File.Move(tmp, Path.Combine(ConfigFolder, name), overwrite: true);
    }

    public void DeleteConfig(string name) => File.Delete(Path.Combine(ConfigFolder, name));

    /// <summary>An xDS client of <paramref name="node"/> against this istiod (not started).</summary>
    public DeltaXdsClient CreateXdsClient(string node, ListLogger log, Func<string>? token = null, X509Certificate2Collection? roots = null)
    {
        var options = new DeltaXdsClientOptions
        {
            Address = Address,
            Roots = roots ?? Roots(),
            Token = token ?? (() => TokenOf(node)),
            NodeName = node,
            PodName = "ztunnel-" + node,
            InitialBackoff = TimeSpan.FromMilliseconds(100),
            MaxBackoff = TimeSpan.FromSeconds(1),
        };
        return new DeltaXdsClient(options, log.CreateLogger("xds"));
    }

    public async ValueTask DisposeAsync()
    {
        await StopAsync();
        _dir.Dispose();
    }
}

/// <summary>Polling with a deadline, for things that happen on background tasks.</summary>
internal static class Eventually
{
    public static async Task<T> ValueAsync<T>(Func<T?> probe, TimeSpan timeout, string what) where T : class
    {
        var deadline = DateTime.UtcNow + timeout;
        while (true)
        {
            if (probe() is { } value)
            {
                return value;
            }
            if (DateTime.UtcNow > deadline)
            {
                throw new TimeoutException($"timed out after {timeout.TotalSeconds:F1} s waiting for {what}");
            }
            await Task.Delay(25);
        }
    }

    public static async Task TrueAsync(Func<bool> probe, TimeSpan timeout, string what)
        => await ValueAsync(() => probe() ? "" : null, timeout, what);

    public static Task<MeshSnapshot> SnapshotAsync(DeltaXdsClient client, Func<MeshSnapshot, bool> condition, string what, double seconds = 5)
        => ValueAsync(() => condition(client.Current) ? client.Current : null, TimeSpan.FromSeconds(seconds), what);
}

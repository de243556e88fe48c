using System.Globalization;
using System.Net;
using System.Net.Sockets;
using System.Security.Cryptography.X509Certificates;
using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;
using Ambient.LoadGen.Client;
using Ambient.LoadGen.Echo;
using Ambient.LoadGen.Measure;
using Ambient.LoadGen.Memory;
using Ambient.LoadGen.Report;

namespace Ambient.LoadGen;

internal static class Program
{
    private const string Usage =
        """
        usage: ambient-loadgen echo --listen IP:PORT
               ambient-loadgen probe  TARGET [--timeout SECONDS] [--path PATH]
               ambient-loadgen l4     --setup SPEC ... --out FILE [--env KEY=VALUE ...] [--runs N] [--rate RPS]
                                      [--connections N] [--body BYTES] [--latency-seconds S]
                                      [--throughput-seconds S] [--connect-seconds S] [--connect-workers N]
               ambient-loadgen l7     --setup SPEC ... --out FILE [--env KEY=VALUE ...] [--runs N] [--rate RPS]
                                      [--connections N] [--path PATH] [--host HOST] [--latency-seconds S]
                                      [--max-connections N] [--max-seconds S]
               ambient-loadgen memory-run --ztunnel-pid PID --istiod-pid PID --connect IP:PORT [--bind IP]
                                      --cert PEM --key PEM --root PEM --config DIR --staging DIR --istiod-log FILE
                                      --base-workloads N --base-services N --out FILE [--connections N]
                                      [--hold-seconds S] [--observe-seconds S] [--flood-mib MIB] [--phases ztunnel,istiod]
               ambient-loadgen memory-report --run FILE ... --out FILE [--env KEY=VALUE ...]
          TARGET: --connect IP:PORT [--bind IP] [--socks-host NAME --socks-port PORT] [--netns /run/netns/NAME]
          SPEC:   name=NAME,connect=IP:PORT[,bind=IP][,socks=HOST:PORT][,netns=/run/netns/NAME][,process=NAME:PID]...
                  (l4 compares the names direct, ztunnel and haproxy; l7 direct, mesh and haproxy, and
                  reports the mesh's process named waypoint on its own)
        """;

    private const string InlineSocketCompletions = "DOTNET_SYSTEM_NET_SOCKETS_INLINE_COMPLETIONS";

    private static async Task<int> Main(string[] args)
    {
        // The instrument should cost as little as it can: socket completions run on the epoll threads instead of
        // hopping to the thread pool (as in the proxies under test). The hop cost ~0.1 ms of every path's P50, and the
        // direct path's P99 beside an idle mesh on 2 cores was 0.7-2.4 ms with it against 0.3-0.8 ms without (3 runs
        // each). Read once, at the first socket operation; an explicit setting wins.
        if (Environment.GetEnvironmentVariable(InlineSocketCompletions) is null)
        {
            Environment.SetEnvironmentVariable(InlineSocketCompletions, "1");
        }
        if (args.Length == 0 || args[0] is "-h" or "--help")
        {
            Console.Error.WriteLine(Usage);
            return 2;
        }
        var options = new Dictionary<string, List<string>>(StringComparer.Ordinal);
        for (var i = 1; i < args.Length; i++)
        {
            if (!args[i].StartsWith("--", StringComparison.Ordinal) || i + 1 >= args.Length)
            {
                Console.Error.WriteLine($"bad argument '{args[i]}' (every option takes a value)\n{Usage}");
                return 2;
            }
            if (!options.TryGetValue(args[i], out var values))
            {
                options[args[i]] = values = [];
            }
            values.Add(args[++i]);
        }
        // Not disposed: ProcessExit may still fire after Main returns.
        var stop = new CancellationTokenSource();
        Console.CancelKeyPress += (_, e) => { e.Cancel = true; stop.Cancel(); };
        AppDomain.CurrentDomain.ProcessExit += (_, _) => stop.Cancel();
        try
        {
            return args[0] switch
            {
                "echo" => await EchoAsync(options, stop.Token),
                "probe" => await ProbeAsync(options, stop.Token),
                "l4" => await L4Async(options, stop.Token),
                "l7" => await L7Async(options, stop.Token),
                "memory-run" => await MemoryRunAsync(options, stop.Token),
                "memory-report" => MemoryReportRun(options),
                _ => Fail($"unknown command '{args[0]}'\n{Usage}"),
            };
        }
        catch (ArgumentException e)
        {
            return Fail(e.Message);
        }
        catch (Exception e) when (e is IOException or SocketException or OperationCanceledException or JsonException or TimeoutException)
        {
            return Fail($"{args[0]}: {e.Message}");
        }
    }

    private static int Fail(string message)
    {
        Console.Error.WriteLine(message);
        return message.StartsWith("unknown", StringComparison.Ordinal) ? 2 : 1;
    }

    private static async Task<int> EchoAsync(Dictionary<string, List<string>> o, CancellationToken ct)
    {
        var listen = Endpoint(o, "--listen");
        await using var server = EchoServer.Start(listen);
        Console.WriteLine($"echo server listening on {server.LocalEndPoint}");
        await Task.Delay(Timeout.Infinite, ct).ContinueWith(_ => { }, TaskScheduler.Default);
        return 0;
    }

    /// <summary>Retries one keep-alive request until it succeeds: the mesh is routable end to end.</summary>
    private static async Task<int> ProbeAsync(Dictionary<string, List<string>> o, CancellationToken ct)
    {
        var target = ParseTarget(o);
        if (target.Netns is not null)
        {
            await NetnsSocketSource.WarmUpAsync(ct);
        }
        var deadline = DateTime.UtcNow.AddSeconds(Number(o, "--timeout", 30));
        var path = o.GetValueOrDefault("--path") is [var p] ? p : "/";
        var request = Encoding.ASCII.GetBytes($"GET {path} HTTP/1.1\r\nHost: {target.SocksHost ?? "echo"}\r\n\r\n");
        while (true)
        {
            try
            {
                using var s = await target.ConnectAsync(ct);
                await s.SendAsync(request, SocketFlags.None, ct);
                await new ResponseReader(s, 4096).ReadResponseAsync(ct);
                Console.WriteLine($"probe: {target} answers");
                return 0;
            }
            catch (Exception e) when (e is IOException or SocketException && DateTime.UtcNow < deadline)
            {
                await Task.Delay(250, ct);
            }
        }
    }

    /// <summary>
    /// <c>l4 --setup SPEC ... --out FILE</c>: every setup measured interleaved (see <see cref="Suite"/>), then the
    /// table and the JSON. SPEC is <c>name=NAME,connect=IP:PORT[,bind=IP][,socks=HOST:PORT][,process=NAME:PID]...</c>;
    /// the names direct, ztunnel and haproxy are the ones the report compares.
    /// </summary>
    private static async Task<int> L4Async(Dictionary<string, List<string>> o, CancellationToken ct)
    {
        var setups = new List<Setup>();
        foreach (var spec in o.GetValueOrDefault("--setup") ?? [])
        {
            setups.Add(ParseSetup(spec));
        }
        var output = Required(o, "--out");
        var settings = new SuiteSettings(
            Runs: (int)Number(o, "--runs", 5),
            ThroughputWarmup: TimeSpan.FromMilliseconds(300),
            ThroughputDuration: TimeSpan.FromSeconds(Number(o, "--throughput-seconds", 1.5)),
            Rate: (int)Number(o, "--rate", 1000),
            Connections: (int)Number(o, "--connections", 4),
            BodyBytes: (int)Number(o, "--body", 1024),
            LatencyWarmup: TimeSpan.FromSeconds(1),
            LatencyDuration: TimeSpan.FromSeconds(Number(o, "--latency-seconds", 5)),
            ConnectWorkers: (int)Number(o, "--connect-workers", 4),
            ConnectWarmup: TimeSpan.FromMilliseconds(500),
            ConnectDuration: TimeSpan.FromSeconds(Number(o, "--connect-seconds", 3)));
        if (setups.Exists(s => s.Target.Netns is not null))
        {
            await NetnsSocketSource.WarmUpAsync(ct);
        }
        var loads = new List<LoadSample>();
        var results = await Suite.RunAsync(setups, settings, Console.Error, ct, loads);
        SuiteResult Named(string name) => results.Find(r => r.Name == name) ?? throw new ArgumentException($"--setup name={name} is required");
        var env = EnvironmentOptions(o);
        env["settings"] = JsonSerializer.SerializeToNode(settings);
        Console.Write(L4Report.Write(Named("direct"), Named("ztunnel"), Named("haproxy"), env, output,
            results.Find(r => r.Name == L4Report.WithPolicies), results.Find(r => r.Name == L4Report.Capture), loads));
        return 0;
    }

    /// <summary>
    /// <c>l7 --setup SPEC ... --out FILE</c>: keep-alive HTTP/1.1 GETs through every setup, open loop at a fixed rate
    /// and closed loop at the most each gives, interleaved (see <see cref="L7Suite"/>); then the table and the JSON.
    /// </summary>
    private static async Task<int> L7Async(Dictionary<string, List<string>> o, CancellationToken ct)
    {
        var setups = new List<Setup>();
        foreach (var spec in o.GetValueOrDefault("--setup") ?? [])
        {
            setups.Add(ParseSetup(spec));
        }
        var output = Required(o, "--out");
        var settings = new L7Settings(
            Runs: (int)Number(o, "--runs", 3),
            Path: o.GetValueOrDefault("--path") is [var path] ? path : "/bulk?n=1024",
            Host: o.GetValueOrDefault("--host") is [var host] ? host : "backend",
            Rate: (int)Number(o, "--rate", 1000),
            Connections: (int)Number(o, "--connections", 4),
            LatencyWarmup: TimeSpan.FromSeconds(1),
            LatencyDuration: TimeSpan.FromSeconds(Number(o, "--latency-seconds", 5)),
            MaxConnections: (int)Number(o, "--max-connections", 16),
            MaxWarmup: TimeSpan.FromMilliseconds(500),
            MaxDuration: TimeSpan.FromSeconds(Number(o, "--max-seconds", 3)));
        var results = await L7Suite.RunAsync(setups, settings, Console.Error, ct);
        L7Result Named(string name) => results.Find(r => r.Name == name) ?? throw new ArgumentException($"--setup name={name} is required");
        var env = EnvironmentOptions(o);
        env["rate"] = settings.Rate.ToString(CultureInfo.InvariantCulture);
        env["settings"] = JsonSerializer.SerializeToNode(settings);
        Console.Write(L7Report.Write(Named("direct"), Named("mesh"), Named("haproxy"), env, output));
        return 0;
    }

    /// <summary>
    /// <c>memory-run</c>: one run of bench/run.sh memory against a running ztunnel and istiod-lite (see
    /// <see cref="MemoryRun"/>); writes that run's before / peak / after figures as JSON for <c>memory-report</c>.
    /// </summary>
    private static async Task<int> MemoryRunAsync(Dictionary<string, List<string>> o, CancellationToken ct)
    {
        var target = ParseTarget(o);
        var settings = new MemorySettings(
            target,
            Connections: (int)Number(o, "--connections", 2000),
            ConnectConcurrency: 50,
            Hold: TimeSpan.FromSeconds(Number(o, "--hold-seconds", 15)),
            Observe: TimeSpan.FromSeconds(Number(o, "--observe-seconds", 60)),
            FloodBytes: (long)(Number(o, "--flood-mib", 10) * 1024 * 1024),
            ConfigFolder: Required(o, "--config"),
            StagingFolder: Required(o, "--staging"),
            IstiodLog: Required(o, "--istiod-log"),
            BaseWorkloads: (int)Number(o, "--base-workloads", 1),
            BaseServices: (int)Number(o, "--base-services", 1));
        using var cert = X509Certificate2.CreateFromPemFile(Required(o, "--cert"), Required(o, "--key"));
        using var root = X509CertificateLoader.LoadCertificateFromFile(Required(o, "--root"));
        var run = new MemoryRun(settings, Console.Error);
        var phases = o.GetValueOrDefault("--phases") is [var p] ? p : "ztunnel,istiod";
        var ztunnel = phases.Contains("ztunnel", StringComparison.Ordinal) ? await run.ZtunnelAsync(Pid(o, "--ztunnel-pid"), cert, root, ct) : null;
        var istiod = phases.Contains("istiod", StringComparison.Ordinal) ? await run.IstiodAsync(Pid(o, "--istiod-pid"), ct) : null;
        File.WriteAllText(Required(o, "--out"), JsonSerializer.Serialize(new MemoryRunResult(ztunnel, istiod), MemoryReport.Json));
        return 0;
    }

    private static int Pid(Dictionary<string, List<string>> o, string name)
    {
        var value = Required(o, name);
        return int.TryParse(value, NumberStyles.None, CultureInfo.InvariantCulture, out var pid) && File.Exists($"/proc/{pid}/status")
            ? pid : throw new ArgumentException($"{name}: '{value}' is not the pid of a running process");
    }

    private static int MemoryReportRun(Dictionary<string, List<string>> o)
    {
        var runs = new List<MemoryRunResult>();
        foreach (var file in o.GetValueOrDefault("--run") ?? [])
        {
            runs.Add(JsonSerializer.Deserialize<MemoryRunResult>(File.ReadAllText(file), MemoryReport.Json)
                ?? throw new ArgumentException($"--run {file}: empty"));
        }
        if (runs.Count == 0)
        {
            throw new ArgumentException("memory-report needs at least one --run FILE");
        }
        Console.Write(MemoryReport.Write(runs, EnvironmentOptions(o), Required(o, "--out")));
        return 0;
    }

    private static JsonObject EnvironmentOptions(Dictionary<string, List<string>> o)
    {
        var env = new JsonObject();
        foreach (var kv in o.GetValueOrDefault("--env") ?? [])
        {
            var eq = kv.IndexOf('=');
            if (eq <= 0)
            {
                throw new ArgumentException($"--env: '{kv}' is not KEY=VALUE");
            }
            env[kv[..eq]] = kv[(eq + 1)..];
        }
        return env;
    }

    private static Setup ParseSetup(string spec)
    {
        string? name = null, socksHost = null, netns = null;
        IPEndPoint? connect = null;
        IPAddress? bind = null;
        var socksPort = 0;
        var processes = new List<(string, int)>();
        foreach (var part in spec.Split(','))
        {
            var eq = part.IndexOf('=');
            var (key, value) = eq > 0 ? (part[..eq], part[(eq + 1)..]) : (part, "");
            switch (key)
            {
                case "name": name = value; break;
                case "connect":
                    connect = IPEndPoint.TryParse(value, out var ep) && ep.Port != 0 ? ep : throw new ArgumentException($"--setup {spec}: connect '{value}' is not IP:PORT");
                    break;
                case "bind":
                    bind = IPAddress.TryParse(value, out var b) ? b : throw new ArgumentException($"--setup {spec}: bind '{value}' is not an IP address");
                    break;
                case "socks":
                    var colon = value.LastIndexOf(':');
                    if (colon <= 0 || !int.TryParse(value[(colon + 1)..], NumberStyles.None, CultureInfo.InvariantCulture, out socksPort) || socksPort is 0 or > 65535)
                    {
                        throw new ArgumentException($"--setup {spec}: socks '{value}' is not HOST:PORT");
                    }
                    socksHost = value[..colon];
                    break;
                case "netns":
                    netns = File.Exists(value) ? value : throw new ArgumentException($"--setup {spec}: netns '{value}' is not a network namespace file (/run/netns/NAME)");
                    break;
                case "process":
                    var c = value.LastIndexOf(':');
                    if (c <= 0 || !int.TryParse(value[(c + 1)..], NumberStyles.None, CultureInfo.InvariantCulture, out var pid) || !File.Exists($"/proc/{pid}/stat"))
                    {
                        throw new ArgumentException($"--setup {spec}: process '{value}' is not NAME:PID of a running process");
                    }
                    processes.Add((value[..c], pid));
                    break;
                default: throw new ArgumentException($"--setup {spec}: unknown key '{key}'");
            }
        }
        if (name is null || connect is null)
        {
            throw new ArgumentException($"--setup {spec}: name= and connect= are required");
        }
        return new Setup(name, new Target(connect, bind, socksHost, socksPort, netns), processes);
    }

    private static Target ParseTarget(Dictionary<string, List<string>> o)
    {
        var connect = Endpoint(o, "--connect");
        IPAddress? bind = null;
        if (o.GetValueOrDefault("--bind") is [var b] && !IPAddress.TryParse(b, out bind))
        {
            throw new ArgumentException($"--bind: '{b}' is not an IP address");
        }
        var host = o.GetValueOrDefault("--socks-host") is [var h] ? h : null;
        var port = (int)Number(o, "--socks-port", 80);
        var netns = o.GetValueOrDefault("--netns") is [var n] ? n : null;
        if (netns is not null && !File.Exists(netns))
        {
            throw new ArgumentException($"--netns: '{netns}' is not a network namespace file (/run/netns/NAME)");
        }
        return new Target(connect, bind, host, port, netns);
    }

    private static IPEndPoint Endpoint(Dictionary<string, List<string>> o, string name)
    {
        var value = Required(o, name);
        return IPEndPoint.TryParse(value, out var ep) && ep.Port != 0 ? ep : throw new ArgumentException($"{name}: '{value}' is not IP:PORT");
    }

    private static string Required(Dictionary<string, List<string>> o, string name) =>
        o.GetValueOrDefault(name) is [var v] ? v : throw new ArgumentException($"{name} is required (once)\n{Usage}");

    private static double Number(Dictionary<string, List<string>> o, string name, double fallback)
    {
        if (o.GetValueOrDefault(name) is not [var v])
        {
            return fallback;
        }
        return double.TryParse(v, NumberStyles.Float, CultureInfo.InvariantCulture, out var d) && d > 0
            ? d : throw new ArgumentException($"{name}: '{v}' is not a positive number");
    }
}

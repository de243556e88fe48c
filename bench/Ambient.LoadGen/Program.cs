using System.Globalization;
using System.Net;
using System.Net.Sockets;
using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;
using Ambient.LoadGen.Client;
using Ambient.LoadGen.Echo;
using Ambient.LoadGen.Measure;
using Ambient.LoadGen.Report;

namespace Ambient.LoadGen;

internal static class Program
{
    private const string Usage =
        """
        usage: ambient-loadgen echo --listen IP:PORT
               ambient-loadgen probe  TARGET [--timeout SECONDS]
               ambient-loadgen suite  TARGET --name NAME --out FILE [--process NAME=PID ...] [--runs N]
                                      [--rate RPS] [--connections N] [--body BYTES] [--latency-seconds S]
                                      [--throughput-seconds S] [--connect-seconds S] [--connect-workers N]
               ambient-loadgen report --direct FILE --ztunnel FILE --haproxy FILE --out FILE [--env KEY=VALUE ...]
          TARGET: --connect IP:PORT [--bind IP] [--socks-host NAME --socks-port PORT]
        """;

    private static async Task<int> Main(string[] args)
    {
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
                "suite" => await SuiteAsync(options, stop.Token),
                "report" => Report(options),
                _ => Fail($"unknown command '{args[0]}'\n{Usage}"),
            };
        }
        catch (ArgumentException e)
        {
            return Fail(e.Message);
        }
        catch (Exception e) when (e is IOException or SocketException or OperationCanceledException or JsonException)
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
        var deadline = DateTime.UtcNow.AddSeconds(Number(o, "--timeout", 30));
        var request = Encoding.ASCII.GetBytes($"GET / HTTP/1.1\r\nHost: {target.SocksHost ?? "echo"}\r\n\r\n");
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

    private static async Task<int> SuiteAsync(Dictionary<string, List<string>> o, CancellationToken ct)
    {
        var target = ParseTarget(o);
        var name = Required(o, "--name");
        var output = Required(o, "--out");
        var processes = new List<(string, int)>();
        foreach (var p in o.GetValueOrDefault("--process") ?? [])
        {
            var eq = p.LastIndexOf('=');
            if (eq <= 0 || !int.TryParse(p[(eq + 1)..], NumberStyles.None, CultureInfo.InvariantCulture, out var pid) || !File.Exists($"/proc/{pid}/stat"))
            {
                throw new ArgumentException($"--process: '{p}' is not NAME=PID of a running process");
            }
            processes.Add((p[..eq], pid));
        }
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
        var result = await Suite.RunAsync(name, target, settings, processes, Console.Out, ct);
        File.WriteAllText(output, JsonSerializer.Serialize(result, new JsonSerializerOptions { WriteIndented = true }));
        return 0;
    }

    private static int Report(Dictionary<string, List<string>> o)
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
        Console.Write(L4Report.Write(Load(Required(o, "--direct")), Load(Required(o, "--ztunnel")), Load(Required(o, "--haproxy")), env, Required(o, "--out")));
        return 0;
    }

    private static SuiteResult Load(string path) =>
        JsonSerializer.Deserialize<SuiteResult>(File.ReadAllText(path)) ?? throw new JsonException($"{path}: empty");

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
        return new Target(connect, bind, host, port);
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

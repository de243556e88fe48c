using System.Diagnostics;
using System.Globalization;
using System.Net.Security;
using System.Security.Cryptography.X509Certificates;
using System.Text.Json;
using System.Text.Json.Nodes;
using Ambient.Core.Protos.Discovery;
using Ambient.Core.Protos.Workload;
using Ambient.Core.Xds;
using Ambient.TestCommon.Kube;
using Google.Protobuf;
using Grpc.Core;
using Grpc.Net.Client;

namespace Ambient.Bench.Kube;

/// <summary>
/// bench/run.sh kube-scale: istiod-lite (the Release build, its own process) with <c>--config-source kubernetes</c>
/// against the fake API server holding N pods and M services. Reports the initial sync (process start to serving, so
/// .NET start-up is included), istiod-lite's RSS after the sync and after the updates, and, for K sequential pod
/// updates (readiness flips), the time from the update entering the API server's watch streams to the ztunnel xDS push
/// carrying it reaching a delta ADS client. Targets (issue 16): sync &lt; 5 s, push P99 &lt; 100 ms.
/// </summary>
internal static class KubeScale
{
    private static readonly Method<DeltaDiscoveryRequest, DeltaDiscoveryResponse> DeltaAds = new(MethodType.DuplexStreaming,
        "envoy.service.discovery.v3.AggregatedDiscoveryService", "DeltaAggregatedResources",
        Marshallers.Create<DeltaDiscoveryRequest>(m => m.ToByteArray(), DeltaDiscoveryRequest.Parser.ParseFrom),
        Marshallers.Create<DeltaDiscoveryResponse>(m => m.ToByteArray(), DeltaDiscoveryResponse.Parser.ParseFrom));

    public static async Task<int> RunAsync(string[] args)
    {
        var pods = Option(args, "--pods", 10_000);
        var services = Option(args, "--services", 1_000);
        var updates = Option(args, "--updates", 200);
        var istiod = Text(args, "--istiod") ?? throw new ArgumentException("--istiod PATH (the istiod-lite binary) is required");
        var output = Text(args, "--out");
        const int namespaces = 10, nodes = 100;
        var work = Directory.CreateTempSubdirectory("ambient-kube-scale-");
        await using var server = await FakeKubeApiServer.StartAsync(new FakeKubeApiServerOptions { BookmarkInterval = TimeSpan.FromSeconds(30) });
        try
        {
            var seeding = Stopwatch.StartNew();
            for (var n = 0; n < namespaces; n++)
            {
                server.Put(new JsonObject { ["apiVersion"] = "v1", ["kind"] = "Namespace", ["metadata"] = new JsonObject { ["name"] = "scale-" + n, ["labels"] = new JsonObject { ["istio.io/dataplane-mode"] = "ambient" } } });
            }
            for (var s = 0; s < services; s++)
            {
                server.Put(Service(s, namespaces));
            }
            for (var p = 0; p < pods; p++)
            {
                server.Put(Pod(p, services, namespaces, nodes, ready: true));
            }
            Console.Error.WriteLine($"kube-scale: seeded {pods} pods, {services} services in {seeding.Elapsed.TotalSeconds:F1} s");

            var kubeconfig = server.WriteKubeconfig(Path.Combine(work.FullName, "kubeconfig"));
            var state = Path.Combine(work.FullName, "state");
            var psi = new ProcessStartInfo(istiod)
            {
                RedirectStandardOutput = true,
                RedirectStandardError = true,
                UseShellExecute = false,
            };
            foreach (var a in (string[])["--config-source", "kubernetes", "--kubeconfig", kubeconfig, "--state", state, "--listen", "127.0.0.1:0", "--monitoring", "off",
                // The client below authenticates with a node token (the bench measures pushes, not TokenReviews).
                "--ca-auth", "node-token"])
            {
                psi.ArgumentList.Add(a);
            }
            var started = Stopwatch.StartNew();
            using var process = Process.Start(psi) ?? throw new InvalidOperationException("cannot start " + istiod);
            try
            {
                _ = process.StandardError.ReadToEndAsync();
                string? line;
                string? endpoint = null;
                while ((line = await process.StandardOutput.ReadLineAsync()) is not null)
                {
                    // Its start-up log (timestamped) shows where the sync time goes: listing, building, serving.
                    Console.Error.WriteLine($"kube-scale: [{started.Elapsed.TotalMilliseconds,6:F0} ms] {line}");
                    var at = line.IndexOf("https://", StringComparison.Ordinal);
                    if (line.StartsWith("istiod-lite: CA + workload discovery on", StringComparison.Ordinal) && at > 0)
                    {
                        endpoint = line[(at + "https://".Length)..].Split(' ')[0];
                        break;
                    }
                }
                var sync = started.Elapsed;
                if (endpoint is null) throw new InvalidOperationException("istiod-lite exited before serving");
                _ = DrainAsync(process.StandardOutput);
                await Task.Delay(1000); // let start-up garbage settle before reading RSS
                var rssAfterSync = RssBytes(process.Id);
                Console.Error.WriteLine($"kube-scale: istiod-lite serving after {sync.TotalMilliseconds:F0} ms, RSS {rssAfterSync / 1048576.0:F0} MiB");

                var token = (await File.ReadAllTextAsync(Path.Combine(state, "tokens", "node-00.token"))).Trim();
                using var channel = Channel(Path.Combine(state, "root-cert.pem"), endpoint);
                using var call = channel.CreateCallInvoker().AsyncDuplexStreamingCall(DeltaAds, null,
                    new CallOptions(new Metadata { { "authorization", "Bearer " + token } }));
                await call.RequestStream.WriteAsync(new DeltaDiscoveryRequest { TypeUrl = XdsTypeUrls.Address, ResourceNamesSubscribe = { "*" } });
                var initial = await NextOfTypeAsync(call, XdsTypeUrls.Address);
                Console.Error.WriteLine($"kube-scale: first push {initial.Resources.Count} addresses");

                var latencies = new double[updates];
                for (var i = 0; i < updates; i++)
                {
                    var p = (i * 37) % pods;
                    var uid = $"Kubernetes//Pod/scale-{p % namespaces}/pod-{p}";
                    var ready = i / pods % 2 == 1; // flip each pod once per pass
                    var clock = Stopwatch.StartNew();
                    server.Put(Pod(p, services, namespaces, nodes, ready));
                    while (true)
                    {
                        var push = await NextOfTypeAsync(call, XdsTypeUrls.Address);
                        var seen = false;
                        foreach (var r in push.Resources)
                        {
                            if (r.Name == uid || Address.Parser.ParseFrom(r.Resource_.Value).Workload?.Uid == uid) { seen = true; break; }
                        }
                        if (seen) break;
                    }
                    latencies[i] = clock.Elapsed.TotalMilliseconds;
                }
                Array.Sort(latencies);
                var rssAfterUpdates = RssBytes(process.Id);
                var result = new JsonObject
                {
                    ["benchmark"] = "kube-scale",
                    ["date"] = DateTime.UtcNow.ToString("yyyy-MM-ddTHH:mm:ssZ", CultureInfo.InvariantCulture),
                    ["pods"] = pods,
                    ["services"] = services,
                    ["namespaces"] = namespaces,
                    ["nodes"] = nodes,
                    ["cpus"] = Environment.ProcessorCount,
                    ["syncMs"] = Math.Round(sync.TotalMilliseconds),
                    ["firstPushAddresses"] = initial.Resources.Count,
                    ["istiodRssAfterSyncMiB"] = Math.Round(rssAfterSync / 1048576.0, 1),
                    ["istiodRssAfterUpdatesMiB"] = Math.Round(rssAfterUpdates / 1048576.0, 1),
                    ["updates"] = updates,
                    ["pushP50Ms"] = Math.Round(Percentile(latencies, 0.50), 1),
                    ["pushP99Ms"] = Math.Round(Percentile(latencies, 0.99), 1),
                    ["pushMaxMs"] = Math.Round(latencies[^1], 1),
                    ["targets"] = new JsonObject { ["syncMs"] = 5000, ["pushP99Ms"] = 100 },
                };
                var text = result.ToJsonString(new JsonSerializerOptions { WriteIndented = true });
                Console.WriteLine(text);
                if (output is not null) await File.WriteAllTextAsync(output, text + "\n");
                return 0;
            }
            finally
            {
                if (!process.HasExited)
                {
                    process.Kill();
                    await process.WaitForExitAsync();
                }
            }
        }
        finally
        {
            work.Delete(recursive: true);
        }
    }

    private static JsonObject Service(int s, int namespaces) => new()
    {
        ["apiVersion"] = "v1",
        ["kind"] = "Service",
        ["metadata"] = new JsonObject { ["name"] = "svc-" + s, ["namespace"] = "scale-" + (s % namespaces) },
        ["spec"] = new JsonObject
        {
            ["clusterIP"] = $"10.96.{s / 250}.{s % 250 + 1}",
            ["selector"] = new JsonObject { ["app"] = "svc-" + s },
            ["ports"] = new JsonArray(new JsonObject { ["name"] = "http", ["port"] = 80, ["targetPort"] = 8080 }),
        },
    };

    // Pod p belongs to service p % services, in that service's namespace (so namespaces line up: p % 10 == s % 10).
    private static JsonObject Pod(int p, int services, int namespaces, int nodes, bool ready) => new()
    {
        ["apiVersion"] = "v1",
        ["kind"] = "Pod",
        ["metadata"] = new JsonObject
        {
            ["name"] = "pod-" + p,
            ["namespace"] = "scale-" + (p % namespaces),
            ["labels"] = new JsonObject { ["app"] = "svc-" + (p % services) },
        },
        ["spec"] = new JsonObject
        {
            ["nodeName"] = $"node-{p % nodes:D2}",
            ["containers"] = new JsonArray(new JsonObject { ["name"] = "app", ["image"] = "app", ["ports"] = new JsonArray(new JsonObject { ["containerPort"] = 8080 }) }),
        },
        ["status"] = new JsonObject
        {
            ["phase"] = "Running",
            ["podIP"] = $"10.{244 + p / 65000}.{p / 250 % 256}.{p % 250 + 1}",
            ["podIPs"] = new JsonArray(new JsonObject { ["ip"] = $"10.{244 + p / 65000}.{p / 250 % 256}.{p % 250 + 1}" }),
            ["conditions"] = new JsonArray(new JsonObject { ["type"] = "Ready", ["status"] = ready ? "True" : "False" }),
        },
    };

    private static async Task<DeltaDiscoveryResponse> NextOfTypeAsync(AsyncDuplexStreamingCall<DeltaDiscoveryRequest, DeltaDiscoveryResponse> call, string typeUrl)
    {
        using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(60));
        while (true)
        {
            if (!await call.ResponseStream.MoveNext(timeout.Token)) throw new InvalidOperationException("xDS stream ended");
            var response = call.ResponseStream.Current;
            await call.RequestStream.WriteAsync(new DeltaDiscoveryRequest { TypeUrl = response.TypeUrl, ResponseNonce = response.Nonce });
            if (response.TypeUrl == typeUrl) return response;
        }
    }

    private static GrpcChannel Channel(string rootPath, string endpoint)
    {
        var root = X509Certificate2.CreateFromPem(File.ReadAllText(rootPath));
        var handler = new SocketsHttpHandler
        {
            SslOptions = new SslClientAuthenticationOptions
            {
                TargetHost = "istiod.istio-system.svc",
                CertificateChainPolicy = new X509ChainPolicy
                {
                    TrustMode = X509ChainTrustMode.CustomRootTrust,
                    CustomTrustStore = { root },
                    RevocationMode = X509RevocationMode.NoCheck,
                },
            },
        };
        return GrpcChannel.ForAddress("https://" + endpoint, new GrpcChannelOptions { HttpHandler = handler, MaxReceiveMessageSize = null });
    }

    private static async Task DrainAsync(StreamReader reader)
    {
        while (await reader.ReadLineAsync() is not null) { }
    }

    private static long RssBytes(int pid)
    {
        foreach (var line in File.ReadLines($"/proc/{pid}/status"))
        {
            if (line.StartsWith("VmRSS:", StringComparison.Ordinal))
            {
                return long.Parse(line.Split(' ', StringSplitOptions.RemoveEmptyEntries)[1], CultureInfo.InvariantCulture) * 1024;
            }
        }
        return 0;
    }

    private static double Percentile(double[] sorted, double q) => sorted.Length == 0 ? 0 : sorted[Math.Min(sorted.Length - 1, (int)Math.Ceiling(q * sorted.Length) - 1)];

    private static int Option(string[] args, string name, int fallback) =>
        Text(args, name) is { } v ? int.Parse(v, CultureInfo.InvariantCulture) : fallback;

    private static string? Text(string[] args, string name)
    {
        var i = Array.IndexOf(args, name);
        return i >= 0 && i + 1 < args.Length ? args[i + 1] : null;
    }
}

using System.Net;
using System.Text;
using System.Text.Json;
using Microsoft.AspNetCore.Connections.Features;
using Microsoft.AspNetCore.Server.Kestrel.Core;

namespace Ambient.Ztunnel.Admin;

/// <summary>What the node-wide admin ports serve; the node proxy implements it from its live state.</summary>
internal interface IAdminSource
{
    /// <summary>Config and certificates are in: the node may receive traffic.</summary>
    bool IsReady(out string reason);

    void WriteConfigDump(Utf8JsonWriter json);

    void WriteMetrics(StringBuilder prometheusText);
}

internal sealed record AdminPorts(int Admin = 15000, int Metrics = 15020, int Readiness = 15021);

/// <summary>
/// The node-wide plain-HTTP ports, as Istio's ztunnel has them: 15000 admin (/config_dump), 15020 Prometheus
/// (/metrics, /stats/prometheus), 15021 readiness (/healthz/ready). One small Kestrel; each path answers only on its
/// own port so a scrape config written for Istio finds the same thing here.
/// </summary>
internal sealed class AdminServer : IAsyncDisposable
{
    private readonly WebApplication _app;

    private AdminServer(WebApplication app, IReadOnlyDictionary<string, IPEndPoint> bound)
    {
        _app = app;
        AdminEndpoint = bound["admin"];
        MetricsEndpoint = bound["metrics"];
        ReadinessEndpoint = bound["readiness"];
    }

    public IPEndPoint AdminEndpoint { get; }
    public IPEndPoint MetricsEndpoint { get; }
    public IPEndPoint ReadinessEndpoint { get; }

    public static async Task<AdminServer> StartAsync(IPAddress address, AdminPorts ports, IAdminSource source, ILoggerFactory loggerFactory, CancellationToken cancellationToken)
    {
        var builder = WebApplication.CreateSlimBuilder();
        builder.Logging.ClearProviders();
        builder.Services.AddSingleton(loggerFactory);
        // The node proxy owns process signals (Program); a console lifetime here would swallow SIGTERM.
        builder.Services.AddSingleton<IHostLifetime, Proxy.Inbound.HboneInboundServer.EmbeddedHostLifetime>();
        // Each listener tags its connections with its role, so a path answers only on its own port (ports may be 0
        // in tests, so the port number alone cannot tell them apart). Kestrel updates ListenOptions.IPEndPoint to
        // the bound port once it listens.
        var listeners = new Dictionary<string, ListenOptions>();
        builder.WebHost.ConfigureKestrel(k =>
        {
            k.AddServerHeader = false;
            void Listen(string role, int port) => k.Listen(address, port, l =>
            {
                l.Protocols = HttpProtocols.Http1;
                l.Use(next => connection =>
                {
                    connection.Items[RoleKey] = role;
                    return next(connection);
                });
                listeners[role] = l;
            });
            Listen("admin", ports.Admin);
            Listen("metrics", ports.Metrics);
            Listen("readiness", ports.Readiness);
        });
        var app = builder.Build();
        app.MapGet("/config_dump", (HttpContext c) =>
        {
            if (Role(c) != "admin") { return Results.NotFound(); }
            // Built in memory, then sent: Kestrel forbids the synchronous writes Utf8JsonWriter would make.
            var buffer = new System.Buffers.ArrayBufferWriter<byte>(16 * 1024);
            using (var json = new Utf8JsonWriter(buffer, new JsonWriterOptions { Indented = true }))
            {
                source.WriteConfigDump(json);
            }
            return Results.Bytes(buffer.WrittenMemory, "application/json");
        });
        app.MapGet("/", (HttpContext c) => Role(c) != "admin" ? Results.NotFound() : Results.Text("ztunnel admin: /config_dump\n"));
        IResult Metrics(HttpContext c)
        {
            if (Role(c) != "metrics") { return Results.NotFound(); }
            var sb = new StringBuilder(4096);
            source.WriteMetrics(sb);
            return Results.Text(sb.ToString(), "text/plain; version=0.0.4; charset=utf-8");
        }
        app.MapGet("/metrics", Metrics);
        app.MapGet("/stats/prometheus", Metrics);
        app.MapGet("/healthz/ready", (HttpContext c) =>
        {
            if (Role(c) != "readiness") { return Results.NotFound(); }
            return source.IsReady(out var reason) ? Results.Text("ready\n") : Results.Text("not ready: " + reason + "\n", statusCode: 503);
        });
        try
        {
            await app.StartAsync(cancellationToken).ConfigureAwait(false);
        }
        catch (IOException e)
        {
            await app.DisposeAsync().ConfigureAwait(false);
            throw new IOException($"ztunnel admin: cannot listen on {address} ports {ports.Admin}/{ports.Metrics}/{ports.Readiness}: {e.Message}", e);
        }
        var bound = new Dictionary<string, IPEndPoint>();
        foreach (var (role, l) in listeners)
        {
            bound[role] = l.IPEndPoint!;
        }
        return new AdminServer(app, bound);
    }

    private const string RoleKey = "ambient.admin.role";

    private static string? Role(HttpContext c) =>
        c.Features.Get<IConnectionItemsFeature>()?.Items.TryGetValue(RoleKey, out var role) == true ? role as string : null;

    public async ValueTask DisposeAsync()
    {
        await _app.StopAsync(TimeSpan.FromSeconds(2)).ConfigureAwait(false);
        await _app.DisposeAsync().ConfigureAwait(false);
    }
}

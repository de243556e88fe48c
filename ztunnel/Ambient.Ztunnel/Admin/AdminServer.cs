using System.Buffers;
using System.Net;
using System.Text;
using System.Text.Json;
using Ambient.Ztunnel.Proxy.Inbound;
using Microsoft.AspNetCore.Http;

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
/// (/metrics, /stats/prometheus), 15021 readiness (/healthz/ready). They are <see cref="PlainEndpoint"/>s of the node
/// proxy's one Kestrel; each path answers only on its own port, so a scrape config written for Istio finds the same
/// thing here. Handlers write straight to the response: three fixed paths need no router.
/// </summary>
internal sealed class AdminServer
{
    private const string AdminName = "admin";
    private const string MetricsName = "metrics";
    private const string ReadinessName = "readiness";

    private AdminServer(IReadOnlyDictionary<string, IPEndPoint> bound)
    {
        AdminEndpoint = bound[AdminName];
        MetricsEndpoint = bound[MetricsName];
        ReadinessEndpoint = bound[ReadinessName];
    }

    public IPEndPoint AdminEndpoint { get; }
    public IPEndPoint MetricsEndpoint { get; }
    public IPEndPoint ReadinessEndpoint { get; }

    /// <summary>The three endpoints to hand to the node proxy's Kestrel.</summary>
    public static IReadOnlyList<PlainEndpoint> Endpoints(IPAddress address, AdminPorts ports, IAdminSource source) =>
    [
        new(AdminName, new IPEndPoint(address, ports.Admin), context => ServeAdminAsync(context, source)),
        new(MetricsName, new IPEndPoint(address, ports.Metrics), context => ServeMetricsAsync(context, source)),
        new(ReadinessName, new IPEndPoint(address, ports.Readiness), context => ServeReadinessAsync(context, source)),
    ];

    /// <summary>The bound admin endpoints, read from the started server (ports may have been 0).</summary>
    public static AdminServer Bound(HboneInboundServer server) => new(server.PlainEndpoints);

    private static Task ServeAdminAsync(HttpContext context, IAdminSource source)
    {
        switch (context.Request.Path.Value)
        {
            case "/config_dump":
                if (!IsRead(context)) { return MethodNotAllowedAsync(context); }
                // Built in memory, then sent: Kestrel forbids the synchronous writes Utf8JsonWriter would make.
                var buffer = new ArrayBufferWriter<byte>(16 * 1024);
                using (var json = new Utf8JsonWriter(buffer, new JsonWriterOptions { Indented = true }))
                {
                    source.WriteConfigDump(json);
                }
                return WriteAsync(context, StatusCodes.Status200OK, "application/json", buffer.WrittenMemory);
            case "/":
                return IsRead(context) ? WriteTextAsync(context, StatusCodes.Status200OK, "ztunnel admin: /config_dump\n") : MethodNotAllowedAsync(context);
            default:
                return NotFoundAsync(context);
        }
    }

    private static Task ServeMetricsAsync(HttpContext context, IAdminSource source)
    {
        if (context.Request.Path.Value is not ("/metrics" or "/stats/prometheus")) { return NotFoundAsync(context); }
        if (!IsRead(context)) { return MethodNotAllowedAsync(context); }
        var text = new StringBuilder(4096);
        source.WriteMetrics(text);
        return WriteAsync(context, StatusCodes.Status200OK, "text/plain; version=0.0.4; charset=utf-8", Encoding.UTF8.GetBytes(text.ToString()));
    }

    private static Task ServeReadinessAsync(HttpContext context, IAdminSource source)
    {
        if (context.Request.Path.Value != "/healthz/ready") { return NotFoundAsync(context); }
        if (!IsRead(context)) { return MethodNotAllowedAsync(context); }
        return source.IsReady(out var reason)
            ? WriteTextAsync(context, StatusCodes.Status200OK, "ready\n")
            : WriteTextAsync(context, StatusCodes.Status503ServiceUnavailable, "not ready: " + reason + "\n");
    }

    private static bool IsRead(HttpContext context) => HttpMethods.IsGet(context.Request.Method) || HttpMethods.IsHead(context.Request.Method);

    private static Task NotFoundAsync(HttpContext context) => WriteTextAsync(context, StatusCodes.Status404NotFound, "not found\n");

    private static Task MethodNotAllowedAsync(HttpContext context)
    {
        context.Response.Headers.Allow = "GET, HEAD";
        return WriteTextAsync(context, StatusCodes.Status405MethodNotAllowed, "method not allowed\n");
    }

    private static Task WriteTextAsync(HttpContext context, int status, string text) =>
        WriteAsync(context, status, "text/plain; charset=utf-8", Encoding.UTF8.GetBytes(text));

    private static Task WriteAsync(HttpContext context, int status, string contentType, ReadOnlyMemory<byte> body)
    {
        var response = context.Response;
        response.StatusCode = status;
        response.ContentType = contentType;
        response.ContentLength = body.Length;
        return HttpMethods.IsHead(context.Request.Method) ? Task.CompletedTask : response.Body.WriteAsync(body).AsTask();
    }
}
